//! A registered worker and what it last reported.
use crate::ids::WorkerId;
use sea_orm::entity::prelude::*;

/// Row of `workers`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workers")]
pub struct Model {
    /// Worker id handed out at registration.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: WorkerId,
    /// Name the worker gave (host name, pod name).
    pub name: String,
    /// Training backend.
    pub backend: String,
    /// Device it trains on.
    pub device: String,
    /// Memory for jobs, bytes.
    pub memory_bytes: i64,
    /// Labels.
    pub labels: Json,
    /// Job kinds it runs.
    pub kinds: Json,
    /// Worker build version.
    pub version: String,
    /// Registration time.
    pub registered_at_ms: i64,
    /// Last call from it.
    pub last_seen_ms: i64,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
