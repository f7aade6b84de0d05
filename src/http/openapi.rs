//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the types they answer with.
//!
//! The document is built and serialised on its first request, then served from those bytes. At
//! start-up it cost more than anything else: about 1.2 MB of short-lived allocations that stayed
//! in the heap's resident pages, and its code's pages (BENCHMARKS.md, idle RSS). A test requests
//! every documented path and method from the served routes, and compares them with the routes the
//! service has, so the document and the router cannot drift apart (`tests/it/openapi.rs`).

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::store::{ActionDetail, ActionRecord, AuditRecord, EventRecord, WfUserRef};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// Ids of the actions created (accepted only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
    /// Why it was ignored (ignored only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl DeliveryAnswer {
    pub fn accepted(delivery_id: String, actions: Vec<String>) -> Self {
        DeliveryAnswer {
            status: "accepted".into(),
            delivery_id: Some(delivery_id),
            actions: Some(actions),
            reason: None,
        }
    }

    pub fn duplicate(delivery_id: String) -> Self {
        DeliveryAnswer {
            status: "duplicate".into(),
            delivery_id: Some(delivery_id),
            actions: None,
            reason: None,
        }
    }

    pub fn ignored(reason: String) -> Self {
        DeliveryAnswer {
            status: "ignored".into(),
            delivery_id: None,
            actions: None,
            reason: Some(reason),
        }
    }
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

/// The body of a manual deactivation: at least one of `employee_id` and `email`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualAction {
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

/// A Workfront user as the API shows it (Workfront's field names).
#[derive(Serialize, ToSchema)]
pub struct WorkfrontUserView {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: Option<String>,
    #[serde(rename = "emailAddr")]
    pub email: Option<String>,
}

impl WorkfrontUserView {
    pub fn of(u: &WfUserRef) -> Self {
        WorkfrontUserView {
            id: u.id.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
        }
    }
}

/// One step of an action's audit trail.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    /// RFC 3339.
    pub at: String,
    /// What happened: received, searched, matched, workfront_call, written, finished, ...
    pub step: String,
    /// What was decided, sent and answered (secrets excluded).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl AuditEntry {
    pub fn of(r: &AuditRecord) -> Self {
        AuditEntry {
            at: ts(r.at),
            step: r.step.clone(),
            detail: r.detail.clone(),
        }
    }
}

/// An event that caused an action.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    pub delivery_id: String,
    /// `employee.terminated`, `employee.termination_cancelled` or `employee.rehired`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The type as the sender named it.
    pub sender_type: String,
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub effective_at: Option<String>,
    /// RFC 3339: the HR time of the fact.
    pub occurred_at: String,
    /// RFC 3339: when its delivery was received.
    pub received_at: String,
}

impl EventView {
    pub fn of(e: &EventRecord) -> Self {
        EventView {
            id: e.id.clone(),
            delivery_id: e.delivery_id.clone(),
            kind: e.kind.clone(),
            sender_type: e.sender_type.clone(),
            employee_id: e.employee_id.clone(),
            email: e.email.clone(),
            name: e.name.clone(),
            effective_at: e.effective_at.clone(),
            occurred_at: ts(e.occurred_at),
            received_at: ts(e.received_at),
        }
    }
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
    pub workfront_user: Option<WorkfrontUserView>,
    pub candidates: Vec<WorkfrontUserView>,
    pub attempts: u32,
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
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
            workfront_user: a.user.as_ref().map(WorkfrontUserView::of),
            candidates: a.candidates.iter().map(WorkfrontUserView::of).collect(),
            attempts: a.attempts,
            last_error: a.last_error.clone(),
            events: None,
            audit: None,
        }
    }

    /// With its events and audit trail.
    pub fn detail(d: &ActionDetail) -> ActionView {
        let mut v = ActionView::of(&d.action);
        v.events = Some(d.events.iter().map(EventView::of).collect());
        v.audit = Some(d.audit.iter().map(AuditEntry::of).collect());
        v
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
#[serde(deny_unknown_fields)]
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

/// The optional body of brake release.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrakeReleaseBody {
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
    /// While credentials fail: why (a redirect names where Workfront sent us).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workfront_auth_problem: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "offboard", description = "HR termination webhooks in, deactivated Adobe Workfront users out."),
    paths(
        super::webhooks::receive,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::admin::list,
        super::admin::create,
        super::admin::show,
        super::operator::approve,
        super::operator::retry,
        super::operator::cancel,
        super::operator::release_brake,
        super::reconcile::create,
        super::reconcile::show,
    ),
    modifiers(&AdminAuth),
    tags((name = "webhooks"), (name = "admin"), (name = "operations"))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn serve() -> impl IntoResponse {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        serde_json::to_vec(&document())
            .expect("the OpenAPI document serialises")
            .into()
    });
    ([(CONTENT_TYPE, "application/json")], body.clone())
}

/// The whole document.
fn document() -> utoipa::openapi::OpenApi {
    let mut api = ApiDoc::openapi();
    add_failure_limit(&mut api);
    pin_filters(&mut api);
    api
}

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

/// Every route that authenticates (webhooks, the admin API) may answer 429 `too_many_failures`
/// when the caller's address failed too often (SPEC §10); added here once rather than on each.
fn add_failure_limit(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, Type};
    let response = ResponseBuilder::new()
        .description("too_many_failures: this address failed authentication too often; nothing was checked or stored, retry after Retry-After seconds")
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer)))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for (path, item) in api.paths.paths.iter_mut() {
        if !(path.starts_with("/webhooks/") || path.starts_with("/admin/")) {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("429".into())
                .or_insert_with(|| response.clone().into());
        }
    }
}

/// The action list's `status` and `reason` filters take the values of SPEC §6 (or empty: no
/// filter); the document lists them so that a client knows every other value is a 400.
fn pin_filters(api: &mut utoipa::openapi::OpenApi) {
    use crate::domain::{Reason, Status};
    use utoipa::openapi::path::Parameter;
    use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
    let values = |all: Vec<&'static str>| -> RefOr<Schema> {
        let mut v: Vec<&str> = vec![""];
        v.extend(all);
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(v))
                .build(),
        ))
    };
    let Some(get) = api
        .paths
        .paths
        .get_mut("/admin/v1/actions")
        .and_then(|p| p.get.as_mut())
    else {
        return;
    };
    for p in get.parameters.iter_mut().flatten() {
        let RefOr::T(p) = p else { continue };
        let p: &mut Parameter = p;
        match p.name.as_str() {
            // Free text, but never U+0000 (no database stores it): a 400 names it.
            "source" | "employee" => {
                p.schema = Some(RefOr::T(Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[^\\x00]*$"))
                        .build(),
                )))
            }
            "cursor" => {
                p.schema = Some(RefOr::T(Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^(act_[0-9a-f]{32})?$"))
                        .build(),
                )))
            }
            "status" => p.schema = Some(values(Status::ALL.iter().map(|s| s.as_str()).collect())),
            "reason" => p.schema = Some(values(Reason::ALL.iter().map(|r| r.as_str()).collect())),
            _ => {}
        }
    }
}
