//! `POST /webhooks/{source}`: authenticate, parse, store in one transaction, then answer.
//!
//! Order of checks: unknown source (404), body size (413), authentication (401), content type
//! (415), parsing (400/422). Nothing is stored for a rejected delivery. The worker is woken after
//! the commit; Workfront is never called from here.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::current_request_id;
use super::openapi::DeliveryAnswer;
use super::{ApiError, AppState};
use crate::intake::{self, Incoming};
use crate::sources::{self, Outcome};
use crate::store::Ingested;

#[utoipa::path(post, path = "/webhooks/{source}", tag = "webhooks",
    description = "Receives one delivery from source {source}. Which headers authenticate it depends on the source's kind (SPEC §4.1, §4.2); every kind's are listed. Vendor handshakes (Gusto's verification_token, HiBob's Ping test) are answered 200 ignored.",
    params(
        ("source" = String, Path, description = "a configured [sources.<name>]"),
        ("webhook-id" = Option<String>, Header, description = "standard: Standard Webhooks id, unique per event; the dedupe key"),
        ("webhook-timestamp" = Option<String>, Header, description = "standard: Unix seconds of the attempt"),
        ("webhook-signature" = Option<String>, Header, description = "standard: v1,<base64 HMAC-SHA256 of id.timestamp.body>, space-separated"),
        ("Authorization" = Option<String>, Header, description = "standard with auth = bearer|basic, rippling and cloudevents: Bearer <token>; personio: the token verbatim; factorial: Bearer <token> instead of the challenge header"),
        ("X-BambooHR-Signature" = Option<String>, Header, description = "bamboohr: hex HMAC-SHA256 of the body followed by X-BambooHR-Timestamp"),
        ("X-BambooHR-Timestamp" = Option<String>, Header, description = "bamboohr: signed with the body; Unix seconds open a replay window"),
        ("Bob-Signature" = Option<String>, Header, description = "hibob: base64 HMAC-SHA512 of the body"),
        ("X-Gusto-Signature" = Option<String>, Header, description = "gusto: hex (or base64) HMAC-SHA256 of the body, keyed with the verification token"),
        ("x-deel-signature" = Option<String>, Header, description = "deel: hex HMAC-SHA256 of \"POST\" followed by the body"),
        ("x-factorial-wh-challenge" = Option<String>, Header, description = "factorial: the subscription's challenge, this source's token"),
        ("ce-specversion" = Option<String>, Header, description = "cloudevents binary mode: 1.0 (also ce-id, ce-source, ce-type, ce-time)"),
        ("event" = Option<String>, Query, description = "factorial: the event of a bare employee object (employee_terminated, employee_unterminated)"),
    ),
    request_body(description = "the kind's own format", content(
        (super::openapi::StandardDelivery = "application/json"),
        (String = "application/x-www-form-urlencoded"),
        (Object = "application/cloudevents+json"),
        (String = "text/plain"),
    )),
    responses(
        (status = 202, description = "accepted: stored, actions created", body = super::openapi::DeliveryAnswer),
        (status = 200, description = "duplicate, ignored, or a vendor handshake", body = super::openapi::DeliveryAnswer),
        (status = 400, description = "malformed_payload", body = super::openapi::ErrorBody),
        (status = 401, description = "missing_signature, invalid_signature, timestamp_out_of_tolerance, invalid_token", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown_source", body = super::openapi::ErrorBody),
        (status = 408, description = "request_timeout: nothing was stored", body = super::openapi::ErrorBody),
        (status = 413, description = "payload_too_large", body = super::openapi::ErrorBody),
        (status = 415, description = "unsupported_media_type", body = super::openapi::ErrorBody),
        (status = 422, description = "invalid_event", body = super::openapi::ErrorBody),
        (status = 503, description = "unavailable: retry", body = super::openapi::ErrorBody),
    ))]
pub async fn receive(
    State(app): State<AppState>,
    Path(source): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = handle(&app, &source, &headers, uri.query(), body).await;
    // The source label is a configured name, never free text from the request.
    let label = if app.settings.sources.contains_key(&source) {
        source.as_str()
    } else {
        "unknown"
    };
    match answer {
        Ok((status, body, result)) => {
            app.metrics.delivery(label, result);
            (status, Json(body)).into_response()
        }
        Err(e) => {
            app.metrics.delivery(label, e.code());
            e.into_response()
        }
    }
}

async fn handle(
    app: &AppState,
    source: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, DeliveryAnswer, &'static str), ApiError> {
    let src = app
        .settings
        .sources
        .get(source)
        .ok_or_else(|| ApiError::UnknownSource(source.to_string()))?;
    let body = body.map_err(|r| body_error(r, app.settings.server.max_body_bytes))?;
    let now = app.clock.now();
    tracing::info!(source = %source, kind = src.kind(), bytes = body.len(), "delivery received");
    let req = sources::Request {
        headers,
        query,
        body: &body,
        now,
        timezone: &app.settings.lifecycle.timezone,
    };
    let outcome = src.receive(&req).inspect_err(|e| {
        let stage = if e.is_authentication() {
            "authentication"
        } else {
            "content"
        };
        tracing::warn!(source = %source, stage, error = ?e, "delivery refused");
    })?;
    let (events, dedupe_key) = match outcome {
        Outcome::Handshake(what) => {
            tracing::info!(source = %source, what = %what, "vendor handshake answered");
            return Ok((StatusCode::OK, DeliveryAnswer::ignored(what), "ignored"));
        }
        Outcome::Ignored(reason) => {
            tracing::info!(source = %source, reason = %reason, "delivery ignored");
            return Ok((StatusCode::OK, DeliveryAnswer::ignored(reason), "ignored"));
        }
        Outcome::Events { events, dedupe_key } => (events, dedupe_key),
    };
    tracing::info!(source = %source, events = events.len(), "delivery authenticated and parsed");
    let incoming = Incoming {
        source,
        dedupe_key,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: &body,
        request_id: Some(current_request_id()),
        received_at: now,
    };
    super::error::mark_handed_to_storage();
    match intake::store(&app.store, &app.settings, incoming, &events).await? {
        Ingested::Stored {
            delivery_id,
            action_ids,
            ended,
            next_run_at,
        } => {
            for (kind, status, reason) in ended {
                app.metrics.action(kind, status, reason);
            }
            tracing::info!(source = %source, delivery_id = %delivery_id, actions = ?action_ids, events = events.len(), "delivery stored");
            let now = app.store.clock().now_ms();
            if crate::domain::due::wakes_worker(next_run_at, now, app.settings.worker.poll_interval)
            {
                app.wake.notify_one();
            }
            Ok((
                StatusCode::ACCEPTED,
                DeliveryAnswer::accepted(delivery_id, action_ids),
                "accepted",
            ))
        }
        Ingested::Duplicate { delivery_id } => {
            tracing::info!(source = %source, delivery_id = %delivery_id, "duplicate delivery; nothing stored");
            Ok((
                StatusCode::OK,
                DeliveryAnswer::duplicate(delivery_id),
                "duplicate",
            ))
        }
    }
}

fn body_error(r: BytesRejection, limit: usize) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(limit)
    } else {
        ApiError::MalformedPayload(format!("the body could not be read: {r}"))
    }
}
