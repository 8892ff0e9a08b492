//! The queue schema: sweeps, jobs and their dependencies, results, artifacts, workers.
//!
//! Times are milliseconds since the Unix epoch from the coordinator's clock.
//! JSON columns hold parameters, extra metrics and provenance.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sweeps {
    Table,
    Id,
    SweepKey,
    Name,
    SpecHash,
    SpecToml,
    State,
    JobCount,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    SweepId,
    JobKey,
    Kind,
    Stage,
    Family,
    Config,
    Device,
    Seed,
    Params,
    State,
    Priority,
    Attempts,
    MaxAttempts,
    LeaseTtlMs,
    BackoffBaseMs,
    BackoffMaxMs,
    LeaseToken,
    LeaseExpiresAtMs,
    WorkerId,
    NotBeforeMs,
    LastError,
    Dependents,
    Progress,
    CreatedAtMs,
    StartedAtMs,
    FinishedAtMs,
}

#[derive(DeriveIden)]
enum JobDeps {
    Table,
    JobId,
    DepId,
}

#[derive(DeriveIden)]
enum Results {
    Table,
    Id,
    JobId,
    SweepId,
    ProxyMetric,
    ProxyValue,
    LpInAuc,
    LpInPauc,
    LpOutAuc,
    LpOutPauc,
    MdAuc,
    MdPauc,
    Extra,
    Provenance,
    Artifacts,
    WorkerId,
    LeaseToken,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum Artifacts {
    Table,
    Sha256,
    Size,
    Kind,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum Workers {
    Table,
    Id,
    Name,
    Backend,
    Device,
    MemoryBytes,
    Labels,
    Kinds,
    Version,
    RegisteredAtMs,
    LastSeenMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Sweeps::Table)
                .col(
                    ColumnDef::new(Sweeps::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(Sweeps::SweepKey)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Sweeps::Name).string().not_null())
                .col(ColumnDef::new(Sweeps::SpecHash).string().not_null())
                .col(ColumnDef::new(Sweeps::SpecToml).text().not_null())
                .col(ColumnDef::new(Sweeps::State).string().not_null())
                .col(ColumnDef::new(Sweeps::JobCount).big_integer().not_null())
                .col(ColumnDef::new(Sweeps::CreatedAtMs).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_sweeps_name")
                .table(Sweeps::Table)
                .col(Sweeps::Name)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(
                    ColumnDef::new(Jobs::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(Jobs::SweepId).big_integer().not_null())
                .col(ColumnDef::new(Jobs::JobKey).string().not_null())
                .col(ColumnDef::new(Jobs::Kind).string().not_null())
                .col(ColumnDef::new(Jobs::Stage).string().not_null())
                .col(ColumnDef::new(Jobs::Family).string().not_null())
                .col(ColumnDef::new(Jobs::Config).string().not_null())
                .col(ColumnDef::new(Jobs::Device).string().not_null())
                .col(ColumnDef::new(Jobs::Seed).big_integer().not_null())
                .col(ColumnDef::new(Jobs::Params).json().not_null())
                .col(ColumnDef::new(Jobs::State).string().not_null())
                .col(ColumnDef::new(Jobs::Priority).integer().not_null())
                .col(ColumnDef::new(Jobs::Attempts).integer().not_null())
                .col(ColumnDef::new(Jobs::MaxAttempts).integer().not_null())
                .col(ColumnDef::new(Jobs::LeaseTtlMs).big_integer().not_null())
                .col(ColumnDef::new(Jobs::BackoffBaseMs).big_integer().not_null())
                .col(ColumnDef::new(Jobs::BackoffMaxMs).big_integer().not_null())
                .col(ColumnDef::new(Jobs::LeaseToken).big_integer().not_null())
                .col(ColumnDef::new(Jobs::LeaseExpiresAtMs).big_integer().null())
                .col(ColumnDef::new(Jobs::WorkerId).string().null())
                .col(ColumnDef::new(Jobs::NotBeforeMs).big_integer().not_null())
                .col(ColumnDef::new(Jobs::LastError).text().null())
                // How many jobs wait for this one (completion unblocks them only if > 0).
                .col(ColumnDef::new(Jobs::Dependents).integer().not_null())
                // Last progress report of the running attempt.
                .col(ColumnDef::new(Jobs::Progress).json().null())
                .col(ColumnDef::new(Jobs::CreatedAtMs).big_integer().not_null())
                .col(ColumnDef::new(Jobs::StartedAtMs).big_integer().null())
                .col(ColumnDef::new(Jobs::FinishedAtMs).big_integer().null())
                .foreign_key(
                    ForeignKey::create()
                        .from(Jobs::Table, Jobs::SweepId)
                        .to(Sweeps::Table, Sweeps::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_jobs_sweep_key")
                .table(Jobs::Table)
                .col(Jobs::SweepId)
                .col(Jobs::JobKey)
                .unique()
                .to_owned(),
        )
        .await?;
        // The claim query walks this index: ready jobs by priority, then age.
        m.create_index(
            Index::create()
                .name("idx_jobs_claim")
                .table(Jobs::Table)
                .col(Jobs::State)
                .col((Jobs::Priority, IndexOrder::Desc))
                .col(Jobs::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_jobs_lease_expiry")
                .table(Jobs::Table)
                .col(Jobs::State)
                .col(Jobs::LeaseExpiresAtMs)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(JobDeps::Table)
                .col(ColumnDef::new(JobDeps::JobId).big_integer().not_null())
                .col(ColumnDef::new(JobDeps::DepId).big_integer().not_null())
                .primary_key(Index::create().col(JobDeps::JobId).col(JobDeps::DepId))
                .foreign_key(
                    ForeignKey::create()
                        .from(JobDeps::Table, JobDeps::JobId)
                        .to(Jobs::Table, Jobs::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(JobDeps::Table, JobDeps::DepId)
                        .to(Jobs::Table, Jobs::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_job_deps_dep")
                .table(JobDeps::Table)
                .col(JobDeps::DepId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Results::Table)
                .col(
                    ColumnDef::new(Results::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                // One result per job, enforced by the database itself.
                .col(
                    ColumnDef::new(Results::JobId)
                        .big_integer()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Results::SweepId).big_integer().not_null())
                .col(ColumnDef::new(Results::ProxyMetric).string().not_null())
                .col(ColumnDef::new(Results::ProxyValue).double().null())
                .col(ColumnDef::new(Results::LpInAuc).double().null())
                .col(ColumnDef::new(Results::LpInPauc).double().null())
                .col(ColumnDef::new(Results::LpOutAuc).double().null())
                .col(ColumnDef::new(Results::LpOutPauc).double().null())
                .col(ColumnDef::new(Results::MdAuc).double().null())
                .col(ColumnDef::new(Results::MdPauc).double().null())
                .col(ColumnDef::new(Results::Extra).json().not_null())
                .col(ColumnDef::new(Results::Provenance).json().not_null())
                .col(ColumnDef::new(Results::Artifacts).json().not_null())
                .col(ColumnDef::new(Results::WorkerId).string().not_null())
                .col(ColumnDef::new(Results::LeaseToken).big_integer().not_null())
                .col(
                    ColumnDef::new(Results::CreatedAtMs)
                        .big_integer()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Results::Table, Results::JobId)
                        .to(Jobs::Table, Jobs::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_results_sweep")
                .table(Results::Table)
                .col(Results::SweepId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Artifacts::Table)
                .col(
                    ColumnDef::new(Artifacts::Sha256)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Artifacts::Size).big_integer().not_null())
                .col(ColumnDef::new(Artifacts::Kind).string().not_null())
                .col(
                    ColumnDef::new(Artifacts::CreatedAtMs)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Workers::Table)
                .col(
                    ColumnDef::new(Workers::Id)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Workers::Name).string().not_null())
                .col(ColumnDef::new(Workers::Backend).string().not_null())
                .col(ColumnDef::new(Workers::Device).string().not_null())
                .col(
                    ColumnDef::new(Workers::MemoryBytes)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Workers::Labels).json().not_null())
                .col(ColumnDef::new(Workers::Kinds).json().not_null())
                .col(ColumnDef::new(Workers::Version).string().not_null())
                .col(
                    ColumnDef::new(Workers::RegisteredAtMs)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Workers::LastSeenMs).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Workers::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Artifacts::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Results::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(JobDeps::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Sweeps::Table).to_owned())
            .await?;
        Ok(())
    }
}
