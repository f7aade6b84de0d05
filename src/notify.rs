//! Notifications (`notify.webhook_url`): a JSON POST with a Slack-compatible `text`, plus
//! `action_id`, `status` and `reason`, for every hold, every failure, and Workfront auth trouble.
//!
//! Sending never blocks or fails an action: each notification is its own task, tried a few times
//! with a short timeout, and only logged when it cannot be delivered.

use std::time::Duration;

use serde_json::{json, Value};

/// Attempts per notification, and the wait before the second (doubling after).
const ATTEMPTS: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Notifier {
    url: Option<url::Url>,
    http: reqwest::Client,
}

impl Notifier {
    pub fn new(url: Option<url::Url>) -> Notifier {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .user_agent(concat!("offboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Notifier { url, http }
    }

    /// Sends in the background.
    pub fn send(
        &self,
        text: String,
        action_id: Option<&str>,
        status: Option<&str>,
        reason: Option<&str>,
    ) {
        let Some(url) = self.url.clone() else { return };
        let body =
            json!({"text": text, "action_id": action_id, "status": status, "reason": reason});
        let http = self.http.clone();
        tokio::spawn(deliver(http, url, body));
    }
}

async fn deliver(http: reqwest::Client, url: url::Url, body: Value) {
    let mut wait = FIRST_WAIT;
    for attempt in 1..=ATTEMPTS {
        match http.post(url.clone()).json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(
                attempt,
                status = r.status().as_u16(),
                "notification refused"
            ),
            Err(e) => {
                tracing::warn!(attempt, error = %e.without_url(), "notification not delivered")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!(action_id = ?body["action_id"], "notification dropped after {ATTEMPTS} attempts");
}
