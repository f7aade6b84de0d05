//! `ApiError`: every error the HTTP API answers, with its status and stable code.
//!
//! The body is always `{"error":{"code","message","request_id"}}`. A 500 never echoes internals:
//! the detail goes to the log under the request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::sources::SourceError;
use crate::store::StoreError;

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: String;
}

tokio::task_local! {
    /// Set once the request's delivery was handed to storage: from then on the request deadline
    /// no longer cuts it off, because the sender must learn the real outcome (SPEC §4: a 408 only
    /// when nothing was stored).
    pub static HANDED_TO_STORAGE: std::sync::Arc<std::sync::atomic::AtomicBool>;
}

/// Marks the current request as handed to storage (see [`HANDED_TO_STORAGE`]).
pub fn mark_handed_to_storage() {
    let _ = HANDED_TO_STORAGE.try_with(|f| f.store(true, std::sync::atomic::Ordering::SeqCst));
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

#[derive(Debug)]
pub enum ApiError {
    /// 404 `unknown_source`
    UnknownSource(String),
    /// 413 `payload_too_large`
    PayloadTooLarge(usize),
    /// 415 `unsupported_media_type`
    UnsupportedMediaType(String),
    /// 401 `missing_signature`
    MissingSignature(String),
    /// 401 `invalid_signature`
    InvalidSignature(String),
    /// 401 `timestamp_out_of_tolerance`
    TimestampOutOfTolerance(String),
    /// 401 `invalid_token`
    InvalidToken(String),
    /// 400 `malformed_payload`
    MalformedPayload(String),
    /// 422 `invalid_event`
    InvalidEvent(String),
    /// 503 `unavailable`: the database cannot be reached; the sender must retry.
    Unavailable,
    /// 401 `unauthorized`: admin token missing or wrong.
    Unauthorized,
    /// 403 `admin_disabled`: no admin token is configured.
    AdminDisabled,
    /// 404 `not_found`
    NotFound(String),
    /// 405 `method_not_allowed`
    MethodNotAllowed,
    /// 400 `bad_request`
    BadRequest(String),
    /// 409 `conflict`: the action's status does not allow this operation.
    Conflict(String),
    /// 408 `request_timeout`
    Timeout,
    /// 429 `too_many_failures`: this address failed authentication too often; retry after.
    TooManyFailures(std::time::Duration),
    /// 500 `internal`
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            UnknownSource(_) | NotFound(_) => StatusCode::NOT_FOUND,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MissingSignature(_)
            | InvalidSignature(_)
            | TimestampOutOfTolerance(_)
            | InvalidToken(_)
            | Unauthorized => StatusCode::UNAUTHORIZED,
            MalformedPayload(_) | BadRequest(_) => StatusCode::BAD_REQUEST,
            InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AdminDisabled => StatusCode::FORBIDDEN,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Conflict(_) => StatusCode::CONFLICT,
            Timeout => StatusCode::REQUEST_TIMEOUT,
            TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            UnknownSource(_) => "unknown_source",
            PayloadTooLarge(_) => "payload_too_large",
            UnsupportedMediaType(_) => "unsupported_media_type",
            MissingSignature(_) => "missing_signature",
            InvalidSignature(_) => "invalid_signature",
            TimestampOutOfTolerance(_) => "timestamp_out_of_tolerance",
            InvalidToken(_) => "invalid_token",
            MalformedPayload(_) => "malformed_payload",
            InvalidEvent(_) => "invalid_event",
            Unavailable => "unavailable",
            Unauthorized => "unauthorized",
            AdminDisabled => "admin_disabled",
            NotFound(_) => "not_found",
            MethodNotAllowed => "method_not_allowed",
            BadRequest(_) => "bad_request",
            Conflict(_) => "conflict",
            Timeout => "request_timeout",
            TooManyFailures(_) => "too_many_failures",
            Internal => "internal",
        }
    }

    pub fn message(&self) -> String {
        use ApiError::*;
        match self {
            UnknownSource(name) => format!("no source named {name:?} is configured"),
            PayloadTooLarge(limit) => {
                format!("the body is larger than {limit} bytes (server.max_body_bytes)")
            }
            Unavailable => "the database is unavailable; retry later".into(),
            Unauthorized => {
                "a valid admin token is required: Authorization: Bearer <admin.token>".into()
            }
            AdminDisabled => "the admin API is disabled: set admin.token to enable it".into(),
            MethodNotAllowed => "this method is not allowed on this endpoint".into(),
            Timeout => "the request took too long; nothing was stored".into(),
            TooManyFailures(wait) => format!(
                "too many authentication failures from this address (server.auth_failures_per_minute); nothing was checked or stored: retry in {} s",
                retry_after(*wait)
            ),
            Internal => "internal error; see the service log for this request id".into(),
            UnsupportedMediaType(m)
            | MissingSignature(m)
            | InvalidSignature(m)
            | TimestampOutOfTolerance(m)
            | InvalidToken(m)
            | MalformedPayload(m)
            | InvalidEvent(m)
            | NotFound(m)
            | BadRequest(m)
            | Conflict(m) => m.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::openapi::ErrorBody {
            error: super::openapi::ErrorDetail {
                code: self.code().into(),
                message: self.message(),
                request_id: current_request_id(),
            },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        if let ApiError::TooManyFailures(wait) = self {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after(wait).into());
        }
        resp
    }
}

/// Whole seconds, rounded up, at least 1.
fn retry_after(wait: std::time::Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::MissingSignature(m) => ApiError::MissingSignature(m),
            SourceError::InvalidSignature(m) => ApiError::InvalidSignature(m),
            SourceError::TimestampOutOfTolerance(m) => ApiError::TimestampOutOfTolerance(m),
            SourceError::InvalidToken(m) => ApiError::InvalidToken(m),
            SourceError::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(m),
            SourceError::Malformed(m) => ApiError::MalformedPayload(m),
            SourceError::InvalidEvent(m) => ApiError::InvalidEvent(m),
        }
    }
}

impl From<StoreError> for ApiError {
    /// 503 only when the database really is unavailable; a request whose data the database
    /// refuses is that request's fault (4xx), and a row we cannot read is ours (500).
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Contention(_) | StoreError::Migration(_) => {
                tracing::error!(error = %e, "store unavailable");
                ApiError::Unavailable
            }
            StoreError::BadData(_) => {
                tracing::warn!(error = %e, "the database refused a request's data");
                ApiError::InvalidEvent(
                    "the request holds data the database cannot store (for example U+0000 or a value out of range)".into(),
                )
            }
            StoreError::Conflict(_) => {
                tracing::warn!(error = %e, "store conflict");
                ApiError::Conflict(
                    "the change conflicts with what is stored; read it again and retry".into(),
                )
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "a stored row cannot be read");
                ApiError::Internal
            }
        }
    }
}

impl From<crate::intake::IntakeError> for ApiError {
    fn from(e: crate::intake::IntakeError) -> Self {
        match e {
            crate::intake::IntakeError::Invalid(m) => ApiError::InvalidEvent(m),
            crate::intake::IntakeError::Store(e) => e.into(),
        }
    }
}
