//! Heartbeats that Postgres can write in place.
//!
//! A heartbeat sets `jobs.lease_expires_at_ms` (and the progress). While that column was
//! indexed (`idx_jobs_lease_expiry`), every heartbeat made Postgres write a new version of
//! the row into every index of `jobs`; with no indexed column changed, and room left on the
//! row's page (a fill factor of 80 % for new pages), it is a heap-only update instead. The
//! one reader of that index, the reaper, finds leased jobs through `idx_jobs_claim`, whose
//! first column is the state (there are never more leased jobs than workers).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    State,
    LeaseExpiresAtMs,
}

const LEASE_EXPIRY_INDEX: &str = "idx_jobs_lease_expiry";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(LEASE_EXPIRY_INDEX)
                .table(Jobs::Table)
                .to_owned(),
        )
        .await?;
        if m.get_database_backend() == DbBackend::Postgres {
            m.get_connection()
                .execute_unprepared("ALTER TABLE jobs SET (fillfactor = 80)")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DbBackend::Postgres {
            m.get_connection()
                .execute_unprepared("ALTER TABLE jobs RESET (fillfactor)")
                .await?;
        }
        m.create_index(
            Index::create()
                .name(LEASE_EXPIRY_INDEX)
                .table(Jobs::Table)
                .col(Jobs::State)
                .col(Jobs::LeaseExpiresAtMs)
                .to_owned(),
        )
        .await
    }
}
