//! Migrations are embedded in the binary (no files needed at run time), one list per backend.

use std::borrow::Cow;

use futures_core::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::AnyPool;

use super::{Backend, StoreError};

/// Embeds the numbered migration files of one backend's folder.
macro_rules! embed {
    ($dir:literal: $($version:literal $name:literal $file:literal),+ $(,)?) => {
        &[$(($version, $name, include_str!(concat!("../../migrations/", $dir, "/", $file)))),+]
    };
}

const SQLITE: &[(i64, &str, &str)] = embed!("sqlite":
    1 "init" "0001_init.sql",
    2 "operator control" "0002_operator_control.sql",
    3 "lifecycle" "0003_lifecycle.sql",
    4 "action delivery" "0004_action_delivery.sql",
    5 "reactivation brake" "0005_reactivation_brake.sql",
    6 "fleet limit" "0006_fleet_limit.sql",
    7 "claimable" "0007_claimable.sql",
    8 "brake count" "0008_brake_count.sql",
    9 "reconciliations" "0009_reconciliations.sql",
    10 "hr lookup" "0010_hr_lookup.sql",
    11 "schedules" "0011_schedules.sql",
    12 "unused email index" "0012_unused_email_index.sql",
    13 "lean intake indexes" "0013_lean_intake_indexes.sql",
    14 "retention by id" "0014_retention_by_id.sql",
);
const POSTGRES: &[(i64, &str, &str)] = embed!("postgres":
    1 "init" "0001_init.sql",
    2 "operator control" "0002_operator_control.sql",
    3 "lifecycle" "0003_lifecycle.sql",
    4 "action delivery" "0004_action_delivery.sql",
    5 "reactivation brake" "0005_reactivation_brake.sql",
    6 "fleet limit" "0006_fleet_limit.sql",
    7 "claimable" "0007_claimable.sql",
    8 "brake count" "0008_brake_count.sql",
    9 "reconciliations" "0009_reconciliations.sql",
    10 "hr lookup" "0010_hr_lookup.sql",
    11 "schedules" "0011_schedules.sql",
    12 "unused email index" "0012_unused_email_index.sql",
    13 "lean intake indexes" "0013_lean_intake_indexes.sql",
    14 "retention by id" "0014_retention_by_id.sql",
);

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(v, d, sql)| {
                    Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let source = match backend {
        Backend::Sqlite => Embedded(SQLITE),
        Backend::Postgres => Embedded(POSTGRES),
    };
    let migrator = Migrator::new(source)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    migrator
        .run(pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))
}
