//! The worker: claims due actions from the store and runs each through the pipeline.
//!
//! It wakes when a delivery is stored (a `Notify` from the handler), when the next scheduled or
//! retried action becomes due, and at least every `worker.poll_interval` (other replicas may have
//! stored work). Claimed actions carry a short lease (`worker.lease`), renewed by a heartbeat every
//! third of it while the action runs, so a slow action is never cut off, and the work of a process
//! that died is claimed again within one lease; the pipeline then checks Workfront's state before
//! writing again.
//!
//! In-flight actions are bounded (two per Workfront connection) so that a large backlog does not
//! hold leases it cannot work on. On shutdown it stops claiming, lets running actions finish within
//! a bound, and gives back the leases of any that did not.

mod matching;
mod pipeline;
pub mod reconcile;
pub mod retention;
pub mod schedule;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Store;
use crate::workfront;

/// State shared between the worker and the readiness endpoint.
#[derive(Debug, Default)]
pub struct Health {
    /// Workfront refused our credentials on the last call that reached it.
    pub workfront_auth_failing: AtomicBool,
    /// Why, for `/readyz` (a redirect names its `Location` there).
    pub workfront_auth_problem: Mutex<Option<String>>,
}

impl Health {
    pub fn auth_failing(&self) -> bool {
        self.workfront_auth_failing.load(Ordering::Relaxed)
    }

    /// Records credential trouble; true when this starts an outage (notify once per outage).
    pub fn auth_refused(&self, why: &str) -> bool {
        *self.workfront_auth_problem.lock().unwrap() = Some(why.to_string());
        !self.workfront_auth_failing.swap(true, Ordering::Relaxed)
    }

    /// The credentials worked again.
    pub fn auth_works(&self) {
        self.workfront_auth_failing.store(false, Ordering::Relaxed);
        *self.workfront_auth_problem.lock().unwrap() = None;
    }

    pub fn auth_problem(&self) -> Option<String> {
        self.workfront_auth_problem.lock().unwrap().clone()
    }
}

/// Everything one action's pipeline needs.
pub(crate) struct Ctx {
    pub store: Store,
    pub client: workfront::Client,
    pub settings: Arc<Settings>,
    pub owner: String,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    /// For the HR vendors' APIs (§4.3): follows no redirect (a redirect is "down", and our
    /// credentials never follow it elsewhere).
    pub hr_http: reqwest::Client,
}

/// The client for the HR vendors' APIs: no redirect is followed.
pub fn hr_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// The handles a worker shares with the rest of the service.
pub struct Shared {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    pub wake: Arc<Notify>,
}

pub struct Worker {
    ctx: Arc<Ctx>,
    wake: Arc<Notify>,
}

/// How long in-flight actions may run on after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

impl Worker {
    pub fn new(shared: Shared, client: workfront::Client) -> Worker {
        let owner = format!("worker-{}", uuid::Uuid::now_v7().simple());
        let Shared {
            store,
            settings,
            health,
            metrics,
            notifier,
            wake,
        } = shared;
        let ctx = Ctx {
            store,
            client,
            settings,
            owner,
            health,
            metrics,
            notifier,
            hr_http: hr_http(),
        };
        Worker {
            ctx: Arc::new(ctx),
            wake,
        }
    }

    pub fn owner(&self) -> &str {
        &self.ctx.owner
    }

    /// Runs until `cancel` fires, then drains within [`SHUTDOWN_GRACE`].
    pub async fn run(self, cancel: CancellationToken) {
        let settings = &self.ctx.settings;
        // Two actions per Workfront connection: one calling, one ready with its next call. More
        // would only wait for a permit while their lease runs down.
        let slots = Arc::new(Semaphore::new(settings.workfront.max_concurrency * 2));
        let lease_ms = settings.worker.lease.as_millis() as i64;
        let working: Working = Arc::new(Mutex::new(HashSet::new()));
        let beat_stop = CancellationToken::new();
        // Aborted with the worker: a worker that is torn down must not keep renewing leases.
        let heartbeat = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(heartbeat(
            self.ctx.clone(),
            working.clone(),
            beat_stop.clone(),
        )));
        let poll = settings.worker.poll_interval;
        let mut running = JoinSet::new();
        tracing::info!(worker = %self.ctx.owner, "worker started");
        while !cancel.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                let now = self.ctx.store.clock().now_ms();
                match self
                    .ctx
                    .store
                    .claim_due(&self.ctx.owner, now, lease_ms, free as u32)
                    .await
                {
                    Ok(actions) => {
                        claimed_all = actions.len() == free;
                        for action in actions {
                            let permit = slots
                                .clone()
                                .try_acquire_owned()
                                .expect("claimed no more than the free slots");
                            let ctx = self.ctx.clone();
                            let wake = self.wake.clone();
                            let working = working.clone();
                            working.lock().unwrap().insert(action.id.clone());
                            let span = tracing::info_span!("action", action_id = %action.id, attempt = action.attempts,
                                kind = action.kind.as_str(), source = %action.source,
                                delivery_id = action.delivery_id.as_deref().unwrap_or("-"), wf_user_id = tracing::field::Empty);
                            running.spawn(
                                async move {
                                    let id = action.id.clone();
                                    pipeline::process(&ctx, action).await;
                                    working.lock().unwrap().remove(&id);
                                    drop(permit);
                                    wake.notify_one();
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim actions; will try again"),
                }
            }
            if claimed_all {
                continue;
            }
            // While actions run, each completion wakes the loop; otherwise sleep until the next
            // due time (at most `poll`).
            let wait = if running.is_empty() {
                self.until_next(poll).await
            } else {
                poll
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => {}
            }
        }
        tracing::info!(in_flight = running.len(), "worker stopping");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            running.abort_all();
        }
        beat_stop.cancel();
        let _ = heartbeat.await;
        match self.ctx.store.release_leases(&self.ctx.owner).await {
            Ok(n) if n > 0 => {
                tracing::info!(released = n, "gave back leases of unfinished actions")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot give back leases; they expire by themselves")
            }
        }
        tracing::info!("worker stopped");
    }

    /// How long to sleep: until the next action is due, at most `poll`.
    async fn until_next(&self, poll: Duration) -> Duration {
        match self.ctx.store.next_run_at().await {
            Ok(Some(t)) => {
                let now = self.ctx.store.clock().now_ms();
                Duration::from_millis((t - now).clamp(0, poll.as_millis() as i64) as u64)
            }
            _ => poll,
        }
    }
}

/// The ids of the actions this worker is working on now.
type Working = Arc<Mutex<HashSet<String>>>;

/// Renews the leases of the actions being worked on, every third of the lease, until `stop`.
async fn heartbeat(ctx: Arc<Ctx>, working: Working, stop: CancellationToken) {
    let lease = ctx.settings.worker.lease;
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let ids: Vec<String> = working.lock().unwrap().iter().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        let until = ctx.store.clock().now_ms() + lease.as_millis() as i64;
        match ctx.store.renew_leases(&ctx.owner, &ids, until).await {
            Ok(n) => tracing::debug!(renewed = n, "leases renewed"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew leases; they run out unless renewed in time")
            }
        }
    }
}
