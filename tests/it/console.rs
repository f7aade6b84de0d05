//! The operator console (SPEC §11) over HTTP: every route without a session, sign-in, the session
//! cookie, CSRF, and what a page may load. The browser tests (tests/browser) drive the same pages
//! in Chromium.

use std::time::Duration;

use reqwest::{header, StatusCode};

use crate::harness::*;

/// A client that shows redirects instead of following them, and keeps no cookies of its own.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Signed {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp, operator: &str) -> Signed {
    let r = client()
        .post(format!("{}/console/login", app.base))
        .form(&[
            ("token", ADMIN_TOKEN),
            ("operator", operator),
            ("next", "/console"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let page = client()
        .get(format!("{}/console", app.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries a CSRF token")
        .to_string();
    Signed { cookie, csrf }
}

async fn held_action(app: &TestApp) -> String {
    let id = app.terminate(Some("E-1042"), None).await;
    app.wait_for_status(&id, "held").await;
    id
}

#[tokio::test]
async fn every_console_route_without_a_session_redirects_to_sign_in_and_shows_no_data() {
    let app = spawn_app_with(options("[safety]\nrequire_approval = true")).await;
    let id = held_action(&app).await;
    let rec = "rec_0123456789abcdef0123456789abcdef";
    let gets = [
        "/console".to_string(),
        "/console/actions?status=held".into(),
        format!("/console/actions/{id}"),
        "/console/brake".into(),
        "/console/reconciliations".into(),
        format!("/console/reconciliations/{rec}"),
        format!("/console/reconciliations/{rec}/report.csv"),
    ];
    let posts = [
        "/console/logout".to_string(),
        format!("/console/actions/{id}/approve"),
        format!("/console/actions/{id}/cancel"),
        format!("/console/actions/{id}/retry"),
        "/console/brake/release".into(),
        "/console/reconciliations".into(),
        format!("/console/reconciliations/{rec}/apply"),
    ];
    // No cookie, a forged one, and one signed with another admin token.
    let other = offboard::http::console::session::Keys::from_token("another-token").issue(
        "Eve",
        "s1",
        i64::MAX,
    );
    for cookie in [
        None,
        Some("offboard_session=v1.9999999999999.s.RXZl.AAAA".to_string()),
        Some(format!("offboard_session={other}")),
    ] {
        for (method, path) in gets
            .iter()
            .map(|p| ("GET", p))
            .chain(posts.iter().map(|p| ("POST", p)))
        {
            let mut req = client().request(method.parse().unwrap(), format!("{}{path}", app.base));
            if let Some(c) = &cookie {
                req = req.header(header::COOKIE, c);
            }
            if method == "POST" {
                req = req.form(&[
                    ("csrf", "x"),
                    ("confirm", "yes"),
                    ("workfront_user_id", JANE),
                ]);
            }
            let r = req.send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::SEE_OTHER,
                "{method} {path} with {cookie:?}"
            );
            let to = r.headers()[header::LOCATION].to_str().unwrap().to_string();
            assert!(
                to.starts_with("/console/login?next="),
                "{method} {path} -> {to}"
            );
            let body = r.text().await.unwrap();
            assert!(
                !body.contains(&id) && !body.contains("E-1042"),
                "{method} {path} shows data"
            );
        }
    }
    // A GET comes back to its page after sign-in; nothing was changed by the POSTs.
    let r = client()
        .get(format!("{}/console/actions?status=held", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()[header::LOCATION],
        "/console/login?next=%2Fconsole%2Factions%3Fstatus%3Dheld"
    );
    let after = app.admin_get_action(&id).await;
    assert_eq!(after["status"], "held");
    assert_eq!(app.puts(), 0);
}

#[tokio::test]
async fn sign_in_takes_the_admin_token_and_a_name_and_sets_a_strict_http_only_cookie_that_expires()
{
    let app = spawn_app().await;
    let login = |token: &'static str, name: &'static str| {
        client()
            .post(format!("{}/console/login", app.base))
            .form(&[
                ("token", token),
                ("operator", name),
                ("next", "//evil.example/"),
            ])
            .send()
    };
    let wrong = login("not-the-token", "Ann").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("That is not the admin token."));
    let nameless = login(ADMIN_TOKEN, "  ").await.unwrap();
    assert_eq!(nameless.status(), StatusCode::BAD_REQUEST);
    assert!(nameless.headers().get(header::SET_COOKIE).is_none());

    let ok = login(ADMIN_TOKEN, "Ann Operator").await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        ok.headers()[header::LOCATION],
        "/console",
        "no redirect off the console"
    );
    let set = ok.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(
        !set.contains("Secure"),
        "no Secure on plain HTTP without console_secure_cookie"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let page = |c: String| {
        client()
            .get(format!("{}/console", app.base))
            .header(header::COOKIE, c)
            .send()
    };
    let r = page(cookie.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Ann Operator"));
    // After admin.console_session (8h) the same cookie no longer opens a page.
    app.advance(Duration::from_secs(8 * 3600));
    let r = page(cookie).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn with_console_secure_cookie_the_session_cookie_is_secure() {
    let app = spawn_app_with(options("[admin]\nconsole_secure_cookie = true")).await;
    let r = client()
        .post(format!("{}/console/login", app.base))
        .form(&[("token", ADMIN_TOKEN), ("operator", "Ann")])
        .send()
        .await
        .unwrap();
    assert!(r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .ends_with("; Secure"));
}

#[tokio::test]
async fn a_console_change_without_this_sessions_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app_with(options("[safety]\nrequire_approval = true")).await;
    let id = held_action(&app).await;
    let s = sign_in(&app, "Ann Operator").await;
    let other = sign_in(&app, "Bob").await;
    assert_ne!(s.csrf, other.csrf, "each session has its own token");
    let cancel = format!("{}/console/actions/{id}/cancel", app.base);
    let refused: [Vec<(&str, &str)>; 3] = [
        vec![("note", "no token")],
        vec![("note", "wrong"), ("csrf", "00")],
        vec![("note", "another session's"), ("csrf", other.csrf.as_str())],
    ];
    for form in &refused {
        let r = client()
            .post(&cancel)
            .header(header::COOKIE, &s.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?}");
    }
    // A cross-site POST is refused even with the right token.
    let r = client()
        .post(&cancel)
        .header(header::COOKIE, &s.cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let still = app.admin_get_action(&id).await;
    assert_eq!(still["status"], "held");
    assert!(!TestApp::steps(&still).contains(&"operator_cancelled".to_string()));

    let r = client()
        .post(&cancel)
        .header(header::COOKIE, &s.cookie)
        .form(&[("csrf", s.csrf.as_str()), ("note", "left before starting")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[header::LOCATION].to_str().unwrap(),
        format!("/console/actions/{id}?done=cancel")
    );
    let done = app.admin_get_action(&id).await;
    assert_eq!(done["status"], "cancelled");
    let step = done["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "operator_cancelled")
        .unwrap();
    assert_eq!(step["detail"]["operator"], "Ann Operator");
    assert_eq!(step["detail"]["note"], "left before starting");
}

#[tokio::test]
async fn a_refused_console_change_shows_why_and_changes_nothing() {
    let app = spawn_app_with(options("[safety]\nrequire_approval = true")).await;
    let id = held_action(&app).await;
    let s = sign_in(&app, "Ann").await;
    // Retry is for failed actions only: 409 with the reason in the page.
    let r = client()
        .post(format!("{}/console/actions/{id}/retry", app.base))
        .header(header::COOKIE, &s.cookie)
        .form(&[("csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("cannot retry an action that is held"));
    // A user who is not a candidate is refused (the console never sends override).
    let r = client()
        .post(format!("{}/console/actions/{id}/approve", app.base))
        .header(header::COOKIE, &s.cookie)
        .form(&[("csrf", s.csrf.as_str()), ("workfront_user_id", JOHN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The brake release needs its confirmation.
    let r = client()
        .post(format!("{}/console/brake/release", app.base))
        .header(header::COOKIE, &s.cookie)
        .form(&[("csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.admin_get_action(&id).await["status"], "held");
    assert_eq!(app.puts(), 0);
}

#[tokio::test]
async fn console_pages_are_small_load_nothing_from_elsewhere_and_are_never_cached() {
    let app = spawn_app_with(options("[safety]\nrequire_approval = true")).await;
    let id = held_action(&app).await;
    let s = sign_in(&app, "Ann").await;
    for path in [
        "/console".to_string(),
        "/console/actions".into(),
        format!("/console/actions/{id}"),
        "/console/brake".into(),
        "/console/reconciliations".into(),
        "/console/login".into(),
    ] {
        let r = client()
            .get(format!("{}{path}", app.base))
            .header(header::COOKIE, &s.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers().clone();
        assert_eq!(h[header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert!(h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'"));
        let body = r.text().await.unwrap();
        assert!(body.len() < 100 * 1024, "{path} is {} bytes", body.len());
        for external in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import",
        ] {
            assert!(!body.contains(external), "{path} loads {external}");
        }
        assert!(
            body.contains("name=\"viewport\""),
            "{path} is laid out for phones"
        );
        // What the Content-Security-Policy would block: inline styles, handlers and scripts.
        for inline in [
            " style=",
            " onclick=",
            " onsubmit=",
            "<script>",
            "javascript:",
        ] {
            assert!(
                !body.contains(inline),
                "{path} has {inline:?}, which the CSP blocks"
            );
        }
    }
    for (asset, kind) in [
        ("console.css", "text/css"),
        ("console.js", "text/javascript"),
    ] {
        let r = client()
            .get(format!("{}/console/assets/{asset}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
}

#[tokio::test]
async fn without_an_admin_token_the_console_refuses_to_run() {
    let app = spawn_app_with(options("[admin]\ntoken = \"\"")).await;
    for path in ["/console", "/console/login", "/console/actions"] {
        let r = client()
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("no admin token is configured"));
    }
    let r = client()
        .post(format!("{}/console/login", app.base))
        .form(&[("token", ""), ("operator", "Eve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn with_the_console_switched_off_its_routes_do_not_exist() {
    let app = spawn_app_with(options("[admin]\nconsole = false")).await;
    let r = client()
        .get(format!("{}/console/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_tokens_at_sign_in_count_against_the_per_address_failure_limit() {
    let app = spawn_app_with(options("[server]\nauth_failures_per_minute = 3")).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = client()
            .post(format!("{}/console/login", app.base))
            .form(&[("token", "guess"), ("operator", "Eve")])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[401, 401, 401]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
}
