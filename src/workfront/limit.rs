//! How many Workfront calls may be in flight: at most `workfront.max_concurrency` for the whole
//! fleet, and with `adaptive_concurrency` fewer after 429s (SPEC §5). One trait, two variants:
//! [`Local`] counts in this process (SQLite: one replica); [`Fleet`] holds PostgreSQL advisory
//! locks as slots, so replicas sharing a database share the cap, and a dead replica's slots come
//! back when its sessions close. The arithmetic is [`crate::domain::concurrency`].

use std::sync::Mutex;
use std::time::Duration;

use futures_core::future::BoxFuture;
use tokio::sync::Notify;

use super::Failure;
use crate::domain::concurrency;
use crate::store::FleetSlots;

/// A reserved place for one call; given back when dropped.
pub struct Permit {
    _held: Box<dyn Send>,
    /// How many calls the limit allowed when it was granted: a 429 on this call lowers the
    /// limit only while it is still at least that.
    pub admitted_slots: usize,
}

pub trait Limiter: Send + Sync {
    fn acquire(&self) -> BoxFuture<'_, Result<Permit, Failure>>;
    /// Workfront answered 429 to a call admitted under `admitted_slots`: slow down.
    fn rate_limited(&self, admitted_slots: usize) -> BoxFuture<'_, ()>;
    /// A call got an answer that was not a 429.
    fn succeeded(&self) -> BoxFuture<'_, ()>;
    /// The current limit (for the `offboard_workfront_concurrency_limit` gauge).
    fn limit(&self) -> f64;
}

struct LocalState {
    limit: f64,
    in_flight: usize,
    successes: u64,
}

/// The limit kept in this process.
pub struct Local {
    max: usize,
    adaptive: bool,
    state: std::sync::Arc<Mutex<LocalState>>,
    freed: std::sync::Arc<Notify>,
}

struct LocalPermit {
    state: std::sync::Arc<Mutex<LocalState>>,
    freed: std::sync::Arc<Notify>,
}

impl Drop for LocalPermit {
    fn drop(&mut self) {
        self.state.lock().unwrap().in_flight -= 1;
        self.freed.notify_one();
    }
}

impl Local {
    pub fn new(max: usize, adaptive: bool) -> Local {
        Local {
            max,
            adaptive,
            state: std::sync::Arc::new(Mutex::new(LocalState {
                limit: max as f64,
                in_flight: 0,
                successes: 0,
            })),
            freed: std::sync::Arc::new(Notify::new()),
        }
    }
}

impl Limiter for Local {
    fn acquire(&self) -> BoxFuture<'_, Result<Permit, Failure>> {
        Box::pin(async move {
            loop {
                let freed = self.freed.notified();
                {
                    let mut s = self.state.lock().unwrap();
                    let slots = concurrency::slots(s.limit, self.max);
                    if s.in_flight < slots {
                        s.in_flight += 1;
                        return Ok(Permit {
                            _held: Box::new(LocalPermit {
                                state: self.state.clone(),
                                freed: self.freed.clone(),
                            }),
                            admitted_slots: slots,
                        });
                    }
                }
                // A lowered limit frees no permit by itself: look again now and then.
                let _ = tokio::time::timeout(Duration::from_millis(100), freed).await;
            }
        })
    }

    fn rate_limited(&self, admitted_slots: usize) -> BoxFuture<'_, ()> {
        if self.adaptive {
            let mut s = self.state.lock().unwrap();
            s.successes = 0;
            if let Some(lim) = concurrency::after_rate_limited(s.limit, admitted_slots) {
                s.limit = lim;
            }
        }
        Box::pin(async {})
    }

    fn succeeded(&self) -> BoxFuture<'_, ()> {
        if self.adaptive {
            let mut s = self.state.lock().unwrap();
            s.successes += 1;
            if let Some(lim) = concurrency::after_successes(s.limit, s.successes, self.max) {
                s.limit = lim;
                s.successes = 0;
            }
        }
        Box::pin(async {})
    }

    fn limit(&self) -> f64 {
        self.state.lock().unwrap().limit
    }
}

/// The limit of every replica sharing a PostgreSQL database.
pub struct Fleet {
    slots: FleetSlots,
    max: usize,
    adaptive: bool,
    successes: Mutex<u64>,
    freed: std::sync::Arc<Notify>,
}

struct FleetPermit {
    _slot: crate::store::Slot,
    freed: std::sync::Arc<Notify>,
}

impl Drop for FleetPermit {
    fn drop(&mut self) {
        self.freed.notify_one();
    }
}

impl Fleet {
    pub fn new(slots: FleetSlots, max: usize, adaptive: bool) -> Fleet {
        Fleet {
            slots,
            max,
            adaptive,
            successes: Mutex::new(0),
            freed: std::sync::Arc::new(Notify::new()),
        }
    }
}

impl Limiter for Fleet {
    fn acquire(&self) -> BoxFuture<'_, Result<Permit, Failure>> {
        Box::pin(async move {
            loop {
                let freed = self.freed.notified();
                match self.slots.try_take(self.adaptive).await {
                    Ok(Some((slot, n))) => {
                        return Ok(Permit {
                            _held: Box::new(FleetPermit {
                                _slot: slot,
                                freed: self.freed.clone(),
                            }),
                            admitted_slots: n,
                        })
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(Failure::Connect(format!(
                            "cannot reserve a Workfront slot in the database: {e}"
                        )))
                    }
                }
                // Another replica's call may end at any time; ours wake us at once.
                let wait = Duration::from_millis(30 + fastrand::u64(0..40));
                let _ = tokio::time::timeout(wait, freed).await;
            }
        })
    }

    fn rate_limited(&self, admitted_slots: usize) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.adaptive {
                return;
            }
            *self.successes.lock().unwrap() = 0;
            match self.slots.lower_if_still_at_least(admitted_slots).await {
                Ok(Some(lim)) => tracing::info!(
                    limit = lim,
                    "Workfront answered 429: the fleet's limit is lowered"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot lower the fleet's Workfront limit"),
            }
        })
    }

    fn succeeded(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.adaptive {
                return;
            }
            let Ok(lim) = self.slots.limit().await else {
                return;
            };
            let raise = {
                let mut n = self.successes.lock().unwrap();
                *n += 1;
                let r = concurrency::after_successes(lim, *n, self.max);
                if r.is_some() {
                    *n = 0;
                }
                r
            };
            if raise.is_some() {
                if let Err(e) = self.slots.raise_from(lim).await {
                    tracing::warn!(error = %e, "cannot raise the fleet's Workfront limit");
                }
            }
        })
    }

    fn limit(&self) -> f64 {
        if self.adaptive {
            self.slots.cached_limit()
        } else {
            self.max as f64
        }
    }
}
