//! A semaphore for the whole fleet, kept by PostgreSQL: session-level advisory locks are the
//! slots, so the replicas sharing a database never hold more than the limit at once, and a
//! replica that dies gives its slots back as soon as its sessions close. The current limit (the
//! adaptive one) is one row that every replica reads and adjusts. The store does not know what
//! the slots guard.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Row};

use super::StoreError;
use crate::domain::clock::Clock;

/// The advisory-lock keys of the slots start here (slot `k` is `BASE + k`).
const BASE: i64 = 0x0ff5_0000;
/// How long a replica trusts its copy of the fleet's limit.
const LIMIT_TTL: Duration = Duration::from_millis(100);

pub struct FleetSlots {
    pool: AnyPool,
    max: usize,
    clock: Clock,
    cached: std::sync::Mutex<(f64, Instant)>,
}

/// One slot held; given back when dropped (or when the session ends, if this process dies).
pub struct Slot {
    conn: Option<PoolConnection<Any>>,
    key: i64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1) AS ok")
                .bind(key)
                .fetch_one(&mut *conn)
                .await;
            if unlocked.is_err() {
                // Closing the session releases the lock for sure.
                let _ = conn.close().await;
            }
        });
    }
}

impl FleetSlots {
    /// Its own small pool (one connection per slot at most), so slots never starve the store.
    pub async fn connect(url: &SecretString, max: usize, clock: Clock) -> Result<Self, StoreError> {
        let pool = AnyPoolOptions::new()
            .max_connections(max as u32 + 1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url.expose_secret())
            .await?;
        let slots = FleetSlots {
            pool,
            max,
            clock,
            cached: std::sync::Mutex::new((max as f64, Instant::now() - LIMIT_TTL)),
        };
        // The row exists from the migration; a smaller max_concurrency caps it now.
        sqlx::query("UPDATE fleet_limit SET lim = LEAST(lim, $1) WHERE id = 1")
            .bind(max as f64)
            .execute(&slots.pool)
            .await?;
        Ok(slots)
    }

    /// The fleet's current limit (cached for a moment).
    pub async fn limit(&self) -> Result<f64, StoreError> {
        {
            let cached = self.cached.lock().unwrap();
            if cached.1.elapsed() < LIMIT_TTL {
                return Ok(cached.0);
            }
        }
        let row = sqlx::query("SELECT lim FROM fleet_limit WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let lim: f64 = row.try_get("lim")?;
        let lim = lim.clamp(1.0, self.max as f64);
        *self.cached.lock().unwrap() = (lim, Instant::now());
        Ok(lim)
    }

    /// The last limit read or set by this replica.
    pub fn cached_limit(&self) -> f64 {
        self.cached.lock().unwrap().0
    }

    /// Takes a free slot among the first `n`, if any; none when all are held. With `adaptive`,
    /// `n` is the fleet's limit read in the same statement, so a limit another replica lowered a
    /// moment ago holds at once (a cached copy would admit calls above it until it expired).
    /// Returns the slot and the number of slots it was admitted under.
    pub async fn try_take(&self, adaptive: bool) -> Result<Option<(Slot, usize)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let start = fastrand::i64(0..self.max as i64);
        // Scanning from a random slot spreads replicas over the slots; LIMIT 1 stops at the
        // first lock taken.
        let row = sqlx::query(
            "WITH l AS (SELECT lim, CAST(CASE WHEN $4 = 1 THEN GREATEST(1, LEAST($1, FLOOR(lim))) \
             ELSE $1 END AS BIGINT) AS n FROM fleet_limit WHERE id = 1) \
             SELECT s.k, l.n, l.lim FROM l, LATERAL (SELECT (g + $3) % l.n AS k \
             FROM generate_series(0, l.n - 1) AS g) s \
             WHERE pg_try_advisory_lock($2 + s.k) LIMIT 1",
        )
        .bind(self.max as i64)
        .bind(BASE)
        .bind(start)
        .bind(adaptive as i64)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let n: i64 = r.try_get("n")?;
        if adaptive {
            let lim: f64 = r.try_get("lim")?;
            *self.cached.lock().unwrap() = (lim.clamp(1.0, self.max as f64), Instant::now());
        }
        Ok(Some((
            Slot {
                key: BASE + r.try_get::<i64, _>("k")?,
                conn: Some(conn),
            },
            n as usize,
        )))
    }

    /// Lowers the fleet's limit (not below 1) while it is still at least `admitted_slots`, in one
    /// statement, so replicas that see 429s at once lower it once per generation (the rule of
    /// `domain::concurrency::after_rate_limited`, applied where the shared value lives).
    pub async fn lower_if_still_at_least(
        &self,
        admitted_slots: usize,
    ) -> Result<Option<f64>, StoreError> {
        let row = sqlx::query(
            "UPDATE fleet_limit SET lim = GREATEST(1.0, LEAST(lim, $1) * $2), decreased_at = $3 \
             WHERE id = 1 AND LEAST(lim, $1) >= $4 RETURNING lim",
        )
        .bind(self.max as f64)
        .bind(crate::domain::concurrency::DECREASE)
        .bind(self.clock.now_ms())
        .bind(admitted_slots as f64)
        .fetch_optional(&self.pool)
        .await?;
        self.remember(row)
    }

    /// Raises the fleet's limit by one, never above `max` — unless it changed since this
    /// replica read `from`: every replica counts its own successes, and without this guard
    /// replicas that finish their runs together would raise it once each, probing above the
    /// cap several steps at a time.
    pub async fn raise_from(&self, from: f64) -> Result<Option<f64>, StoreError> {
        let row = sqlx::query(
            "UPDATE fleet_limit SET lim = LEAST($1, lim + 1.0) WHERE id = 1 AND lim = $2 \
             RETURNING lim",
        )
        .bind(self.max as f64)
        .bind(from)
        .fetch_optional(&self.pool)
        .await?;
        self.remember(row)
    }

    fn remember(&self, row: Option<sqlx::any::AnyRow>) -> Result<Option<f64>, StoreError> {
        let Some(row) = row else {
            return Ok(None);
        };
        let lim: f64 = row.try_get("lim")?;
        *self.cached.lock().unwrap() = (lim, Instant::now());
        Ok(Some(lim))
    }
}
