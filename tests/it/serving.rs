//! Serving (SPEC §10): deadlines on every phase of a connection, the connection cap, the grace on
//! shutdown, the operator listener, TLS, and the limiter on authentication failures. Slow
//! clients are a handful of raw TCP connections on 127.0.0.1.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::processes::{write_config, Replica};

/// Reads until the server closes the connection (EOF or reset); how long that took, or `Err`
/// when it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .map(|_| started.elapsed())
        .map_err(|_| format!("still open after {within:?}"))
}

/// One HTTP/1.1 request on `stream`, keeping the connection; the status line's code.
async fn request_on(stream: &mut TcpStream, path: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Our answers to these paths are small and carry content-length: read the head and body.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.app().addr()).await.unwrap()
}

#[tokio::test]
async fn a_client_trickling_header_lines_is_cut_off_after_header_read_timeout() {
    let app = spawn_app_with(options(
        "[server]\nheader_read_timeout = \"400ms\"\nidle_timeout = \"60s\"",
    ))
    .await;
    let mut slow = connect(&app).await;
    let started = Instant::now();
    slow.write_all(b"POST /webhooks/hr HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    // One header line every 100 ms, never the blank line: each byte would reset a read timeout.
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow
                .write_all(format!("x-pad-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), trickle).await;
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(400) && held < Duration::from_secs(10),
        "the trickling connection was closed after {held:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_header_read_timeout() {
    let app = spawn_app_with(options(
        "[server]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"60s\"",
    ))
    .await;
    let mut silent = connect(&app).await;
    let took = closed_within(&mut silent, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lives_for_idle_timeout_not_header_read_timeout() {
    let app = spawn_app_with(options(
        "[server]\nheader_read_timeout = \"200ms\"\nidle_timeout = \"1200ms\"",
    ))
    .await;
    let mut conn = connect(&app).await;
    assert_eq!(request_on(&mut conn, "/healthz").await, 200);
    let idle = closed_within(&mut conn, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(
        idle >= Duration::from_millis(1100),
        "an idle keep-alive connection was closed after {idle:?}, before idle_timeout"
    );
}

#[tokio::test]
async fn stuck_clients_never_keep_a_signed_delivery_from_its_acknowledgement() {
    // Four stuck connections fill the cap; each is cut at header_read_timeout, so the delivery
    // that waits behind them in the backlog is served and acknowledged.
    let app = spawn_app_with(options(
        "[server]\nmax_connections = 4\nheader_read_timeout = \"500ms\"",
    ))
    .await;
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&app).await;
        s.write_all(b"POST /webhooks/hr HTTP/1.1\r\nhost: t\r\n")
            .await
            .unwrap();
        stuck.push(s);
    }
    let answer = app.post_delivery(&termination(Some("E-1"), None)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    for s in &mut stuck {
        closed_within(s, Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test]
async fn beyond_max_connections_new_connections_wait_while_the_open_ones_keep_working() {
    let app = spawn_app_with(options(
        "[server]\nmax_connections = 2\nheader_read_timeout = \"30s\"\nidle_timeout = \"30s\"",
    ))
    .await;
    let mut first = connect(&app).await;
    assert_eq!(request_on(&mut first, "/healthz").await, 200);
    let second = connect(&app).await;
    // The third is accepted by the kernel, but not served while two are open.
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    // The first keeps working: it is answered after the third sent its request…
    assert_eq!(request_on(&mut first, "/readyz").await, 200);
    // …and the third has had no answer.
    let mut buf = [0u8; 64];
    assert!(
        matches!(third.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection beyond max_connections was served"
    );
    drop(second);
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once a place is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn sigterm_with_a_half_sent_request_open_exits_within_shutdown_grace() {
    let dir = tempfile::tempdir().unwrap();
    let sim = crate::processes::sim_with_users(1, Duration::ZERO).await;
    let db = database_url(dir.path()).await;
    let config = write_config(
        dir.path(),
        "grace",
        &db,
        &sim.base_url(),
        "[server]\nshutdown_grace = \"1s\"\nheader_read_timeout = \"120s\"\nidle_timeout = \"120s\"",
    );
    let mut replica = Replica::start(&config).await;
    let addr = replica.base.trim_start_matches("http://").to_string();
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /webhooks/hr HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(request_on(&mut idle, "/healthz").await, 200);
    let started = Instant::now();
    let code = replica.terminate().await;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "a graceful stop exits 0");
    assert!(
        took < Duration::from_secs(8),
        "the process ran {took:?} after SIGTERM with shutdown_grace = 1s"
    );
}

#[tokio::test]
async fn admin_bind_puts_the_operator_surface_on_its_own_listener() {
    let app = spawn_app_with(options("[server]\nadmin_bind = \"127.0.0.1:0\"")).await;
    let admin = format!(
        "http://{}",
        app.app().admin_addr().expect("an admin listener")
    );
    let http = &app.http;
    for path in [
        "/admin/v1/actions",
        "/metrics",
        "/openapi.json",
        "/admin/v1/brake",
        "/console",
        "/console/login",
    ] {
        let public = http
            .get(format!("{}{path}", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "{path} on the public listener");
        let body: Value = public.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
    for path in [
        "/admin/v1/actions",
        "/metrics",
        "/openapi.json",
        "/console/login",
    ] {
        let r = http
            .get(format!("{admin}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} on the operator listener");
    }
    let unauth = http
        .get(format!("{admin}/admin/v1/actions"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauth.status(),
        401,
        "the operator listener still asks for the token"
    );
    let webhook = http
        .post(format!("{admin}/webhooks/hr"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        webhook.status(),
        404,
        "no webhooks on the operator listener"
    );
    for path in ["/healthz", "/readyz"] {
        let r = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} on the public listener");
    }
    let answer = app.post_delivery(&termination(Some("E-1"), None)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
}

/// A self-signed certificate for `localhost` and its key, as PEM files in `dir`.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = made.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

#[tokio::test]
async fn with_tls_the_service_answers_over_https_and_plain_http_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = certificate(dir.path());
    let app = spawn_app_with(options(&format!(
        "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    )))
    .await;
    let addr = app.app().addr();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", addr.port());
    let health = https.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let delivery = signed_delivery(
        &https,
        &base,
        "hr",
        termination(Some("E-1"), None),
        app.clock.now(),
    )
    .await;
    assert_eq!(delivery.status, 202, "{}", delivery.body);
    let plain = app.http.get(format!("http://{addr}/healthz")).send().await;
    assert!(plain.is_err(), "plain HTTP on the TLS port: {plain:?}");
}

#[tokio::test]
async fn a_tls_key_that_does_not_parse_stops_the_start_naming_the_key_not_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = certificate(dir.path());
    let key = dir.path().join("bad.pem");
    std::fs::write(&key, "not a key: hunter2-secret-material\n").unwrap();
    let settings = offboard::config::Settings::from_toml_layers(&[&format!(
        "[server]\nbind = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[database]\nurl = \"sqlite://{}\"\n[workfront]\nbase_url = \"http://127.0.0.1:9\"\napi_key = \"k\"",
        cert.display(),
        key.display(),
        dir.path().join("db.sqlite").display()
    )])
    .unwrap();
    let err = offboard::Application::build(settings)
        .await
        .err()
        .expect("the start fails")
        .to_string();
    assert!(err.contains("server.tls_key"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// A well-formed secret that is not the source's.
const WRONG_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCBhdCBhbGw=";

fn with_client(headers: &[(String, String)], client: &str) -> Vec<(String, String)> {
    let mut h = headers.to_vec();
    h.push(("x-forwarded-for".into(), format!("10.9.9.9, {client}")));
    h
}

#[tokio::test]
async fn an_address_that_keeps_failing_authentication_is_refused_and_others_are_not() {
    let app = spawn_app_with(options(
        "[server]\nauth_failures_per_minute = 3\nclient_ip_header = \"x-forwarded-for\"",
    ))
    .await;
    let body = termination(Some("E-1"), None);
    let wrong = signed_headers(WRONG_SECRET, "msg_x", app.clock.now().as_second(), &body);
    for _ in 0..3 {
        let a = app
            .post_raw(
                "hr",
                &with_client(&wrong, "203.0.113.9"),
                body.clone().into_bytes(),
            )
            .await;
        assert_error(&a, 401, "invalid_signature");
    }
    let refused = app
        .post_raw(
            "hr",
            &with_client(&wrong, "203.0.113.9"),
            body.clone().into_bytes(),
        )
        .await;
    assert_error(&refused, 429, "too_many_failures");
    // Refused before any check: even a good signature from that address waits.
    let good = signed_headers(SECRET, "msg_good", app.clock.now().as_second(), &body);
    let a = app
        .post_raw(
            "hr",
            &with_client(&good, "203.0.113.9"),
            body.clone().into_bytes(),
        )
        .await;
    assert_error(&a, 429, "too_many_failures");
    // Another sender is untouched.
    let a = app
        .post_raw(
            "hr",
            &with_client(&good, "198.51.100.2"),
            body.clone().into_bytes(),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    // Admin tokens count too, per address.
    for _ in 0..3 {
        let a = app
            .http
            .get(format!("{}/admin/v1/actions", app.base))
            .bearer_auth("guess")
            .header("x-forwarded-for", "192.0.2.50")
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 401);
    }
    let a = app
        .http
        .get(format!("{}/admin/v1/actions", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-forwarded-for", "192.0.2.50")
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 429);
    let wait: u64 = a.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "Retry-After {wait}");
    // Once a failure has refilled (60 s / 3), the address is served again.
    app.advance(Duration::from_secs(21));
    let again = signed_headers(SECRET, "msg_later", app.clock.now().as_second(), &body);
    let a = app
        .post_raw("hr", &with_client(&again, "203.0.113.9"), body.into_bytes())
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
}

#[tokio::test]
async fn without_client_ip_header_a_forged_forwarded_for_does_not_escape_the_limit() {
    let app = spawn_app_with(options("[server]\nauth_failures_per_minute = 2")).await;
    let body = termination(Some("E-1"), None);
    let wrong = signed_headers(WRONG_SECRET, "msg_x", app.clock.now().as_second(), &body);
    let mut statuses = Vec::new();
    for i in 0..4 {
        let a = app
            .post_raw(
                "hr",
                &with_client(&wrong, &format!("203.0.113.{i}")),
                body.clone().into_bytes(),
            )
            .await;
        statuses.push(a.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
}
