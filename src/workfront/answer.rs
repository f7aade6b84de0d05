//! Reading Workfront's answers: every shape an answer comes in (JSON with `data`, a 200 with an
//! `error` body, a status with Workfront's error body, an HTML page from a proxy) ends as the
//! `data` value or a [`Failure`], and as what the audit keeps of it.

use reqwest::StatusCode;
use serde_json::Value;

use super::Failure;

/// An answer off the wire: what the audit keeps (the JSON, or an excerpt of a body that is not
/// JSON, such as a proxy's HTML page) and the `data` value or the failure.
pub fn read_answer(status: StatusCode, body: &[u8]) -> (Value, Result<Value, Failure>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let kept = parsed
        .clone()
        .unwrap_or_else(|| Value::String(excerpt(body)));
    (kept, classify(status, parsed))
}

/// Turns a status and body into the `data` value or a failure.
pub fn classify(status: StatusCode, body: Option<Value>) -> Result<Value, Failure> {
    let error = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .filter(|e| !e.is_null());
    let class = error
        .and_then(|e| e.get("class"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let code = status.as_u16();
    // Credential trouble comes in several shapes, with any status: an authentication error class,
    // or a message about logging in, sessions or authentication.
    let auth_class = class
        .as_deref()
        .is_some_and(|c| c.contains("AuthenticationException") || c.contains("NotLoggedIn"));
    let auth_message = message.as_deref().is_some_and(|m| {
        let m = m.to_lowercase();
        [
            "not currently logged in",
            "not logged in",
            "session",
            "login",
            "authenticat",
            "api key",
        ]
        .iter()
        .any(|w| m.contains(w))
    });
    let auth_class = auth_class || (auth_message && code != 404);
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(Failure::RateLimited);
    }
    if code == 401 || code == 403 || auth_class {
        return Err(Failure::Auth {
            status: code,
            message: message.unwrap_or_else(|| "not authenticated".into()),
        });
    }
    if status.is_server_error() && code != 501 {
        return Err(Failure::Server {
            status: code,
            message,
        });
    }
    if code == 404 {
        return Err(Failure::NotFound);
    }
    if !status.is_success() || error.is_some() {
        return Err(Failure::Rejected {
            status: code,
            class,
            message: message.unwrap_or_else(|| format!("HTTP {code}")),
        });
    }
    match body.and_then(|mut b| b.get_mut("data").map(Value::take)) {
        Some(data) => Ok(data),
        None => Err(Failure::BadResponse("no `data` in the answer".into())),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workfront::FailureClass;
    use serde_json::json;

    #[test]
    fn an_error_body_with_http_200_is_a_failure() {
        let body = json!({"error": {"class": "com.attask.common.InvalidParameterException", "message": "bad field"}});
        let got = classify(StatusCode::OK, Some(body));
        assert!(
            matches!(got, Err(Failure::Rejected { status: 200, ref message, .. }) if message == "bad field")
        );
        assert_eq!(got.unwrap_err().class(), FailureClass::Final);
    }

    #[test]
    fn statuses_are_classified_as_the_spec_says() {
        let class = |code: u16| {
            classify(StatusCode::from_u16(code).unwrap(), None)
                .unwrap_err()
                .class()
        };
        assert_eq!(class(429), FailureClass::Retryable);
        assert_eq!(class(500), FailureClass::Retryable);
        assert_eq!(class(502), FailureClass::Retryable);
        assert_eq!(class(503), FailureClass::Retryable);
        assert_eq!(class(501), FailureClass::Final);
        assert_eq!(class(401), FailureClass::Auth);
        assert_eq!(class(403), FailureClass::Auth);
        assert_eq!(class(400), FailureClass::Final);
        assert_eq!(class(422), FailureClass::Final);
        assert_eq!(Failure::Timeout.class(), FailureClass::Retryable);
        assert_eq!(
            Failure::Connect("x".into()).class(),
            FailureClass::Retryable
        );
    }

    #[test]
    fn an_authentication_exception_class_is_auth_even_with_200() {
        let body = json!({"error": {"class": "com.attask.common.AuthenticationException", "message": "You are not currently logged in."}});
        assert_eq!(
            classify(StatusCode::OK, Some(body)).unwrap_err().class(),
            FailureClass::Auth
        );
    }

    #[test]
    fn credential_trouble_is_recognised_by_message_with_any_status() {
        for (status, message) in [
            (500, "Your session has expired"),
            (200, "You are not currently logged in."),
            (400, "Invalid API key"),
            (422, "Authentication failed for this request"),
        ] {
            let body = json!({"error": {"class": "com.attask.common.SomethingException", "message": message}});
            let got = classify(StatusCode::from_u16(status).unwrap(), Some(body)).unwrap_err();
            assert_eq!(got.class(), FailureClass::Auth, "{status} {message}");
        }
        let plain = json!({"error": {"class": "x", "message": "field emailAddr is required"}});
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, Some(plain))
                .unwrap_err()
                .class(),
            FailureClass::Final
        );
    }

    #[test]
    fn success_without_data_is_a_bad_response_and_data_is_returned() {
        assert!(matches!(
            classify(StatusCode::OK, Some(json!({}))),
            Err(Failure::BadResponse(_))
        ));
        assert_eq!(
            classify(StatusCode::OK, Some(json!({"data": [1]}))).unwrap(),
            json!([1])
        );
    }
}
