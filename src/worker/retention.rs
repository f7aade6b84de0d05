//! The retention task: purges raw delivery bodies after `retention.payload_days` and audit rows
//! after `retention.audit_days`, and reconciliation reports with the audit. It runs shortly after start and then every `retention.interval`
//! (an hour by default); what is due is
//! computed from stored times, so a restart loses nothing and several replicas may run it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RetentionSettings;
use crate::store::Store;

/// The first run comes this soon after start (or sooner with a shorter interval).
const FIRST: Duration = Duration::from_secs(5);

pub async fn run(store: Store, settings: RetentionSettings, cancel: CancellationToken) {
    let mut wait = FIRST.min(settings.interval);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = settings.interval;
        let now = store.clock().now_ms();
        match store
            .purge(now, settings.payload_days, settings.audit_days)
            .await
        {
            Ok((0, 0)) => {}
            Ok((bodies, audit)) => tracing::info!(bodies, audit_rows = audit, "retention purge"),
            Err(e) => tracing::warn!(error = %e, "retention purge failed; will try again"),
        }
        // Reconciliation reports are audit evidence (and hold PII): kept as long as the audit.
        let before = now - i64::from(settings.audit_days) * 86_400_000;
        match store.purge_reconciliations(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reports = n, "retention purge of reconciliation reports"),
            Err(e) => {
                tracing::warn!(error = %e, "retention purge of reconciliation reports failed; will try again")
            }
        }
    }
}
