//! Migrations are embedded in the binary (no files needed at run time), one list per backend.

use std::borrow::Cow;

use futures_core::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::AnyPool;

use super::{Backend, StoreError};

const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "operator control",
        include_str!("../../migrations/sqlite/0002_operator_control.sql"),
    ),
    (
        3,
        "lifecycle",
        include_str!("../../migrations/sqlite/0003_lifecycle.sql"),
    ),
];
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "operator control",
        include_str!("../../migrations/postgres/0002_operator_control.sql"),
    ),
    (
        3,
        "lifecycle",
        include_str!("../../migrations/postgres/0003_lifecycle.sql"),
    ),
];

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
