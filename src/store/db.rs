//! The few statements intake needs, over either access path: a sqlx transaction (PostgreSQL, and
//! every other write of the store) or the SQLite intake writer's own connection
//! ([`super::sqlite_intake`]). The planning and the SQL are written once, in
//! [`super::ingest`], against [`Db`]; only binding values and reading cells differ.
//!
//! Parameters are written `$1`, `$2`… on both paths (SQLite reads `$N` as a named parameter).

use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};

use super::StoreError;

/// A value bound to a statement.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v))
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref())
    }
}
impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

/// One result row, read by column position.
pub(super) enum Row {
    Any(AnyRow),
    Lite(Vec<rusqlite::types::Value>),
}

impl Row {
    pub(super) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self {
            Row::Any(r) => Ok(r.try_get(i)?),
            Row::Lite(cells) => match cells.get(i) {
                Some(rusqlite::types::Value::Null) => Ok(None),
                Some(rusqlite::types::Value::Text(t)) => Ok(Some(t.clone())),
                other => Err(StoreError::Corrupt(format!(
                    "column {i}: expected text, found {other:?}"
                ))),
            },
        }
    }

    pub(super) fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i}: unexpected NULL")))
    }

    pub(super) fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self {
            Row::Any(r) => Ok(r.try_get(i)?),
            Row::Lite(cells) => match cells.get(i) {
                Some(rusqlite::types::Value::Integer(n)) => Ok(*n),
                other => Err(StoreError::Corrupt(format!(
                    "column {i}: expected an integer, found {other:?}"
                ))),
            },
        }
    }
}

/// Runs statements inside one open transaction.
pub(super) trait Db {
    /// Runs a statement; returns the rows it changed.
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError>;
    /// Runs a query (or a statement with `RETURNING`); returns every row.
    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError>;

    async fn row(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, args).await?.into_iter().next())
    }
}

fn bind<'q>(
    sql: &'q str,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match *a {
            Arg::Text(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
        };
    }
    q
}

impl Db for Transaction<'_, Any> {
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        Ok(bind(sql, args).execute(&mut **self).await?.rows_affected())
    }

    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        let rows = bind(sql, args).fetch_all(&mut **self).await?;
        Ok(rows.into_iter().map(Row::Any).collect())
    }
}
