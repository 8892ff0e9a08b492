//! Results that carry their own meaning: `results.proxy_direction` (whether a larger proxy
//! value is better, as the job's family declares it) and `result_metrics`, a result's
//! further named metrics, one row each.
//!
//! Directions are stored as `higher_is_better` or `lower_is_better`; NULL means none was
//! declared (a count, a loss of record, a result of an older worker). Results of the
//! previous release get the direction of the proxy metrics its workers wrote: `ae_l1`
//! lower, `macro_f1` higher (`ae_train_mse` rows are training rows without a value and
//! `noop` is no proxy: they stay NULL).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Results {
    Table,
    Id,
    ProxyMetric,
    ProxyDirection,
}

#[derive(DeriveIden)]
enum ResultMetrics {
    Table,
    ResultId,
    Name,
    Value,
    Direction,
}

/// The proxy metrics of the previous release's workers and their directions.
const PREVIOUS_PROXIES: [(&str, &str); 2] = [
    ("ae_l1", "lower_is_better"),
    ("macro_f1", "higher_is_better"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Results::Table)
                .add_column(ColumnDef::new(Results::ProxyDirection).string().null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ResultMetrics::Table)
                .col(
                    ColumnDef::new(ResultMetrics::ResultId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(ResultMetrics::Name).string().not_null())
                .col(ColumnDef::new(ResultMetrics::Value).double().null())
                .col(ColumnDef::new(ResultMetrics::Direction).string().null())
                // One value per name and result.
                .primary_key(
                    Index::create()
                        .col(ResultMetrics::ResultId)
                        .col(ResultMetrics::Name),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ResultMetrics::Table, ResultMetrics::ResultId)
                        .to(Results::Table, Results::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        for (metric, direction) in PREVIOUS_PROXIES {
            m.execute(
                Query::update()
                    .table(Results::Table)
                    .value(Results::ProxyDirection, direction)
                    .and_where(Expr::col(Results::ProxyMetric).eq(metric))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ResultMetrics::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Results::Table)
                .drop_column(Results::ProxyDirection)
                .to_owned(),
        )
        .await
    }

    /// The column, the table and the backfill land together or not at all, on SQLite too
    /// (where sea-orm-migration runs a migration without a transaction by default).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
