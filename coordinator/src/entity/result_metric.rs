//! A further named metric of a result (SI-SDR at one SNR, an alignment score, …).
use asdsweep_shared::analysis::Direction;
use sea_orm::entity::prelude::*;

/// Row of `result_metrics`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "result_metrics")]
pub struct Model {
    /// The result (`results.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub result_id: i64,
    /// Metric name, unique within its result.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Its value; NULL when it could not be measured.
    pub value: Option<f64>,
    /// `higher_is_better` or `lower_is_better`; NULL when the metric is no proxy metric.
    pub direction: Option<String>,
}

impl Model {
    /// The declared direction; `None` when none was declared.
    pub fn declared_direction(&self) -> Option<Direction> {
        self.direction.as_deref().and_then(Direction::parse)
    }
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
