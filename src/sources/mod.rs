//! Senders: one plug-in point for every kind of HR system (SPEC §4).
//!
//! A kind is a [`Source`]: it authenticates a delivery (before looking at the body), checks the
//! content type, parses the body into [`Event`]s, and names the delivery's dedupe key; it also
//! answers the vendor's handshakes, signs bodies for `offboard sign`, and shows itself redacted
//! for `check-config`. Each kind lives in its own file with its configuration table (unknown keys
//! refused), its scheme, its parser, its signer and its unit tests with the vendor's vectors.
//! [`registry`] is the one place that matches on the kind name; everything else holds an
//! `Arc<dyn Source>` built once at configuration time. Shared pieces (HMACs, constant-time
//! comparison, bearer and basic credentials) are in [`common`]. Sources are pure: no I/O.

pub mod bamboohr;
pub mod cloudevents;
pub mod common;
pub mod deel;
pub mod factorial;
pub mod gusto;
pub mod hibob;
pub mod personio;
pub mod registry;
pub mod rippling;
pub mod signature;
pub mod standard;

use std::fmt::Debug;

use axum::http::HeaderMap;

use crate::domain::Event;

/// Why a delivery was refused; each maps to one status and error code of SPEC §4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    MissingSignature(String),
    InvalidSignature(String),
    TimestampOutOfTolerance(String),
    InvalidToken(String),
    UnsupportedMediaType(String),
    Malformed(String),
    InvalidEvent(String),
}

impl SourceError {
    /// Whether the delivery was refused before it was known to be authentic.
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            SourceError::MissingSignature(_)
                | SourceError::InvalidSignature(_)
                | SourceError::TimestampOutOfTolerance(_)
                | SourceError::InvalidToken(_)
        )
    }
}

/// A delivery as a source sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// The URL's query string (Factorial names its event there).
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub now: jiff::Timestamp,
    /// `lifecycle.timezone`, for vendor times written without a zone.
    pub timezone: &'a jiff::tz::TimeZone,
}

/// What an authentic delivery said.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Events to store, with the delivery's dedupe key (the vendor's id, else the body's hash).
    Events {
        events: Vec<Event>,
        dedupe_key: String,
    },
    /// Authentic, but nothing about offboarding (answered `200 ignored`, never 4xx: senders such
    /// as BambooHR never retry a 4xx, and Deel disables an endpoint after 10 failures).
    Ignored(String),
    /// A vendor's handshake (Gusto's verification token, HiBob's ping): answered 200, nothing
    /// stored. The text is safe to log (tokens masked).
    Handshake(String),
}

/// One kind of sender.
pub trait Source: Send + Sync + Debug {
    /// The kind's name in configuration (`standard`, `bamboohr`, ...).
    fn kind(&self) -> &'static str;

    /// Authenticates the delivery (first, before the body is parsed), checks its content type,
    /// parses it, and names its dedupe key.
    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError>;

    /// The headers this kind expects for `body`, signed with the first configured secret, for
    /// `offboard sign` and tests (including `Content-Type`).
    fn sign(&self, body: &[u8], now: jiff::Timestamp) -> Vec<(String, String)>;

    /// The source's settings with every secret redacted, for `check-config`.
    fn describe(&self) -> serde_json::Value;
}

/// For the fuzz targets: a source of `kind` with fixed test secrets, and a delivery of `body`
/// signed the way that kind expects, so that fuzzing reaches the parser.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    pub fn receive(kind: &str, body: &[u8]) {
        let table = registry::example_table(kind);
        let source = registry::build("fuzz", table).expect("the example table is valid");
        let now = jiff::Timestamp::from_second(1_700_000_000).expect("a valid time");
        let mut headers = HeaderMap::new();
        for (k, v) in source.sign(body, now) {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                axum::http::HeaderValue::from_str(&v),
            ) {
                headers.insert(k, v);
            }
        }
        let tz = jiff::tz::TimeZone::UTC;
        let req = Request {
            headers: &headers,
            query: Some("event=employee_terminated"),
            body,
            now,
            timezone: &tz,
        };
        let _ = source.receive(&req);
        // The same body unsigned must never pass.
        let bare = HeaderMap::new();
        let unsigned = Request {
            headers: &bare,
            ..req
        };
        assert!(source.receive(&unsigned).is_err() || kind_allows_unsigned(body));
    }

    /// HiBob's ping and Gusto's verification token are answered unsigned.
    fn kind_allows_unsigned(body: &[u8]) -> bool {
        let text = String::from_utf8_lossy(body);
        text.contains("Ping test") || text.contains("verification_token")
    }
}
