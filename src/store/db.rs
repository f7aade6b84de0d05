//! Statements over either access path: a sqlx transaction (PostgreSQL, and the rest of the
//! store's writes) or a rusqlite connection on a thread of the store's own ([`super::lite`]:
//! SQLite's intake writer and the worker's hot path). The planning and the SQL are written once
//! against [`Db`] (intake in [`super::ingest`], the worker's steps as [`Work`]); only binding
//! values and reading cells differ.
//!
//! Parameters are written `$1`, `$2`… on both paths (SQLite reads `$N` as a named parameter).

use std::borrow::Cow;
use std::sync::OnceLock;

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

    pub(super) fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self {
            Row::Any(r) => Ok(r.try_get(i)?),
            Row::Lite(cells) => match cells.get(i) {
                Some(rusqlite::types::Value::Null) => Ok(None),
                Some(rusqlite::types::Value::Integer(n)) => Ok(Some(*n)),
                other => Err(StoreError::Corrupt(format!(
                    "column {i}: expected an integer, found {other:?}"
                ))),
            },
        }
    }

    pub(super) fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i}: unexpected NULL")))
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

/// A unit of work that runs in one write transaction, on whichever path the store writes by:
/// the SQLite worker connection's thread ([`super::lite::Runner`]) or a pooled transaction
/// ([`super::Store::transact`]). It owns what it needs, so it can be sent to that thread.
pub(super) trait Work: Send + 'static {
    type Out: Send + 'static;
    async fn run<D: Db>(self, db: &mut D) -> Result<Self::Out, StoreError>;
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

/// An owned value, for rows gathered first and written together ([`insert_rows`]).
#[derive(Debug, Clone)]
pub(super) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

impl Cell {
    pub(super) fn arg(&self) -> Arg<'_> {
        match self {
            Cell::Text(v) => Arg::Text(v.as_deref()),
            Cell::Int(v) => Arg::Int(*v),
        }
    }
}

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(Some(v.to_owned()))
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(Some(v))
    }
}
impl From<&String> for Cell {
    fn from(v: &String) -> Self {
        Cell::Text(Some(v.clone()))
    }
}
impl From<Option<&str>> for Cell {
    fn from(v: Option<&str>) -> Self {
        Cell::Text(v.map(str::to_owned))
    }
}
impl From<&Option<String>> for Cell {
    fn from(v: &Option<String>) -> Self {
        Cell::Text(v.clone())
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(Some(v))
    }
}
impl From<Option<i64>> for Cell {
    fn from(v: Option<i64>) -> Self {
        Cell::Int(v)
    }
}

/// Rows per multi-row statement at most.
pub(super) const MAX_ROWS: usize = 64;

/// Splits `n` items into chunks whose sizes are powers of two (64, 32, … 1), so that a batch of
/// any size is written with few statements of few shapes: each shape is prepared once per
/// connection and stays in the statement cache.
pub(super) fn chunks(n: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < n {
        let size = (n - at).min(MAX_ROWS);
        let size = 1 << size.ilog2();
        out.push(at..at + size);
        at += size;
    }
    out
}

/// `($1, $2), ($3, $4)…`: `rows` groups of `width` parameters.
pub(super) fn placeholders(rows: usize, width: usize) -> String {
    use std::fmt::Write as _;
    // Written into one string: a statement of 64 rows has hundreds of cells, and the writer
    // builds one per batch.
    let mut out = String::with_capacity(rows * width * 6);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 1..=width {
            let sep = if c == 1 { "" } else { ", " };
            let _ = write!(out, "{sep}${}", r * width + c);
        }
        out.push(')');
    }
    out
}

/// Statement texts built once per chunk size ([`chunks`]: 1, 2, 4 … [`MAX_ROWS`]) and kept: the
/// intake writer runs its few multi-row statements thousands of times a second, and building
/// their texts each time was 6–8% of its time in a profile (BENCHMARKS.md, 2026-12-06).
pub(super) struct PerChunkSize([OnceLock<String>; SIZES]);

/// How many chunk sizes there are.
const SIZES: usize = MAX_ROWS.ilog2() as usize + 1;

impl PerChunkSize {
    pub(super) const fn new() -> PerChunkSize {
        PerChunkSize([const { OnceLock::new() }; SIZES])
    }

    /// The text for `n` items, built by `build` on first use; a count that is not a chunk size
    /// is built anew each time.
    pub(super) fn get(&self, n: usize, build: impl FnOnce() -> String) -> Cow<'_, str> {
        if !n.is_power_of_two() || n > MAX_ROWS {
            return Cow::Owned(build());
        }
        Cow::Borrowed(self.0[n.ilog2() as usize].get_or_init(build))
    }
}

/// A multi-row `INSERT`: `{head} VALUES (…), (…) {tail}`, its texts kept per chunk size.
pub(super) struct Insert {
    head: &'static str,
    tail: &'static str,
    built: PerChunkSize,
}

impl Insert {
    pub(super) const fn new(head: &'static str, tail: &'static str) -> Insert {
        Insert {
            head,
            tail,
            built: PerChunkSize::new(),
        }
    }

    /// The statement for `rows` rows of `width` values.
    fn sql(&self, rows: usize, width: usize) -> Cow<'_, str> {
        self.built.get(rows, || {
            format!(
                "{} VALUES {} {}",
                self.head,
                placeholders(rows, width),
                self.tail
            )
        })
    }
}

/// Inserts every row, in [`chunks`]; returns the rows the statements return (with a
/// `RETURNING` tail), in order. Every row has the insert's columns.
pub(super) async fn insert_rows<D: Db>(
    tx: &mut D,
    insert: &Insert,
    rows: &[Vec<Cell>],
) -> Result<Vec<Row>, StoreError> {
    let mut out = Vec::new();
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(out);
    };
    for range in chunks(rows.len()) {
        let args: Vec<Arg<'_>> = rows[range.clone()]
            .iter()
            .flatten()
            .map(Cell::arg)
            .collect();
        out.extend(tx.rows(&insert.sql(range.len(), width), &args).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_covering_every_item_in_order() {
        assert!(chunks(0).is_empty());
        assert_eq!(chunks(1), vec![0..1]);
        assert_eq!(chunks(45), vec![0..32, 32..40, 40..44, 44..45]);
        assert_eq!(chunks(130), vec![0..64, 64..128, 128..130]);
    }

    #[test]
    fn an_insert_builds_one_text_per_chunk_size_and_keeps_it() {
        static T: Insert = Insert::new("INSERT INTO t (a, b)", "RETURNING a");
        assert_eq!(
            T.sql(1, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2) RETURNING a"
        );
        assert_eq!(
            T.sql(2, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) RETURNING a"
        );
        assert!(
            matches!((T.sql(2, 2), T.sql(2, 2)), (Cow::Borrowed(a), Cow::Borrowed(b)) if std::ptr::eq(a, b)),
            "built once"
        );
        assert_eq!(
            T.sql(3, 1),
            "INSERT INTO t (a, b) VALUES ($1), ($2), ($3) RETURNING a",
            "not a chunk size: built anew"
        );
        assert_eq!(T.sql(MAX_ROWS, 2).matches('(').count(), MAX_ROWS + 1);
    }

    #[test]
    fn placeholders_number_every_cell_of_every_row() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
        assert_eq!(placeholders(0, 4), "");
    }
}
