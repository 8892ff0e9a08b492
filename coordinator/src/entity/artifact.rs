//! A content-addressed blob known to the artifact store.
use sea_orm::entity::prelude::*;

/// Row of `artifacts`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "artifacts")]
pub struct Model {
    /// sha256 of the content, lowercase hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// What it is (`checkpoint`, `embeddings`, …).
    pub kind: String,
    /// When it was first stored.
    pub created_at_ms: i64,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
