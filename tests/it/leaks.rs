//! The leak test (issue 13): a real `offboard serve` process per Workfront auth mode, configured
//! with a known value for every secret there is, is driven through the scenarios (a signed and a
//! wrongly signed delivery for every source kind, thin deliveries whose HR API is down, Workfront
//! failures, admin calls with the right and a wrong token, a held admin and its notification,
//! `check-config` with and without `--connect`), and everything it shows anyone is gathered: its
//! log (at debug level), every answer body and header, `/metrics`, the notifications and every
//! action's audit trail. None may hold any secret, nor its base64, hex or URL-encoded form.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use offboard::sim::{RunningSim, Sim, SimConfig, SimIms, SimOAuth};
use serde_json::{json, Value};

use crate::harness::{database_url, fresh_postgres_database, Receiver};
use crate::processes::Replica;
use crate::wait;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

// Every secret, long and distinct so that no innocent text holds one by chance.
const ADMIN: &str = "lk-admin-Q7v2Rm9xTzKp4WbN";
const WF_API_KEY: &str = "lkwfapikey8Hs3Jd0Lq5Zc7Vn1";
const WF_CLIENT_SECRET: &str = "lk-wf-client-secret-Yt6Gm2Pw";
const IMS_SECRET: &str = "lk-ims-client-secret-Ue4Kx8Ra";
const DB_PASSWORD: &str = "lkDbPw5Nf9Hc2Qm";
const NOTIFY_KEY: &str = "lkNotifyHook3Tz8Wq";
const STANDARD: &str = "whsec_bGstc3RhbmRhcmQtc2VjcmV0LTlGaDJLcTdS";
const BEARER: &str = "lk-bearer-token-Jm5Rt1Xv";
const BASIC_PW: &str = "lk-basic-pw-Ab3Cd7Ef";
const BAMBOO: &str = "lk-bamboo-private-key-Nz4Pq8";
const HIBOB: &str = "lk-hibob-secret-Wd2Lk6Mh";
const GUSTO: &str = "lk-gusto-verification-Gx9Sb3";
const PERSONIO: &str = "lk-personio-token-Rc5Yf1Tn";
const DEEL: &str = "lk-deel-signing-Kv7Hu2Jp";
const RIPPLING: &str = "lk-rippling-token-Ep8Mw4Qz";
const FACTORIAL: &str = "lk-factorial-challenge-Ls6Dn0";
const CLOUDEVENTS: &str = "lk-cloudevents-token-Bh3Xr9Vc";
const BAMBOO_API: &str = "lk-bamboo-api-key-Fy7Tq2Wk";
const PERSONIO_API: &str = "lk-personio-api-secret-Oq4Zs8";

fn sources() -> Vec<(&'static str, Value)> {
    vec![
        ("std", json!({"kind": "standard", "secrets": [STANDARD]})),
        (
            "bear",
            json!({"kind": "standard", "auth": "bearer", "token": BEARER}),
        ),
        (
            "basic",
            json!({"kind": "standard", "auth": "basic", "username": "workday", "password": BASIC_PW}),
        ),
        (
            "bamboo",
            json!({"kind": "bamboohr", "secret": BAMBOO,
            "api": {"base_url": "http://127.0.0.1:9/api/gateway.php/acme", "api_key": BAMBOO_API, "timeout": "1s"}}),
        ),
        ("bob", json!({"kind": "hibob", "secret": HIBOB})),
        ("gusto", json!({"kind": "gusto", "secret": GUSTO})),
        (
            "personio",
            json!({"kind": "personio", "token": PERSONIO,
            "api": {"base_url": "http://127.0.0.1:9", "client_id": "lk-personio-id", "client_secret": PERSONIO_API, "timeout": "1s"}}),
        ),
        ("deel", json!({"kind": "deel", "secret": DEEL})),
        ("rippling", json!({"kind": "rippling", "token": RIPPLING})),
        (
            "factorial",
            json!({"kind": "factorial", "token": FACTORIAL, "event": "employee_terminated"}),
        ),
        ("ce", json!({"kind": "cloudevents", "token": CLOUDEVENTS})),
    ]
}

/// Every secret, and the forms in which a careless program would show it.
fn forbidden(private_key_pem: &str) -> Vec<(String, String)> {
    let mut secrets: Vec<(String, Vec<u8>)> = [
        ADMIN,
        WF_API_KEY,
        WF_CLIENT_SECRET,
        IMS_SECRET,
        DB_PASSWORD,
        NOTIFY_KEY,
        STANDARD,
        BEARER,
        BASIC_PW,
        BAMBOO,
        HIBOB,
        GUSTO,
        PERSONIO,
        DEEL,
        RIPPLING,
        FACTORIAL,
        CLOUDEVENTS,
        BAMBOO_API,
        PERSONIO_API,
    ]
    .iter()
    .map(|s| (s.to_string(), s.as_bytes().to_vec()))
    .collect();
    // The Standard Webhooks key bytes, and the basic credentials as the header carries them.
    let key = base64::engine::general_purpose::STANDARD
        .decode(STANDARD.trim_start_matches("whsec_"))
        .unwrap();
    secrets.push(("the standard key bytes".into(), key));
    secrets.push((
        "workday:BASIC_PW".into(),
        format!("workday:{BASIC_PW}").into_bytes(),
    ));
    let mut forms = Vec::new();
    for (name, bytes) in secrets {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        let text = String::from_utf8_lossy(&bytes).to_string();
        let pct: String = url::form_urlencoded::byte_serialize(&bytes).collect();
        let pct_all = percent_encoding::percent_encode(&bytes, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        for (form, v) in [
            ("as is", text),
            ("base64", b64.trim_end_matches('=').to_string()),
            ("base64url", b64url),
            ("hex", hex::encode(&bytes)),
            ("HEX", hex::encode_upper(&bytes)),
            ("form-encoded", pct),
            ("percent-encoded", pct_all),
        ] {
            if v.len() >= 8 {
                forms.push((format!("{name} ({form})"), v));
            }
        }
    }
    // The private key: any line of its PEM body.
    for line in private_key_pem.lines().filter(|l| !l.starts_with("-----")) {
        if line.len() >= 40 {
            forms.push(("a line of the private key".into(), line.to_string()));
        }
    }
    forms
}

enum Mode {
    ApiKeyHeader,
    ApiKeyQuery,
    OAuthJwt,
    Ims,
}

async fn sim_for(mode: &Mode) -> RunningSim {
    let mut cfg = SimConfig {
        fail_rate: 0.1,
        api_key: Some(WF_API_KEY.into()),
        ..SimConfig::default()
    };
    match mode {
        Mode::ApiKeyHeader | Mode::ApiKeyQuery => {}
        Mode::OAuthJwt => {
            cfg.api_key = None;
            cfg.oauth = Some(SimOAuth {
                client_id: "lk-client".into(),
                client_secret: WF_CLIENT_SECRET.into(),
                customer_id: "cust-1".into(),
                user_id: "user-1".into(),
                public_key_pem: std::fs::read_to_string(format!(
                    "{FIXTURES}/oauth-test-public.pem"
                ))
                .unwrap(),
            });
        }
        Mode::Ims => {
            cfg.api_key = None;
            cfg.ims = Some(SimIms {
                client_id: "lk-ims-client".into(),
                client_secret: IMS_SECRET.into(),
            });
        }
    }
    Sim::new(cfg)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

fn workfront_table(mode: &Mode, sim: &RunningSim) -> String {
    let base = sim.base_url();
    match mode {
        Mode::ApiKeyHeader => format!("base_url = \"{base}\"\napi_key = \"{WF_API_KEY}\"\n"),
        Mode::ApiKeyQuery => {
            format!("base_url = \"{base}\"\napi_key = \"{WF_API_KEY}\"\napi_key_in = \"query\"\n")
        }
        Mode::OAuthJwt => format!(
            "base_url = \"{base}\"\nauth = \"oauth_jwt\"\nclient_id = \"lk-client\"\nclient_secret = \"{WF_CLIENT_SECRET}\"\n\
             customer_id = \"cust-1\"\nuser_id = \"user-1\"\nprivate_key_file = \"{FIXTURES}/oauth-test-private.pem\"\n"
        ),
        Mode::Ims => format!(
            "base_url = \"{base}\"\nauth = \"ims\"\nims_token_url = \"{base}/ims/token/v3\"\nclient_id = \"lk-ims-client\"\n\
             client_secret = \"{IMS_SECRET}\"\nscopes = [\"openid\"]\nims_org_id = \"ORG@AdobeOrg\"\n"
        ),
    }
}

async fn database(dir: &Path) -> String {
    match std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    {
        // Trust authentication accepts any password, so the URL can carry a known one.
        Some(pg) => fresh_postgres_database(&pg).await.replacen(
            "postgres://postgres@",
            &format!("postgres://postgres:{DB_PASSWORD}@"),
            1,
        ),
        None => database_url(dir).await,
    }
}

fn toml_table(name: &str, table: &Value) -> String {
    let mut out = format!("[sources.{name}]\n");
    let mut sub = String::new();
    for (k, v) in table.as_object().unwrap() {
        if k == "api" {
            sub.push_str(&format!("[sources.{name}.api]\n"));
            for (ak, av) in v.as_object().unwrap() {
                sub.push_str(&format!("{ak} = {av}\n"));
            }
        } else {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out + &sub
}

/// A body of `kind` that names employee `id` as terminated.
fn body_for(kind: &str, name: &str) -> Vec<u8> {
    let seed = match kind {
        "standard" => "standard/termination.json",
        "bamboohr" => "bamboohr/event-based.json",
        "hibob" => "hibob/left.json",
        "gusto" => "gusto/effective.json",
        "personio" => "personio/terminated.json",
        "deel" => "deel/terminated.json",
        "rippling" => "rippling/form.txt",
        "factorial" => "factorial/employee.json",
        "cloudevents" => "cloudevents/structured.json",
        other => panic!("{other}"),
    };
    let text = std::fs::read_to_string(format!("{}/fuzz/seeds/{seed}", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    // A different person per source, so that each makes its own action.
    text.replace(
        "jane.doe@example.com",
        &format!("{name}.leaver@example.com"),
    )
    .into_bytes()
}

struct Seen {
    texts: Vec<(String, String)>,
}

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.texts.push((what.into(), text.into()));
    }

    async fn answer(&mut self, what: &str, resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        let headers = format!("{:?}", resp.headers());
        let body = resp.text().await.unwrap_or_default();
        self.add(format!("{what}: headers"), headers);
        self.add(format!("{what}: body"), body.clone());
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

async fn run_mode(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim_for(&mode).await;
    let receiver = Receiver::start().await;
    let notify_url = receiver
        .url
        .replace("/hook", &format!("/hook?key={NOTIFY_KEY}"));
    let db = database(dir.path()).await;
    let mut config = format!(
        "[database]\nurl = \"{db}\"\n[workfront]\n{}max_concurrency = 4\n\
         [retry]\nschedule = [\"20ms\", \"40ms\", \"60ms\", \"80ms\"]\njitter = 0.0\n[admin]\ntoken = \"{ADMIN}\"\n\
         [notify]\nwebhook_url = \"{notify_url}\"\n[safety]\nbrake_max = 3\nbrake_window = \"1h\"\n\
         [worker]\npoll_interval = \"50ms\"\nauth_probe_interval = \"200ms\"\n\
         [log]\nlevel = \"debug\"\nformat = \"json\"\n",
        workfront_table(&mode, &sim)
    );
    for (name, table) in sources() {
        config.push_str(&toml_table(name, &table));
    }
    let path = dir.path().join("leaks.toml");
    std::fs::write(&path, &config).unwrap();
    let log = dir.path().join("service.log");
    let mut replica = Replica::start_with(&path, &[], Some(&log)).await;
    let http = reqwest::Client::new();
    let base = replica.base.clone();
    let mut seen = Seen { texts: Vec::new() };
    let now = jiff::Timestamp::now();

    for (name, table) in sources() {
        let kind = table["kind"].as_str().unwrap().to_string();
        let body = body_for(&kind, name);
        let mut t = table.clone();
        t.as_object_mut().unwrap().remove("api");
        let source = offboard::sources::registry::build(name, t.clone()).unwrap();
        // Signed right.
        let query = if kind == "factorial" {
            "?event=employee_terminated"
        } else {
            ""
        };
        let mut req = http
            .post(format!("{base}/webhooks/{name}{query}"))
            .body(body.clone());
        for (k, v) in source.sign(&body, now) {
            req = req.header(k, v);
        }
        let (status, _) = seen
            .answer(&format!("{name} signed"), req.send().await.unwrap())
            .await;
        assert!(
            status < 300,
            "{name}: a correctly signed delivery answered {status}"
        );
        // Signed with another secret of the same shape.
        let mut wrong = t.clone();
        for k in ["secret", "token", "password"] {
            if wrong.get(k).is_some() {
                wrong[k] = json!("lk-wrong-credential-000000");
            }
        }
        if wrong.get("secrets").is_some() {
            wrong["secrets"] = json!(["whsec_d3JvbmctY3JlZGVudGlhbC0wMDAwMDAwMDAw"]);
        }
        let impostor = offboard::sources::registry::build(name, wrong).unwrap();
        let mut req = http
            .post(format!("{base}/webhooks/{name}{query}"))
            .body(body.clone());
        for (k, v) in impostor.sign(&body, now) {
            req = req.header(k, v);
        }
        let (status, _) = seen
            .answer(&format!("{name} wrongly signed"), req.send().await.unwrap())
            .await;
        assert!(
            status == 401 || status == 200,
            "{name}: a wrongly signed delivery answered {status}"
        );
    }
    // The admin API, right and wrong.
    let (status, _) = seen
        .answer(
            "admin wrong token",
            http.get(format!("{base}/admin/v1/actions"))
                .bearer_auth("lk-guess")
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(status, 401);
    let (_, created) = seen
        .answer(
            "manual action",
            http.post(format!("{base}/admin/v1/actions"))
                .bearer_auth(ADMIN)
                .json(&json!({"employee_id": "E-1001", "name": "Ada Admin"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert!(
        created["id"].is_string(),
        "the manual action was refused: {created}"
    );
    // Wait until nothing is left in flight: every action ends, is held by the brake, or waits
    // for the HR API that is down.
    let settled = {
        let (http, base) = (&http, &base);
        wait::until(
            "every action to settle",
            Duration::from_secs(60),
            || async move {
                let list: Value = http
                    .get(format!("{base}/admin/v1/actions?limit=500"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let actions = list["actions"].as_array().cloned().unwrap_or_default();
                let busy: Vec<_> = actions
                    .iter()
                    .filter(|a| {
                        matches!(a["status"].as_str(), Some("in_progress" | "scheduled"))
                            || (a["status"] == "pending" && a["reason"] != "hr_api")
                    })
                    .map(|a| format!("{}/{}", a["status"], a["reason"]))
                    .collect();
                if actions.len() >= 8 && busy.is_empty() {
                    Ok(actions)
                } else {
                    Err(format!("{} actions, busy {busy:?}", actions.len()))
                }
            },
        )
        .await
    };
    for a in &settled {
        let id = a["id"].as_str().unwrap();
        seen.answer(
            &format!("action {id}"),
            http.get(format!("{base}/admin/v1/actions/{id}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    let (status, _) = seen
        .answer(
            "metrics",
            http.get(format!("{base}/metrics"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    seen.answer(
        "openapi",
        http.get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    seen.answer(
        "readyz",
        http.get(format!("{base}/readyz")).send().await.unwrap(),
    )
    .await;
    receiver
        .wait_for("the notification that an admin is held", |v| {
            v.to_string().contains("admin_user")
        })
        .await;
    for args in [vec!["check-config"], vec!["check-config", "--connect"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_offboard"))
            .args(&args)
            .arg("--config")
            .arg(&path)
            .env_remove("OFFBOARD_CONFIG")
            .output()
            .unwrap();
        seen.add(
            format!("{args:?} stdout"),
            String::from_utf8_lossy(&out.stdout),
        );
        seen.add(
            format!("{args:?} stderr"),
            String::from_utf8_lossy(&out.stderr),
        );
    }
    for n in receiver.received() {
        seen.add("a notification", n.to_string());
    }
    assert_eq!(replica.terminate().await, Some(0));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().count() > 50,
        "the debug log is too short to prove anything"
    );
    seen.add("the service log", logged);

    // Controls for the search below: what each place shows that is not secret, found by the same
    // search, so a place that was not gathered (or a search that finds nothing) fails here.
    for (place, shown) in [
        ("check-config", "employee_terminated"),
        ("the service log", "delivery refused"),
        ("action act_", "user/search"),
        ("a notification", "admin_user"),
        ("metrics", "offboard_deliveries_total"),
        ("wrongly signed: body", "request_id"),
    ] {
        assert!(
            seen.texts
                .iter()
                .any(|(what, t)| what.contains(place) && t.contains(shown)),
            "{place} was not gathered: no {shown:?} in it"
        );
    }
    let pem = std::fs::read_to_string(format!("{FIXTURES}/oauth-test-private.pem")).unwrap();
    let mut leaks = Vec::new();
    for (secret, form) in forbidden(&pem) {
        for (what, text) in &seen.texts {
            if let Some(at) = text.find(form.as_str()) {
                let from = text[..at]
                    .char_indices()
                    .rev()
                    .nth(80)
                    .map_or(0, |(i, _)| i);
                leaks.push(format!("{secret} in {what}: …{}…", &text[from..at]));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn no_secret_leaks_with_an_api_key_in_the_header() {
    run_mode(Mode::ApiKeyHeader).await;
}

#[tokio::test]
async fn no_secret_leaks_with_an_api_key_in_the_query() {
    run_mode(Mode::ApiKeyQuery).await;
}

#[tokio::test]
async fn no_secret_leaks_with_the_oauth_jwt_exchange() {
    run_mode(Mode::OAuthJwt).await;
}

#[tokio::test]
async fn no_secret_leaks_with_an_ims_token() {
    run_mode(Mode::Ims).await;
}
