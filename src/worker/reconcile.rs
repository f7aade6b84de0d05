//! The reconciliation runner (SPEC §12): checks every leaver of a report against Workfront.
//!
//! It claims a `running` report under a lease (one replica per report; a report whose runner died
//! is taken over when the lease runs out), reads its unchecked rows a page at a time, and checks
//! a page's rows concurrently, `workfront.max_concurrency` at a time. The Workfront client's
//! limiter is shared with the worker, so the fleet never exceeds the cap, and 429s shrink it.
//!
//! Each row is searched exactly as the pipeline searches ([`super::matching`]), never written.
//! A search that fails leaves the row unchecked (with the failure as its detail): it is tried
//! again after the `[retry]` wait, so a Workfront outage never turns into a false `not_found`,
//! and the report stays `running` until every row has an answer. With `apply`, an `active`
//! leaver gets a deactivation through intake, like any delivery (source `reconcile`, one
//! delivery per row, so a report taken over never creates a second action for a row).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::matching::{self, Match};
use crate::config::Settings;
use crate::domain::reconcile::{self, Found, Outcome, RECONCILE_SOURCE};
use crate::domain::{EmployeeRef, Event, EventType};
use crate::intake::{self, Incoming};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::{Ingested, LeaverRecord, RowResult, Store, WfUserRef};
use crate::workfront;

/// Rows read and recorded together.
const PAGE: i64 = 200;

/// What the runner needs.
pub struct Reconciler {
    pub store: Store,
    pub client: workfront::Client,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    /// Rung when a report is created (by this process).
    pub wake: Arc<Notify>,
    /// The worker's wake-up, rung when applying created actions.
    pub worker_wake: Arc<Notify>,
}

impl Reconciler {
    /// Runs until `cancel`, then gives back the lease of the report it was working on.
    pub async fn run(self, cancel: CancellationToken) {
        let owner = format!("reconciler-{}", uuid::Uuid::now_v7().simple());
        let this = Arc::new(self);
        let poll = this.settings.worker.poll_interval;
        while !cancel.is_cancelled() {
            let lease = this.lease_ms();
            match this.store.claim_reconciliation(&owner, lease).await {
                Ok(Some((id, apply))) => {
                    tracing::info!(reconciliation_id = %id, apply, "reconciliation started");
                    this.clone().work(&id, &owner, apply, &cancel).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a reconciliation; will try again")
                }
            }
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = cancel.cancelled() => {}
            }
        }
        if let Err(e) = this.store.release_reconciliations(&owner).await {
            tracing::warn!(error = %e, "cannot give back reconciliation leases; they expire by themselves");
        }
    }

    fn lease_ms(&self) -> i64 {
        self.settings.worker.lease.as_millis() as i64
    }

    /// Checks every unchecked row of one report; returns when it is done, when the lease is
    /// lost, or on `cancel`.
    async fn work(self: Arc<Self>, id: &str, owner: &str, apply: bool, cancel: &CancellationToken) {
        let mut after = -1;
        let mut round = 0usize;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let page = match self.store.unchecked_rows(id, after, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the reconciliation's rows; will try again");
                    if !self.pause(Duration::from_secs(1), cancel).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(last) = page.last().map(|r| r.idx) else {
                match self.store.finish_reconciliation(id, owner).await {
                    Ok(true) => return self.finished(id).await,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot finish the reconciliation; will try again")
                    }
                }
                // Rows whose search failed remain: wait per `[retry]`, then go over them again.
                let waits = self.settings.retry.schedule();
                let wait = waits
                    .get(round.min(waits.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(Duration::from_secs(1));
                round += 1;
                tracing::info!(reconciliation_id = %id, wait_ms = wait.as_millis() as u64, "some rows could not be checked yet; trying them again");
                if !self.pause(wait, cancel).await {
                    return;
                }
                match self
                    .store
                    .renew_reconciliation(id, owner, self.lease_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, "cannot renew the reconciliation's lease"),
                }
                after = -1;
                continue;
            };
            after = last;
            let results = self.clone().check_page(id, owner, apply, page).await;
            match self.store.record_rows(id, owner, &results).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(reconciliation_id = %id, "the reconciliation was taken over by another runner");
                    return;
                }
                Err(e) => {
                    // The rows stay unchecked and are checked again (an applied row finds the
                    // action it created through its delivery's dedupe key).
                    tracing::warn!(error = %e, "cannot record reconciliation results; will check them again");
                    after = -1;
                }
            }
            match self
                .store
                .renew_reconciliation(id, owner, self.lease_ms())
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, "cannot renew the reconciliation's lease"),
            }
        }
    }

    /// Sleeps `d`; false when cancelled meanwhile.
    async fn pause(&self, d: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = cancel.cancelled() => false,
        }
    }

    /// Checks a page's rows, `max_concurrency` at a time, renewing the lease while they run.
    async fn check_page(
        self: Arc<Self>,
        id: &str,
        owner: &str,
        apply: bool,
        page: Vec<LeaverRecord>,
    ) -> Vec<RowResult> {
        let permits = Arc::new(Semaphore::new(
            self.settings.workfront.max_concurrency.max(1),
        ));
        let mut running = JoinSet::new();
        for row in page {
            let this = self.clone();
            let permits = permits.clone();
            let id = id.to_string();
            running.spawn(async move {
                let _permit = permits.acquire_owned().await;
                this.check(&id, apply, row).await
            });
        }
        let mut results = Vec::new();
        let mut beat = tokio::time::interval(self.settings.worker.lease / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                next = running.join_next() => match next {
                    Some(Ok(r)) => results.push(r),
                    Some(Err(e)) => tracing::error!(error = %e, "a reconciliation check panicked; the row stays unchecked"),
                    None => break,
                },
                _ = beat.tick() => {
                    let _ = self.store.renew_reconciliation(id, owner, self.lease_ms()).await;
                }
            }
        }
        results.sort_by_key(|r| r.idx);
        results
    }

    /// Checks one row: search, decide, and (with `apply`) deactivate a gap.
    async fn check(&self, id: &str, apply: bool, row: LeaverRecord) -> RowResult {
        let unchecked = |why: String| RowResult {
            idx: row.idx,
            outcome: None,
            detail: Some(why),
            user: None,
            action_id: None,
        };
        let searches = matching::searches(
            &self.settings.matching,
            row.employee_id.as_deref(),
            row.email.as_deref(),
        );
        let mut answers = Vec::with_capacity(searches.len());
        for s in searches {
            let call = self
                .client
                .search_users(&s.field, &s.value, &s.modifier)
                .await;
            let outcome = call.result.as_ref().map_or_else(|f| f.code(), |_| "ok");
            self.metrics.workfront_request(
                call.exchange.op,
                outcome,
                call.exchange.millis as f64 / 1000.0,
            );
            match call.result {
                Ok(users) => answers.push(users),
                Err(f) => return unchecked(format!("Workfront search failed: {}", f.message())),
            }
        }
        let found = matching::decide(answers);
        let open = match self
            .store
            .open_deactivation(row.employee_id.as_deref(), row.email.as_deref())
            .await
        {
            Ok(open) => open,
            Err(e) => return unchecked(format!("cannot read offboard's actions: {e}")),
        };
        let (kind, user) = match &found {
            Match::One(u) => (
                Found::One {
                    active: u.is_active,
                },
                Some(WfUserRef {
                    id: u.id.clone(),
                    name: u.name.clone(),
                    email: u.email.clone(),
                }),
            ),
            Match::NoOne => (Found::NoOne, None),
            Match::Ambiguous(c) => {
                let ids: Vec<&str> = c.iter().map(|u| u.id.as_str()).collect();
                return RowResult {
                    idx: row.idx,
                    outcome: Some(reconcile::decide(Found::Several, open.is_some())),
                    detail: Some(format!("candidates: {}", ids.join(", "))),
                    user: None,
                    action_id: open,
                };
            }
        };
        let outcome = reconcile::decide(kind, open.is_some());
        let action_id = match outcome {
            Outcome::Pending => open,
            Outcome::Active if apply => match self.deactivate(id, &row).await {
                Ok(a) => a,
                Err(why) => return unchecked(why),
            },
            _ => None,
        };
        RowResult {
            idx: row.idx,
            outcome: Some(outcome),
            detail: None,
            user,
            action_id,
        }
    }

    /// Stores a deactivation for a gap: one delivery per row (dedupe key `{report}:{row}`), so a
    /// row checked twice finds the action of its first check.
    async fn deactivate(&self, id: &str, row: &LeaverRecord) -> Result<Option<String>, String> {
        let now = self.store.clock().now();
        let key = format!("{id}:{}", row.idx);
        let body = json!({
            "reconciliation_id": id, "row": row.idx, "employee_id": row.employee_id,
            "email": row.email, "terminated_on": row.terminated_on,
        })
        .to_string();
        let event = Event {
            kind: EventType::Terminated,
            sender_type: "reconcile.gap".into(),
            employee: EmployeeRef {
                employee_id: row.employee_id.clone(),
                email: row.email.clone(),
            },
            name: None,
            // They already left and still have access: act now, whatever date the list says.
            effective: None,
            occurred_at: now,
        };
        let incoming = Incoming {
            source: RECONCILE_SOURCE,
            dedupe_key: key.clone(),
            content_type: Some("application/json".into()),
            body: body.as_bytes(),
            request_id: None,
            received_at: now,
        };
        let stored = intake::store(&self.store, &self.settings, incoming, &[event])
            .await
            .map_err(|e| format!("cannot store the deactivation: {e:?}"))?;
        let created = match stored {
            Ingested::Stored { action_ids, .. } => action_ids.into_iter().next(),
            Ingested::Duplicate { .. } => self
                .store
                .action_of_delivery(RECONCILE_SOURCE, &key)
                .await
                .map_err(|e| format!("cannot read the earlier deactivation: {e}"))?,
        };
        tracing::info!(reconciliation_id = %id, row = row.idx, action_id = created.as_deref().unwrap_or("-"), "deactivation created for a gap");
        self.worker_wake.notify_one();
        Ok(created)
    }

    /// Logs the report's counts and announces its gaps.
    async fn finished(&self, id: &str) {
        let Ok(Some(report)) = self.store.get_reconciliation(id).await else {
            return;
        };
        let gaps = report.count(Outcome::Active);
        tracing::info!(reconciliation_id = %id, total = report.total, gaps,
            inactive = report.count(Outcome::Inactive), not_found = report.count(Outcome::NotFound),
            ambiguous = report.count(Outcome::Ambiguous), pending = report.count(Outcome::Pending),
            invalid = report.count(Outcome::Invalid), "reconciliation done");
        if gaps > 0 {
            let what = if report.apply {
                "deactivations were created for them"
            } else {
                "run it with apply to deactivate them"
            };
            self.notifier.send(
                format!("offboard: reconciliation {id} found {gaps} leaver(s) still active in Workfront; {what}"),
                None,
                Some("done"),
                Some("reconcile_gap"),
            );
        }
    }
}
