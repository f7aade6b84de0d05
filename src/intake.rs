//! From parsed events to stored rows: one delivery, its events, and the actions they cause.
//!
//! Shared by `POST /webhooks/{source}` and the admin API's manual deactivation, so both store
//! exactly the same way, in one transaction. What each event does to the employee's actions is
//! decided by [`crate::domain::lifecycle`] inside that transaction.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::domain::lifecycle::Switches;
use crate::domain::{due, new_id, Event, Status};
use crate::store::{Ingested, NewDelivery, NewEvent, Store, StoreError};

/// A delivery to store.
pub struct Incoming<'a> {
    pub source: &'a str,
    pub dedupe_key: String,
    pub content_type: Option<String>,
    pub body: &'a [u8],
    pub request_id: Option<String>,
    pub received_at: jiff::Timestamp,
}

pub async fn store(
    store: &Store,
    settings: &Settings,
    incoming: Incoming<'_>,
    events: &[Event],
) -> Result<Ingested, StoreError> {
    let delivery = NewDelivery {
        id: new_id("dlv"),
        source: incoming.source.to_string(),
        dedupe_key: incoming.dedupe_key,
        received_at: incoming.received_at.as_millisecond(),
        content_type: incoming.content_type,
        body: String::from_utf8_lossy(incoming.body).into_owned(),
        body_sha256: hex::encode(Sha256::digest(incoming.body)),
        request_id: incoming.request_id,
    };
    let rows: Vec<NewEvent> = events
        .iter()
        .map(|e| row(settings, e, &delivery, incoming.received_at))
        .collect();
    let switches = Switches {
        reactivate_on_rehire: settings.lifecycle.reactivate_on_rehire,
        reactivate_on_cancel: settings.lifecycle.reactivate_on_cancel,
    };
    store.ingest(&delivery, &rows, &switches).await
}

fn row(settings: &Settings, e: &Event, delivery: &NewDelivery, now: jiff::Timestamp) -> NewEvent {
    let id = new_id("evt");
    let lc = &settings.lifecycle;
    let due_at = due::due_at(e.effective.as_ref(), now, &lc.timezone, lc.date_only_means);
    let detail = json!({
        "event_id": id, "delivery_id": delivery.id, "source": delivery.source, "type": e.kind.as_str(),
        "sender_type": e.sender_type, "occurred_at": e.occurred_at.to_string(),
        "effective_at": e.effective.as_ref().map(|x| x.to_string()), "due_at": due_at.to_string(), "timezone": lc.timezone_name,
    });
    NewEvent {
        id,
        kind: e.kind,
        sender_type: e.sender_type.clone(),
        employee_id: e.employee.employee_id.clone(),
        email: e.employee.email.clone(),
        name: e.name.clone(),
        effective_at: e.effective.as_ref().map(|x| x.to_string()),
        occurred_at: e.occurred_at.as_millisecond(),
        due_at: due_at.as_millisecond(),
        runnable: if due_at > now {
            Status::Scheduled
        } else {
            Status::Pending
        },
        detail,
    }
}
