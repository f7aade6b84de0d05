//! One attempt at one action: find the user, check safety, check state, write, verify.
//!
//! Every step is appended to the action's audit trail (with the Workfront requests and answers)
//! and logged. Audit entries are gathered in memory and written with the next state change, in
//! the same transaction, so the trail and the status never disagree. The one state change made
//! *before* calling Workfront is `write_sent`: after a crash, the next attempt knows a write may
//! have landed, reads the user again and, if the wanted state is there, reports it as done by us.

use serde_json::{json, Value};

use super::matching::{self, Match};
use super::Ctx;
use crate::domain::brake::BrakeLimit;
use crate::domain::{ActionKind, Reason, Status, Step};
use crate::safety::{self, Decision};
use crate::store::{ActionRecord, AuditEntry, Brake, Gate, Update, WfUserRef};
use crate::workfront::{Call, Exchange, Failure, FailureClass, User};

struct Attempt<'a> {
    ctx: &'a Ctx,
    action: ActionRecord,
    audit: Vec<AuditEntry>,
    /// The HR vendor's API was asked in this attempt: saved with the next state change, with
    /// the work email it gave (if the action had none).
    looked_up: Option<Option<String>>,
}

pub(crate) async fn process(ctx: &Ctx, action: ActionRecord) {
    let mut run = Attempt {
        ctx,
        action,
        audit: Vec::new(),
        looked_up: None,
    };
    if let Some(prev) = run.action.prev_owner.clone() {
        run.step(
            Step::Resumed,
            json!({ "previous_worker": prev, "write_may_have_been_sent": run.action.write_sent }),
        );
    }
    run.step(
        Step::AttemptStarted,
        json!({ "attempt": run.action.attempts, "worker": ctx.owner }),
    );
    if let Err(e) = run.execute().await {
        // The database failed mid-attempt: the lease expires and the action is tried again.
        tracing::error!(error = %e, "cannot record the outcome; the action will be resumed when its lease expires");
    }
}

impl Attempt<'_> {
    fn step(&mut self, step: Step, detail: Value) {
        tracing::info!(step = step.as_str(), detail = %self.loggable(&detail), "action step");
        self.audit
            .push(AuditEntry::new(self.ctx.store.clock().now(), step, detail));
    }

    /// The detail as logged: emails masked unless `log.pii`.
    fn loggable(&self, detail: &Value) -> String {
        let text = detail.to_string();
        if self.ctx.settings.log.pii {
            return text;
        }
        crate::telemetry::mask_emails(&text)
    }

    fn exchange(&mut self, ex: &Exchange) {
        self.step(Step::WorkfrontCall, ex.to_json());
    }

    async fn execute(&mut self) -> Result<(), crate::store::StoreError> {
        let kind = self.action.kind;
        // 0. A thin delivery: ask the HR vendor's API for the work email and the date (§4.3).
        if kind == ActionKind::Deactivate && self.action.user.is_none() && !self.action.hr_looked_up
        {
            let api = self.ctx.settings.hr_apis.get(&self.action.source).cloned();
            if let (Some(api), Some(id)) = (api, self.action.employee_id.clone()) {
                if self.hr_lookup(api.as_ref(), &id).await? {
                    return Ok(());
                }
            }
        }
        // 1. Find the user.
        let user = if let Some(known) = self.action.user.clone() {
            let call = self.ctx.client.get_user(&known.id).await;
            match self.take(call) {
                Ok(u) => u,
                Err(Failure::NotFound) => {
                    self.step(Step::UserGone, json!({ "ID": known.id }));
                    return self.finish(Status::Skipped, Reason::NotFound, None).await;
                }
                Err(f) => return self.fail(f).await,
            }
        } else {
            match self.find().await {
                Ok(Match::One(u)) => u,
                Ok(Match::NoOne) => {
                    self.step(Step::NotFound, json!({ "searched": self.identifiers() }));
                    return self.finish(Status::Skipped, Reason::NotFound, None).await;
                }
                Ok(Match::Ambiguous(users)) => {
                    let candidates: Vec<WfUserRef> = users.iter().map(user_ref).collect();
                    let shown: Vec<Value> = users.iter().map(user_json).collect();
                    self.step(Step::AmbiguousMatch, json!({ "candidates": shown }));
                    let update = Update {
                        candidates: Some(candidates),
                        ..Default::default()
                    };
                    return self
                        .finish(Status::Held, Reason::AmbiguousMatch, Some(update))
                        .await;
                }
                Err(f) => return self.fail(f).await,
            }
        };
        tracing::Span::current().record("wf_user_id", user.id.as_str());
        self.step(Step::Matched, json!({ "workfront_user": user_json(&user) }));
        let matched = Update {
            user: Some(user_ref(&user)),
            ..Default::default()
        };

        // 2. Safety.
        let settings = &self.ctx.settings;
        match safety::decide(&settings.safety, kind, &user, self.action.approved) {
            Decision::Proceed => self.step(
                Step::SafetyPassed,
                json!({ "dry_run": settings.safety.dry_run }),
            ),
            Decision::Hold(reason, why) => {
                self.step(
                    Step::SafetyHold,
                    json!({ "reason": reason.as_str(), "why": why }),
                );
                return self.finish(Status::Held, reason, Some(matched)).await;
            }
        }

        // 3. State: nothing to write when the user is already as wanted.
        let want_active = kind == ActionKind::Reactivate;
        if user.is_active == Some(want_active) {
            let reason = match (self.action.write_sent, want_active) {
                // Our own earlier write landed but its answer was lost.
                (true, false) => Reason::Deactivated,
                (true, true) => Reason::Reactivated,
                (false, false) => Reason::AlreadyInactive,
                (false, true) => Reason::AlreadyActive,
            };
            self.step(Step::StateChecked, json!({ "isActive": user.is_active, "write_needed": false, "earlier_write_landed": self.action.write_sent }));
            return self.finish(Status::Succeeded, reason, Some(matched)).await;
        }
        if settings.safety.dry_run {
            self.step(Step::DryRun, json!({ "would_set": { "isActive": want_active }, "workfront_user": user_json(&user) }));
            return self
                .finish(Status::Skipped, Reason::DryRun, Some(matched))
                .await;
        }

        // 4. Write: pass the brake of this kind and remember that a write may reach Workfront,
        //    atomically. Approved actions are not held again (their writes still count).
        let max = match kind {
            ActionKind::Deactivate => settings.safety.brake_max,
            ActionKind::Reactivate => settings.safety.reactivation_brake_max,
        };
        let brake = (!self.action.approved).then_some(Brake {
            kind,
            limit: BrakeLimit {
                max,
                window_ms: settings.safety.brake_window.as_millis() as i64,
            },
        });
        let audit = std::mem::take(&mut self.audit);
        let gate = self
            .ctx
            .store
            .begin_write(&self.action.id, &self.ctx.owner, &matched, &audit, brake)
            .await?;
        match gate {
            Gate::Proceed => {}
            Gate::Cancelled => {
                tracing::info!("HR cancelled the termination before the write");
                self.ctx
                    .metrics
                    .action(kind, Status::Cancelled, Reason::TerminationCancelled);
                return Ok(());
            }
            Gate::LeaseLost => {
                tracing::warn!("lease lost before the write; another worker has the action");
                return Ok(());
            }
            Gate::Braked { first, recent } => {
                tracing::warn!(deactivations_in_window = recent, "brake: action held");
                self.ctx
                    .metrics
                    .action(kind, Status::Held, Reason::RateBrake);
                if first {
                    let (what, key) = match kind {
                        ActionKind::Deactivate => ("deactivation", "brake_max"),
                        ActionKind::Reactivate => ("reactivation", "reactivation_brake_max"),
                    };
                    let text = format!(
                        "offboard: the mass-{what} brake engaged after {recent} {what}s within {} \
                         (safety.{key} = {max}). Further {what}s are held until an operator releases them \
                         (POST /admin/v1/brake/release).",
                        crate::cli::fmt_duration(settings.safety.brake_window),
                    );
                    self.ctx.notifier.send(
                        text,
                        Some(&self.action.id),
                        Some("held"),
                        Some("rate_brake"),
                    );
                }
                return Ok(());
            }
        }
        self.action.write_sent = true;
        let level = if want_active {
            settings.lifecycle.reactivation_access_level_id.as_deref()
        } else {
            None
        };
        let call = self
            .ctx
            .client
            .set_active(&user.id, want_active, level)
            .await;
        match self.take(call) {
            Ok(after) => {
                let lag = (self.ctx.store.clock().now_ms() - self.action.due_at) as f64 / 1000.0;
                self.ctx.metrics.effective_to_done(lag);
                self.step(
                    Step::Written,
                    json!({ "isActive": after.is_active, "verified": true }),
                );
                let reason = if want_active {
                    Reason::Reactivated
                } else {
                    Reason::Deactivated
                };
                self.finish(Status::Succeeded, reason, None).await?;
                if want_active {
                    // Restored access is safety-relevant: every reactivation is announced.
                    let who = self.who();
                    self.ctx.notifier.send(
                        format!(
                            "offboard: reactivated the Workfront user {} of {who} (action {})",
                            user.id, self.action.id
                        ),
                        Some(&self.action.id),
                        Some(Status::Succeeded.as_str()),
                        Some(Reason::Reactivated.as_str()),
                    );
                }
                Ok(())
            }
            Err(f) => self.fail(f).await,
        }
    }

    /// Searches every identifier of `matching.order` the action carries ([`matching`]).
    async fn find(&mut self) -> Result<Match, Failure> {
        let searches = matching::searches(
            &self.ctx.settings.matching,
            self.action.employee_id.as_deref(),
            self.action.email.as_deref(),
        );
        let mut answers = Vec::with_capacity(searches.len());
        for s in searches {
            let call = self
                .ctx
                .client
                .search_users(&s.field, &s.value, &s.modifier)
                .await;
            let users = self.take(call)?;
            self.step(Step::Searched, json!({ "identifier": s.ident.as_str(), "field": s.field, "found": users.iter().map(|u| u.id.clone()).collect::<Vec<_>>() }));
            answers.push(users);
        }
        Ok(matching::decide(answers))
    }

    fn identifiers(&self) -> Value {
        json!({ "employee_id": self.action.employee_id, "email": self.action.email })
    }

    /// Records the exchange and notes whether the credentials work.
    fn take<T>(&mut self, call: Call<T>) -> Result<T, Failure> {
        self.exchange(&call.exchange);
        let outcome = match &call.result {
            Ok(_) => "ok",
            Err(f) => f.code(),
        };
        self.ctx.metrics.workfront_request(
            call.exchange.op,
            outcome,
            call.exchange.millis as f64 / 1000.0,
        );
        self.ctx
            .metrics
            .concurrency_limit(self.ctx.client.concurrency_limit());
        let health = &self.ctx.health;
        match &call.result {
            Err(Failure::Auth { message, .. }) => {
                if health.auth_refused(message) {
                    self.ctx.notifier.send(
                        format!("offboard: Workfront refuses the credentials ({message}). Deactivations wait and resume by themselves once they work again."),
                        Some(&self.action.id),
                        Some("pending"),
                        Some("workfront_auth"),
                    );
                }
            }
            // Any answer that is not an auth refusal proves the credentials.
            Err(_) if call.exchange.status.is_none() => {}
            _ => health.auth_works(),
        }
        call.result
    }

    async fn fail(&mut self, failure: Failure) -> Result<(), crate::store::StoreError> {
        let now = self.ctx.store.clock().now();
        let attempts = self.action.attempts;
        let message = failure.message();
        if failure == Failure::RateLimited {
            // "Slow down", not a failure: back within seconds, the retry budget untouched.
            let next = now.as_millisecond() + 1_000 + fastrand::i64(0..2_000);
            self.step(
                Step::RetryScheduled,
                json!({ "attempt": attempts, "error": failure.code(), "message": message,
                "slowed_down": true, "next_attempt_at": crate::store::from_ms(next).to_string() }),
            );
            let update = Update {
                status: Some(Status::Pending),
                reason: Some(None),
                run_at: Some(next),
                attempts: Some(attempts.saturating_sub(1)),
                last_error: Some(Some(message)),
                release: true,
                ..Default::default()
            };
            return self.save(update).await;
        }
        match failure.class() {
            FailureClass::Retryable => {
                match self
                    .ctx
                    .settings
                    .retry
                    .next_delay(attempts, fastrand::f64())
                {
                    Some(delay) => {
                        let next = now.as_millisecond() + delay.as_millis() as i64;
                        self.step(Step::RetryScheduled, json!({ "attempt": attempts, "error": failure.code(), "message": message,
                        "next_attempt_at": crate::store::from_ms(next).to_string() }));
                        let update = Update {
                            status: Some(Status::Pending),
                            reason: Some(None),
                            run_at: Some(next),
                            last_error: Some(Some(message)),
                            release: true,
                            ..Default::default()
                        };
                        self.save(update).await
                    }
                    None => {
                        self.step(Step::RetriesExhausted, json!({ "attempts": attempts, "error": failure.code(), "message": message }));
                        let update = Update {
                            last_error: Some(Some(message)),
                            ..Default::default()
                        };
                        self.finish(Status::Failed, Reason::RetriesExhausted, Some(update))
                            .await
                    }
                }
            }
            FailureClass::Auth => {
                // Never lose an offboarding to expired credentials: wait and probe again, and do not
                // count the attempt against the retry budget.
                let next = now.as_millisecond()
                    + self.ctx.settings.worker.auth_probe_interval.as_millis() as i64;
                self.step(Step::WorkfrontAuth, json!({ "message": message, "next_attempt_at": crate::store::from_ms(next).to_string() }));
                tracing::warn!(
                    "Workfront refused the credentials; the action waits and is retried"
                );
                let update = Update {
                    status: Some(Status::Pending),
                    reason: Some(Some(Reason::WorkfrontAuth)),
                    run_at: Some(next),
                    attempts: Some(attempts.saturating_sub(1)),
                    last_error: Some(Some(message)),
                    release: true,
                    ..Default::default()
                };
                self.save(update).await
            }
            FailureClass::Final => {
                self.step(
                    Step::Rejected,
                    json!({ "error": failure.code(), "message": message }),
                );
                let update = Update {
                    last_error: Some(Some(message)),
                    ..Default::default()
                };
                self.finish(Status::Failed, Reason::WorkfrontRejected, Some(update))
                    .await
            }
        }
    }

    async fn finish(
        &mut self,
        status: Status,
        reason: Reason,
        extra: Option<Update>,
    ) -> Result<(), crate::store::StoreError> {
        self.step(
            Step::Finished,
            json!({ "status": status.as_str(), "reason": reason.as_str() }),
        );
        let mut update = extra.unwrap_or_default();
        update.status = Some(status);
        update.reason = Some(Some(reason));
        update.release = true;
        update.done = status.is_terminal();
        self.save(update).await?;
        self.ctx.metrics.action(self.action.kind, status, reason);
        if matches!(status, Status::Held | Status::Failed) {
            let who = self.who();
            self.ctx.notifier.send(
                format!(
                    "offboard: {} of {who} is {}/{} (action {})",
                    self.action.kind.as_str(),
                    status.as_str(),
                    reason.as_str(),
                    self.action.id
                ),
                Some(&self.action.id),
                Some(status.as_str()),
                Some(reason.as_str()),
            );
        }
        Ok(())
    }

    /// The employee, as notifications show them (email masked unless `log.pii`).
    fn who(&self) -> String {
        let who = self
            .action
            .email
            .clone()
            .or_else(|| self.action.employee_id.clone())
            .unwrap_or_default();
        crate::telemetry::show_email(&who, self.ctx.settings.log.pii)
    }

    /// Asks the HR vendor's API about the employee. True when the attempt ends here: the API is
    /// down (the action waits, `pending/hr_api`, its retry budget untouched) or the termination
    /// date it gave lies ahead (the action is scheduled for it).
    async fn hr_lookup(
        &mut self,
        api: &dyn crate::hrapi::HrApi,
        employee_id: &str,
    ) -> Result<bool, crate::store::StoreError> {
        use crate::hrapi::{ApiDown, Lookup};
        let started = std::time::Instant::now();
        let answer = api.lookup(&self.ctx.hr_http, employee_id).await;
        let millis = started.elapsed().as_millis() as u64;
        let now = self.ctx.store.clock().now();
        match answer {
            Err(ApiDown(why)) => {
                let attempts = self.action.attempts;
                let schedule = self.ctx.settings.retry.schedule();
                let wait = self
                    .ctx
                    .settings
                    .retry
                    .next_delay(attempts, fastrand::f64())
                    .or_else(|| schedule.last().copied())
                    .unwrap_or(std::time::Duration::from_secs(60));
                let next = now.as_millisecond() + wait.as_millis() as i64;
                self.step(Step::HrLookup, json!({ "vendor": api.vendor(), "employee_id": employee_id, "ok": false,
                    "error": why, "millis": millis, "next_attempt_at": crate::store::from_ms(next).to_string() }));
                tracing::warn!(
                    vendor = api.vendor(),
                    "the HR vendor's API cannot answer; the action waits"
                );
                let update = Update {
                    status: Some(Status::Pending),
                    reason: Some(Some(Reason::HrApi)),
                    run_at: Some(next),
                    attempts: Some(attempts.saturating_sub(1)),
                    last_error: Some(Some(why)),
                    release: true,
                    ..Default::default()
                };
                self.save(update).await?;
                Ok(true)
            }
            Ok(Lookup::Unknown) => {
                self.step(Step::HrLookup, json!({ "vendor": api.vendor(), "employee_id": employee_id, "ok": true, "found": false,
                    "millis": millis, "note": "the vendor does not know this employee id; matching on the employee id alone" }));
                self.looked_up = Some(None);
                Ok(false)
            }
            Ok(Lookup::Found(person)) => {
                self.step(Step::HrLookup, json!({ "vendor": api.vendor(), "employee_id": employee_id, "ok": true, "found": true,
                    "millis": millis, "email": person.email, "termination_date": person.terminated_on.map(|d| d.to_string()) }));
                let new_email = person.email.filter(|_| self.action.email.is_none());
                if let Some(e) = &new_email {
                    self.action.email = Some(e.clone());
                }
                self.looked_up = Some(new_email);
                let Some(day) = person.terminated_on else {
                    return Ok(false);
                };
                let lc = &self.ctx.settings.lifecycle;
                let effective = crate::domain::Effective::Date(day);
                let Ok(due) = crate::domain::due::due_at(
                    Some(&effective),
                    now,
                    &lc.timezone,
                    lc.date_only_means,
                ) else {
                    return Ok(false);
                };
                if due <= now {
                    return Ok(false);
                }
                // Like `effective_at`: the action waits for the date the vendor gave.
                let due_ms = due.as_millisecond();
                self.step(
                    Step::RetryScheduled,
                    json!({ "scheduled_by": "hr_api", "due_at": due.to_string() }),
                );
                let update = Update {
                    status: Some(Status::Scheduled),
                    reason: Some(None),
                    run_at: Some(due_ms),
                    due_at: Some(due_ms),
                    attempts: Some(self.action.attempts.saturating_sub(1)),
                    release: true,
                    ..Default::default()
                };
                self.save(update).await?;
                Ok(true)
            }
        }
    }

    async fn save(&mut self, mut update: Update) -> Result<(), crate::store::StoreError> {
        if let Some(email) = self.looked_up.take() {
            update.hr_looked_up = true;
            update.email = update.email.or(email);
        }
        let audit = std::mem::take(&mut self.audit);
        if !self
            .ctx
            .store
            .record(&self.action.id, &self.ctx.owner, &update, &audit)
            .await?
        {
            tracing::warn!("lease lost; another worker has the action");
        }
        Ok(())
    }
}

fn user_ref(u: &User) -> WfUserRef {
    WfUserRef {
        id: u.id.clone(),
        name: u.name.clone(),
        email: u.email.clone(),
    }
}

fn user_json(u: &User) -> Value {
    json!({ "ID": u.id, "name": u.name, "emailAddr": u.email, "username": u.username, "extRefID": u.ext_ref_id,
            "isActive": u.is_active, "isAdmin": u.is_admin })
}
