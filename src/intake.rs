//! From parsed events to stored rows: one delivery, its events, and the actions they cause.
//!
//! Shared by `POST /webhooks/{source}` and the admin API's manual deactivation, so both store
//! exactly the same way, in one transaction.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::domain::{due, new_id, ActionKind, Event, EventType, Reason, Status};
use crate::store::{AuditEntry, Ingested, NewAction, NewDelivery, NewEvent, Store, StoreError};

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
        .map(|e| plan(settings, e, &delivery, incoming.received_at))
        .collect();
    store.ingest(&delivery, &rows).await
}

/// The row for one event, with the action it causes.
fn plan(settings: &Settings, e: &Event, delivery: &NewDelivery, now: jiff::Timestamp) -> NewEvent {
    let id = new_id("evt");
    let lc = &settings.lifecycle;
    let due_at = due::due_at(e.effective.as_ref(), now, &lc.timezone, lc.date_only_means);
    let detail = json!({
        "event_id": id, "delivery_id": delivery.id, "source": delivery.source, "type": e.kind.as_str(),
        "sender_type": e.sender_type, "effective_at": e.effective.as_ref().map(|x| x.to_string()),
        "due_at": due_at.to_string(), "timezone": lc.timezone_name,
    });
    let runnable = if due_at > now {
        Status::Scheduled
    } else {
        Status::Pending
    };
    let action = match e.kind {
        EventType::Terminated => Some(NewAction {
            id: new_id("act"),
            kind: ActionKind::Deactivate,
            status: runnable,
            reason: None,
            due_at: due_at.as_millisecond(),
            audit: AuditEntry::now("received", detail),
        }),
        EventType::Rehired if lc.reactivate_on_rehire => Some(NewAction {
            id: new_id("act"),
            kind: ActionKind::Reactivate,
            status: runnable,
            reason: None,
            due_at: due_at.as_millisecond(),
            audit: AuditEntry::now("received", detail),
        }),
        EventType::Rehired => Some(NewAction {
            id: new_id("act"),
            kind: ActionKind::Reactivate,
            status: Status::Skipped,
            reason: Some(Reason::ReactivationDisabled),
            due_at: due_at.as_millisecond(),
            audit: AuditEntry::now(
                "received",
                json!({ "note": "lifecycle.reactivate_on_rehire is off", "event": detail }),
            ),
        }),
        // Cancellations are recorded; acting on them belongs to the lifecycle rules.
        EventType::TerminationCancelled => None,
    };
    NewEvent {
        id,
        kind: e.kind.as_str().to_string(),
        sender_type: e.sender_type.clone(),
        employee_id: e.employee.employee_id.clone(),
        email: e.employee.email.clone(),
        name: e.name.clone(),
        effective_at: e.effective.as_ref().map(|x| x.to_string()),
        occurred_at: e.occurred_at.as_millisecond(),
        action,
    }
}
