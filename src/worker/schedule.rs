//! Scheduled reconciliation (`[reconcile] interval`, SPEC §12): every `interval`, for each source
//! with `[sources.<name>.api]`, the people who left within `lookback` are read from the vendor's
//! API and stored as a reconciliation (origin `schedule:<source>`, `apply` per `[reconcile]`),
//! which the reconciliation runner then checks like any other; its gaps are notified and counted
//! in `offboard_reconcile_gaps`. The schedule is a row in the store, taken under a lease, so one
//! replica runs it at a time, and a restart does not run it again before it is due.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::notify::Notifier;
use crate::store::{NewLeaverRow, Store};

const NAME: &str = "reconcile";
/// Long enough to list every source's leavers; a replica that died is replaced after it.
const LEASE: Duration = Duration::from_secs(600);
/// A run that could not list a source is tried again this soon (or at the interval if shorter).
const AGAIN: Duration = Duration::from_secs(300);

pub struct Scheduler {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub notifier: Notifier,
    pub hr_http: reqwest::Client,
    /// The reconciliation runner's wake-up.
    pub reconcile_wake: Arc<Notify>,
}

impl Scheduler {
    pub async fn run(self, cancel: CancellationToken) {
        let Some(interval) = self.settings.reconcile.interval else {
            return;
        };
        if self.settings.hr_apis.is_empty() {
            tracing::warn!("reconcile.interval is set but no source has an [api] table: nothing to reconcile on a schedule");
            return;
        }
        let owner = format!("scheduler-{}", uuid::Uuid::now_v7().simple());
        let poll = self.settings.worker.poll_interval;
        loop {
            match self
                .store
                .claim_schedule(NAME, &owner, LEASE.as_millis() as i64)
                .await
            {
                Ok(true) => {
                    let all_listed = self.run_once().await;
                    let wait = if all_listed {
                        interval
                    } else {
                        AGAIN.min(interval)
                    };
                    let next = self.store.clock().now_ms() + wait.as_millis() as i64;
                    if let Err(e) = self.store.finish_schedule(NAME, &owner, next).await {
                        tracing::warn!(error = %e, "cannot record the next scheduled reconciliation; its lease expires by itself");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the reconciliation schedule; will try again")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll.max(Duration::from_millis(50))) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// One scheduled run over every source with an API; false when a source could not be listed.
    async fn run_once(&self) -> bool {
        let lc = &self.settings.lifecycle;
        let now = self.store.clock().now();
        let today = now.to_zoned(lc.timezone.clone()).date();
        let back =
            jiff::SignedDuration::try_from(self.settings.reconcile.lookback).unwrap_or_default();
        let since = (now - back).to_zoned(lc.timezone.clone()).date();
        let mut all_listed = true;
        for (source, api) in &self.settings.hr_apis {
            match api.leavers(&self.hr_http, since, today).await {
                Ok(leavers) => {
                    let rows: Vec<NewLeaverRow> = leavers
                        .into_iter()
                        .map(|l| NewLeaverRow {
                            employee_id: Some(l.employee_id),
                            email: l.email,
                            terminated_on: Some(l.terminated_on.to_string()),
                            invalid: None,
                        })
                        .collect();
                    let id = crate::domain::new_id("rec");
                    let origin = format!("schedule:{source}");
                    match self
                        .store
                        .create_reconciliation(&id, self.settings.reconcile.apply, &origin, &rows)
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(reconciliation_id = %id, source = %source, leavers = rows.len(), since = %since, "scheduled reconciliation stored");
                            self.reconcile_wake.notify_one();
                        }
                        Err(e) => {
                            all_listed = false;
                            tracing::warn!(error = %e, source = %source, "cannot store the scheduled reconciliation; will try again");
                        }
                    }
                }
                Err(crate::hrapi::ApiDown(why)) => {
                    all_listed = false;
                    tracing::warn!(source = %source, vendor = api.vendor(), error = %why, "cannot list the leavers for the scheduled reconciliation; will try again");
                    self.notifier.send(
                        format!("offboard: the scheduled reconciliation of source {source} could not list its leavers: {why}"),
                        None,
                        None,
                        Some("hr_api"),
                    );
                }
            }
        }
        all_listed
    }
}
