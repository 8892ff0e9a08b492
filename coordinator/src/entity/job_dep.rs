//! An edge "job waits for dep".
use crate::ids::JobId;
use sea_orm::entity::prelude::*;

/// Row of `job_deps`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "job_deps")]
pub struct Model {
    /// The waiting job.
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: JobId,
    /// The job it waits for.
    #[sea_orm(primary_key, auto_increment = false)]
    pub dep_id: JobId,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
