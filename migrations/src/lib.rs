//! asdsweep's database schema: sea-orm migrations that run unchanged on SQLite
//! and Postgres. `asdsweep serve` applies them on start.

#![warn(missing_docs)]

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_queue;
mod m20261125_000002_job_checkpoint;
mod m20261203_000003_job_backends;
mod m20261203_000004_result_metrics;
mod m20261205_000005_heartbeats_in_place;

/// All migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_queue::Migration),
            Box::new(m20261125_000002_job_checkpoint::Migration),
            Box::new(m20261203_000003_job_backends::Migration),
            Box::new(m20261203_000004_result_metrics::Migration),
            Box::new(m20261205_000005_heartbeats_in_place::Migration),
        ]
    }
}
