//! The durable queue and the audit trail.
//!
//! One interface, [`Store`], over SQLite (default, one replica) and PostgreSQL (several replicas).
//! It speaks through sqlx's `Any` driver, so every query is written once; the few places where
//! the dialects differ (claiming with `FOR UPDATE SKIP LOCKED`, the audit id column) branch on
//! [`Backend`]. Times are integer milliseconds since the epoch on both backends.
//!
//! The hot paths (intake, and the worker's claim, write gate and step records) are written
//! against [`db::Db`] instead, so that on SQLite they run on rusqlite connections on threads of
//! their own ([`lite`]), a whole transaction per hand-over; on PostgreSQL the same code runs in a
//! pooled sqlx transaction.
//!
//! The queue *is* the `actions` table: a webhook stores delivery, events and actions in one
//! transaction ([`Store::ingest`]); workers claim due rows with a lease ([`Store::claim_due`]) and
//! every later change is a guarded update that also appends to the audit trail in the same
//! transaction ([`Store::record`]). A worker that died leaves its lease to expire; the next claim
//! takes the row again.

mod actions;
mod apply;
mod db;
mod history;
mod ingest;
mod lite;
mod migrations;
mod models;
mod operator;
mod pg_intake;
mod reconciliations;
mod slots;
mod sqlite_intake;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::domain::clock::Clock;

pub use actions::{ActionFilter, Update};
pub use models::{
    ActionDetail, ActionRecord, AuditEntry, AuditRecord, Ended, EventRecord, Ingested, NewDelivery,
    NewEvent, WfUserRef,
};
pub use operator::{Brake, Gate, OpChange, OpError};
pub use reconciliations::{LeaverRecord, NewLeaverRow, ReconciliationRecord, RowResult};
pub use slots::{FleetSlots, Slot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store failure, by what the caller should do about it.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// The database cannot be reached or is failing: answer 503, the sender retries.
    Unavailable(String),
    /// The transaction lost to a concurrent one (a deadlock or serialization failure, SQLSTATE
    /// class 40): 503 too, but the same work redone may well succeed at once.
    Contention(String),
    /// A constraint refused the change (it conflicts with what is stored): 409.
    Conflict(String),
    /// The database refused the data itself (text it cannot hold, a value out of range): the
    /// request is at fault, 4xx, and retrying it cannot help.
    BadData(String),
    /// A stored row this version cannot read: 500, never "retry later".
    Corrupt(String),
    Migration(String),
}

impl StoreError {
    /// Whether the database itself is the trouble (as opposed to one request's data).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Contention(_) | StoreError::Migration(_)
        )
    }

    /// Whether the transaction lost to a concurrent one ([`StoreError::Contention`]).
    pub fn is_contention(&self) -> bool {
        matches!(self, StoreError::Contention(_))
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            StoreError::Contention(m) => write!(f, "lost to a concurrent transaction: {m}"),
            StoreError::Conflict(m) => write!(f, "conflicts with stored data: {m}"),
            StoreError::BadData(m) => write!(f, "the database refused the data: {m}"),
            StoreError::Corrupt(m) => write!(f, "a stored row cannot be read: {m}"),
            StoreError::Migration(m) => write!(f, "database migration failed: {m}"),
        }
    }
}
impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    /// Mapped where it happens: SQLSTATE class 22 (data exception) is bad data, a unique-key
    /// violation a conflict, a value that does not decode a corrupt row; everything else means the
    /// database is not serving us (connection, pool, I/O, serialization failures).
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        let text = e.to_string();
        match &e {
            sqlx::Error::Database(db) => {
                let class_22 = db.code().is_some_and(|c| c.starts_with("22"));
                let class_40 = db.code().is_some_and(|c| c.starts_with("40"));
                match db.kind() {
                    ErrorKind::UniqueViolation => StoreError::Conflict(text),
                    ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation => StoreError::BadData(text),
                    _ if class_22 => StoreError::BadData(text),
                    _ if class_40 => StoreError::Contention(text),
                    _ => StoreError::Unavailable(text),
                }
            }
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(text),
            _ => StoreError::Unavailable(text),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The service's one clock: every time the store writes or compares comes from it.
    clock: Clock,
    /// The intake writers' queue (group commit of deliveries, [`ingest`]).
    intake: tokio::sync::mpsc::Sender<ingest::Msg>,
    /// SQLite's one write lock, taken in this process first and in arrival order (the lock is
    /// fair), by the intake writer and by every write on the pool. Without it the two
    /// connections meet only in SQLite's busy handler, which polls with growing sleeps: under a
    /// stream of deliveries a worker's claim waited seconds for a gap.
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// SQLite: the worker's connection, on a thread of its own ([`lite::Runner`]), which runs the
    /// worker's hot path ([`Store::transact`]). `None` on PostgreSQL.
    lite: Option<lite::Runner>,
}

/// Creates a new SQLite file readable by its owner only (0600: it holds personal data and the
/// audit); SQLite gives its `-wal` and `-shm` files the same mode. An existing file keeps the mode
/// its operator chose, with a warning when others may read it.
fn private_file(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
                        "the SQLite file can be read by others; chmod 600 it");
                }
            }
            Ok(())
        }
        // A missing directory and the like: sqlx reports it with its own words.
        Err(_) => Ok(()),
    }
}

impl Store {
    /// Connects (creating a SQLite file if missing, in WAL mode). On SQLite, a delivery's commit is
    /// synced to disk before it is acknowledged ([`sqlite_intake`]: the WAL is `fdatasync`ed after
    /// the commit, which also makes every earlier commit durable); the worker's own bookkeeping is
    /// not, because after an OS crash it is simply redone: the pipeline reads Workfront's state
    /// before any write.
    pub async fn connect(url: &SecretString, clock: Clock) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let (backend, url) = if raw.starts_with("sqlite:") {
            if is_in_memory_sqlite(raw) {
                return Err(StoreError::Unavailable(IN_MEMORY_REFUSED.into()));
            }
            let with_mode = if raw.contains("mode=") {
                raw.to_string()
            } else if raw.contains('?') {
                format!("{raw}&mode=rwc")
            } else {
                format!("{raw}?mode=rwc")
            };
            (Backend::Sqlite, with_mode)
        } else {
            (Backend::Postgres, raw.to_string())
        };
        // sqlx warns once per slow acquire: under overload that is one log line per request, a
        // flood that hides everything else. The wait shows in request latency and `/readyz`.
        let options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .acquire_slow_level(log::LevelFilter::Debug);
        if backend == Backend::Sqlite {
            use std::str::FromStr;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?;
            private_file(options.get_filename())?;
        }
        let pool = match backend {
            // SQLite has one writer at a time; one connection serialises our short transactions
            // without "database is locked" errors and keeps memory small.
            Backend::Sqlite => {
                options
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            // What this pool writes (operators' changes, lease upkeep) commits
                            // without fsync, as the worker's connection does: after an OS crash
                            // it is redone safely. Intake has its own connection, whose commits
                            // are synced before their senders are answered.
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            let checkpoint =
                                format!("PRAGMA wal_autocheckpoint = {}", lite::WAL_AUTOCHECKPOINT);
                            conn.execute(checkpoint.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => options.max_connections(8).connect(&url).await?,
        };
        let write = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        let (intake, lite) = match backend {
            Backend::Sqlite => {
                use std::str::FromStr;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?;
                let file = options.get_filename();
                // The worker's bookkeeping commits without fsync: after an OS crash it is redone
                // safely (the pipeline reads Workfront's state before any write). Up to 16 MiB
                // of pages (SQLite's default is 2 MiB), taken only as the file grows: with a
                // backlog of 2,000 actions or more the claim's indexes outgrew the default, and
                // claims/s fell to 0.75x that of a backlog of 200; at 16 MiB it is 0.98-1.09x up
                // to 20,000 (BENCHMARKS.md). Intake keeps the default: there a larger cache
                // measured no faster.
                let worker = lite::open(
                    file,
                    "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16384;",
                )?;
                (
                    sqlite_intake::spawn(file, write.clone())?,
                    Some(lite::Runner::spawn(worker, "sqlite-worker", write.clone())?),
                )
            }
            Backend::Postgres => (pg_intake::spawn(pool.clone()), None),
        };
        Ok(Store {
            pool,
            backend,
            clock,
            intake,
            write,
            lite,
        })
    }

    /// Waits for this process's turn to write (SQLite; on PostgreSQL, `None` at once). Hold the
    /// guard until the write has committed.
    pub(super) async fn writing(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write.lock().await),
            Backend::Postgres => None,
        }
    }

    /// Begins a write transaction, with this process's turn to write ([`Store::writing`]; keep
    /// the guard until the commit). On SQLite it also takes the file's write lock at once
    /// (`BEGIN IMMEDIATE`): another process (the CLI) may write too, and a transaction that read
    /// first and wrote later would fail, not wait, if another had committed in between.
    pub(super) async fn begin(
        &self,
    ) -> Result<
        (
            Option<tokio::sync::MutexGuard<'_, ()>>,
            sqlx::Transaction<'static, sqlx::Any>,
        ),
        StoreError,
    > {
        let turn = self.writing().await;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok((turn, tx))
    }

    /// Runs `work` in one write transaction and commits it (an error rolls it back): on SQLite on
    /// the worker connection's thread, in one hand-over; on PostgreSQL in a pooled transaction.
    async fn transact<W: db::Work>(&self, work: W) -> Result<W::Out, StoreError> {
        match &self.lite {
            Some(lite) => lite.transact(work).await,
            None => {
                let (_turn, mut tx) = self.begin().await?;
                let out = work.run(&mut tx).await?;
                tx.commit().await?;
                Ok(out)
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Applies the migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::run(&self.pool, self.backend).await
    }

    /// Ok when the database answers, is migrated, and the intake writer runs.
    pub async fn ready(&self) -> Result<(), StoreError> {
        if self.intake.is_closed() {
            return Err(StoreError::Unavailable(
                "the intake writer has stopped".into(),
            ));
        }
        if self.lite.as_ref().is_some_and(lite::Runner::is_closed) {
            return Err(StoreError::Unavailable(
                "the SQLite worker connection has stopped".into(),
            ));
        }
        sqlx::query("SELECT COUNT(*) FROM actions WHERE 1 = 0")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self.intake.send(ingest::Msg::Stop).await;
        self.pool.close().await;
    }
}

/// Whether a SQLite URL names an in-memory database (sqlx's spellings: `:memory:`,
/// `mode=memory`). Refused: intake has its own connection, which would see another database, and
/// an in-memory database would lose every acknowledged delivery at exit anyway.
pub fn is_in_memory_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory"))
}

/// Why [`is_in_memory_sqlite`] URLs are refused.
pub const IN_MEMORY_REFUSED: &str = "an in-memory SQLite database cannot hold acknowledged deliveries; use a file (sqlite:///path/offboard.db)";

/// Milliseconds since the epoch.
pub fn to_ms(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

pub fn from_ms(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// A new, empty PostgreSQL database for a unit test, on the server of `DATABASE_URL` (when it is
/// PostgreSQL) or `OFFBOARD_TEST_POSTGRES_URL`; `None` where neither is given. Under CI a missing
/// server fails the test instead: there a PostgreSQL test that does not run is a failure.
#[cfg(test)]
pub(crate) async fn test_postgres_database() -> Option<String> {
    use sqlx::Connection as _;
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .or_else(|| std::env::var("OFFBOARD_TEST_POSTGRES_URL").ok())
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs PostgreSQL and CI is set: give DATABASE_URL or OFFBOARD_TEST_POSTGRES_URL"
        );
        eprintln!("not run here: this test needs PostgreSQL");
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("offboard_unit_{:016x}", fastrand::u64(..));
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut parsed = url::Url::parse(&url).unwrap();
    parsed.set_path(&format!("/{name}"));
    Some(parsed.to_string())
}

/// [`test_postgres_database`], migrated: its store, and a connection of its own for statements
/// the store has no method for (plans, settings).
#[cfg(test)]
pub(crate) async fn test_postgres_store() -> Option<(Store, sqlx::AnyConnection)> {
    use sqlx::Connection as _;
    let url = test_postgres_database().await?;
    let store = Store::connect(&url.clone().into(), Clock::system())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    Some((store, conn))
}
