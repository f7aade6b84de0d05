//! From parsed events to stored rows: one delivery, its events, and the actions they cause.
//!
//! Shared by `POST /webhooks/{source}` and the admin API's manual deactivation, so both store
//! exactly the same way, in one transaction. Before anything is stored, each event passes the
//! hostile-input rules of SPEC §4 ([`crate::domain::check_event`]); what each event then does to
//! the employee's actions is decided by [`crate::domain::lifecycle`] inside that transaction.

pub mod data;
pub mod leavers;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::domain::lifecycle::Switches;
use crate::domain::{check_event, due, has_nul, new_id, Event, Status};
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

/// Why a delivery was not stored.
#[derive(Debug)]
pub enum IntakeError {
    /// Refused for its content (422 `invalid_event`); nothing stored.
    Invalid(String),
    Store(StoreError),
}

impl From<StoreError> for IntakeError {
    fn from(e: StoreError) -> Self {
        IntakeError::Store(e)
    }
}

pub async fn store(
    store: &Store,
    settings: &Settings,
    incoming: Incoming<'_>,
    events: &[Event],
) -> Result<Ingested, IntakeError> {
    let now = incoming.received_at;
    for e in events {
        check_event(e, now, settings.lifecycle.max_future_skew).map_err(IntakeError::Invalid)?;
    }
    if incoming.body.contains(&0) || has_nul(&incoming.dedupe_key) {
        return Err(IntakeError::Invalid(
            "the delivery contains U+0000, which cannot be stored".into(),
        ));
    }
    let delivery = NewDelivery {
        id: new_id("dlv"),
        source: incoming.source.to_string(),
        dedupe_key: incoming.dedupe_key,
        received_at: now.as_millisecond(),
        content_type: incoming.content_type.filter(|c| !has_nul(c)),
        body: String::from_utf8_lossy(incoming.body).into_owned(),
        body_sha256: hex::encode(Sha256::digest(incoming.body)),
        request_id: incoming.request_id,
    };
    let rows = events
        .iter()
        .map(|e| row(settings, e, &delivery, now))
        .collect::<Result<Vec<NewEvent>, IntakeError>>()?;
    let switches = Switches {
        reactivate_on_rehire: settings.lifecycle.reactivate_on_rehire,
        reactivate_on_cancel: settings.lifecycle.reactivate_on_cancel,
    };
    Ok(store.ingest(delivery, rows, switches).await?)
}

fn row(
    settings: &Settings,
    e: &Event,
    delivery: &NewDelivery,
    now: jiff::Timestamp,
) -> Result<NewEvent, IntakeError> {
    let id = new_id("evt");
    let lc = &settings.lifecycle;
    let due_at = due::due_at(e.effective.as_ref(), now, &lc.timezone, lc.date_only_means)
        .map_err(IntakeError::Invalid)?;
    let detail = json!({
        "event_id": id, "delivery_id": delivery.id, "source": delivery.source, "type": e.kind.as_str(),
        "sender_type": e.sender_type, "occurred_at": e.occurred_at.to_string(),
        "effective_at": e.effective.as_ref().map(|x| x.to_string()), "due_at": due_at.to_string(), "timezone": lc.timezone_name,
    });
    Ok(NewEvent {
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
    })
}
