//! Rows as the rest of the service sees them.

use serde_json::Value;

use crate::domain::{ActionKind, EventType, Reason, Status, Step};

/// A delivery about to be stored.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub source: String,
    pub dedupe_key: String,
    pub received_at: i64,
    pub content_type: Option<String>,
    pub body: String,
    pub body_sha256: String,
    pub request_id: Option<String>,
}

/// An event about to be stored; the store decides, with the employee's history, what it does.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: EventType,
    pub sender_type: String,
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub effective_at: Option<String>,
    /// HR time of the fact (ms).
    pub occurred_at: i64,
    /// When an action it creates is due (ms).
    pub due_at: i64,
    /// The status such an action starts in: scheduled (due later) or pending.
    pub runnable: Status,
    /// The first audit entry of an action it creates.
    pub detail: Value,
}

/// An action that reached a final status, as counted in metrics.
pub type Ended = (ActionKind, Status, Reason);

/// What [`super::Store::ingest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Stored {
        delivery_id: String,
        action_ids: Vec<String>,
        /// Actions that this delivery ended at once (superseded, cancelled, recorded as
        /// skipped), for metrics.
        ended: Vec<Ended>,
        /// When the earliest action it created may first run (ms), if it created a runnable one.
        next_run_at: Option<i64>,
    },
    Duplicate {
        delivery_id: String,
    },
}

/// The Workfront user an action is about (or a candidate of an ambiguous match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WfUserRef {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// One step to append to an action's audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub step: Step,
    /// What was decided, sent and answered (secrets excluded).
    pub detail: Value,
}

impl AuditEntry {
    pub fn new(at: jiff::Timestamp, step: Step, detail: Value) -> Self {
        AuditEntry {
            at: at.as_millisecond(),
            step,
            detail,
        }
    }
}

/// One step of an audit trail as stored (older versions may have written steps this version does
/// not name, so the step is kept as text).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub step: String,
    pub detail: Value,
}

/// An action as stored.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    pub id: String,
    pub kind: ActionKind,
    pub status: Status,
    pub reason: Option<Reason>,
    pub due_at: i64,
    pub run_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub source: String,
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub employee_name: Option<String>,
    pub user: Option<WfUserRef>,
    pub candidates: Vec<WfUserRef>,
    pub attempts: u32,
    pub write_sent: bool,
    pub lease_owner: Option<String>,
    /// The lease owner found when this row was last claimed: set means the previous worker died.
    pub prev_owner: Option<String>,
    pub last_error: Option<String>,
    pub done_at: Option<i64>,
    /// An operator approved it: safety holds no longer apply.
    pub approved: bool,
    /// The delivery that created it (none for rows older than this column).
    pub delivery_id: Option<String>,
    /// The HR vendor's API was asked about this employee (§4.3).
    pub hr_looked_up: bool,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: String,
    pub delivery_id: String,
    pub kind: String,
    pub sender_type: String,
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub effective_at: Option<String>,
    /// Milliseconds since the epoch.
    pub occurred_at: i64,
    pub received_at: i64,
}

/// An action with its events and audit trail.
#[derive(Debug, Clone)]
pub struct ActionDetail {
    pub action: ActionRecord,
    pub events: Vec<EventRecord>,
    pub audit: Vec<AuditRecord>,
}
