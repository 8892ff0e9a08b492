//! A launched sweep: its spec and whether it is still active.
use crate::ids::SweepId;
use crate::queue::SweepState;
use sea_orm::entity::prelude::*;

/// Row of `sweeps`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "sweeps")]
pub struct Model {
    /// Sweep id.
    #[sea_orm(primary_key)]
    pub id: SweepId,
    /// Identity for idempotent launch: the spec hash (plus a nonce with `--new`).
    pub sweep_key: String,
    /// Spec name.
    pub name: String,
    /// sha256 of the parsed spec.
    pub spec_hash: String,
    /// The spec as launched.
    pub spec_toml: String,
    /// Whether its jobs may be leased.
    pub state: SweepState,
    /// Number of jobs expanded from the spec.
    pub job_count: i64,
    /// Launch time (ms since epoch).
    pub created_at_ms: i64,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
