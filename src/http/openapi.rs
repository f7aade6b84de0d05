//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the types they answer with, and registered through the same `OpenApiRouter`
//! calls that route requests, so paths and methods cannot drift from what is served.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::store::{ActionRecord, AuditEntry, EventRecord, WfUserRef};

/// Every error: `{"error":{"code","message","request_id"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `invalid_signature`.
    pub code: String,
    pub message: String,
    /// Also sent as the `x-request-id` header; find the request in the logs with it.
    pub request_id: String,
}

/// The answer to a delivery: `accepted` (202), `duplicate` or `ignored` (200).
#[derive(Serialize, ToSchema)]
pub struct DeliveryAnswer {
    /// `accepted`, `duplicate` or `ignored`.
    pub status: String,
    pub delivery_id: Option<String>,
    /// Ids of the actions created (accepted only).
    pub actions: Option<Vec<String>>,
    /// Why it was ignored (ignored only).
    pub reason: Option<String>,
}

/// A delivery of kind `standard` (SPEC §4.1).
#[derive(Serialize, ToSchema)]
pub struct StandardDelivery {
    /// `employee.terminated`, `employee.termination_cancelled` or `employee.rehired`; others are ignored.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339: when the HR fact happened.
    pub timestamp: Option<String>,
    pub data: EmployeeData,
}

/// Who and when; at least one of `employee_id` and `email`.
#[derive(Serialize, ToSchema)]
pub struct EmployeeData {
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `YYYY-MM-DD` (read in `lifecycle.timezone`) or an RFC 3339 date-time; absent or past: now.
    pub effective_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EmployeeView {
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// An action (SPEC §6). `events` and `audit` are present on `GET /admin/v1/actions/{id}` and the
/// operator endpoints, absent in lists.
#[derive(Serialize, ToSchema)]
pub struct ActionView {
    pub id: String,
    /// `deactivate` or `reactivate`.
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub due_at: String,
    /// When a scheduled or pending action will next be tried.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub done_at: Option<String>,
    pub source: String,
    pub employee: EmployeeView,
    pub workfront_user: Option<WfUserRef>,
    pub candidates: Vec<WfUserRef>,
    pub attempts: u32,
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventRecord>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Vec<AuditEntry>>,
}

fn ts(ms: i64) -> String {
    crate::store::from_ms(ms).to_string()
}

impl ActionView {
    pub fn of(a: &ActionRecord) -> ActionView {
        use crate::domain::Status;
        ActionView {
            id: a.id.clone(),
            kind: a.kind.as_str().into(),
            status: a.status.as_str().into(),
            reason: a.reason.map(|r| r.as_str().into()),
            due_at: ts(a.due_at),
            next_attempt_at: matches!(a.status, Status::Pending | Status::Scheduled)
                .then(|| ts(a.run_at)),
            created_at: ts(a.created_at),
            updated_at: ts(a.updated_at),
            done_at: a.done_at.map(ts),
            source: a.source.clone(),
            employee: EmployeeView {
                employee_id: a.employee_id.clone(),
                email: a.email.clone(),
                name: a.employee_name.clone(),
            },
            workfront_user: a.user.clone(),
            candidates: a.candidates.clone(),
            attempts: a.attempts,
            last_error: a.last_error.clone(),
            events: None,
            audit: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ActionList {
    /// Newest first.
    pub actions: Vec<ActionView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The optional body of approve, retry, cancel and brake release.
#[derive(Serialize, ToSchema)]
pub struct OperatorBody {
    /// Approve: the Workfront user to act on (required for `ambiguous_match`).
    pub workfront_user_id: Option<String>,
    /// Approve: allow a user who is not a candidate (audited).
    #[serde(rename = "override")]
    pub override_: Option<bool>,
    /// Who acts, for the audit trail.
    pub operator: Option<String>,
    pub note: Option<String>,
}

/// What approve, retry and cancel answer (for the document; the handlers answer `ActionView` or
/// an `ApiError`).
// Never built, only described: hence dead code and an unbalanced size.
#[allow(dead_code, clippy::large_enum_variant)]
#[derive(utoipa::IntoResponses)]
pub enum OperatorResponses {
    /// The action after the change, with its events and audit trail.
    #[response(status = 200)]
    Changed(ActionView),
    /// bad_request: a body that is not an operator body, or a user that needs `override`.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// unauthorized
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// admin_disabled
    #[response(status = 403)]
    Disabled(ErrorBody),
    /// not_found
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// conflict: the action's status does not allow this operation.
    #[response(status = 409)]
    Conflict(ErrorBody),
}

#[derive(Serialize, ToSchema)]
pub struct BrakeReleased {
    pub released: usize,
    pub actions: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (Workfront refuses the credentials) or `unavailable`.
    pub status: String,
    pub database: String,
    pub workfront_auth: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "offboard", description = "HR termination webhooks in, deactivated Adobe Workfront users out."),
    modifiers(&AdminAuth),
    tags((name = "webhooks"), (name = "admin"), (name = "operations"))
)]
pub struct ApiDoc;

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
