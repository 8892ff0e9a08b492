//! The one result of a succeeded job.
use asdsweep_shared::analysis::Direction;
use sea_orm::entity::prelude::*;

/// Row of `results`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "results")]
pub struct Model {
    /// Result id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The job (unique: one result per job).
    pub job_id: i64,
    /// The job's sweep.
    pub sweep_id: i64,
    /// Name of the proxy metric.
    pub proxy_metric: String,
    /// Proxy metric value.
    pub proxy_value: Option<f64>,
    /// Linear probe, in-domain AUC.
    pub lp_in_auc: Option<f64>,
    /// Linear probe, in-domain pAUC.
    pub lp_in_pauc: Option<f64>,
    /// Linear probe, out-of-domain AUC.
    pub lp_out_auc: Option<f64>,
    /// Linear probe, out-of-domain pAUC.
    pub lp_out_pauc: Option<f64>,
    /// Mahalanobis AUC.
    pub md_auc: Option<f64>,
    /// Mahalanobis pAUC.
    pub md_pauc: Option<f64>,
    /// Further metrics.
    pub extra: Json,
    /// Provenance of the number.
    pub provenance: Json,
    /// Artifacts produced (sha256 list).
    pub artifacts: Json,
    /// Worker that produced it.
    pub worker_id: String,
    /// Fencing token of the lease that produced it.
    pub lease_token: i64,
    /// When it was recorded.
    pub created_at_ms: i64,
    /// Direction of the proxy metric as the job's family declared it (`higher_is_better`,
    /// `lower_is_better`); NULL when none was declared. See [`Model::declared_direction`].
    pub proxy_direction: Option<String>,
}

impl Model {
    /// The declared direction of the proxy metric; `None` when none was declared.
    pub fn declared_direction(&self) -> Option<Direction> {
        self.proxy_direction.as_deref().and_then(Direction::parse)
    }
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
