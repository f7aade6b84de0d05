//! Settings: defaults, layering, validation messages, secrets.

use super::*;

#[test]
fn defaults_are_valid_and_match_the_spec() {
    let s = Settings::from_toml("").unwrap();
    assert_eq!(s.server.bind.port(), 8080);
    assert_eq!(s.server.max_body_bytes, 262_144);
    assert_eq!(s.workfront.max_concurrency, 5);
    assert_eq!(s.retry.schedule().len(), 10);
    assert_eq!(s.retry.schedule()[3], Duration::from_secs(600));
    assert_eq!(
        s.matching.order,
        vec![Identifier::EmployeeId, Identifier::Email]
    );
    assert!(s.admin.token.is_none());
    assert!(s.sources.is_empty());
}

#[test]
fn durations_accept_friendly_units() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("-5s").is_err());
}

#[test]
fn a_bad_value_is_reported_with_its_key() {
    let err = Settings::from_toml("[retry]\nschedule = [\"10s\", \"often\"]").unwrap_err();
    assert!(err.0.contains("retry.schedule[1]"), "{err}");
    let err = Settings::from_toml("[lifecycle]\ntimezone = \"Mars/Olympus\"").unwrap_err();
    assert!(err.0.contains("lifecycle.timezone"), "{err}");
    let err = Settings::from_toml("[server]\nbind = \"nowhere\"").unwrap_err();
    assert!(err.0.contains("server.bind"), "{err}");
}

#[test]
fn log_level_takes_a_level_or_target_directives_and_refuses_anything_else() {
    for ok in [
        "info",
        "warn",
        "info,offboard=debug",
        "offboard::worker=trace,sqlx=off",
    ] {
        let s = Settings::from_toml(&format!("[log]\nlevel = \"{ok}\"")).unwrap();
        assert_eq!(s.log.level, ok);
    }
    for bad in ["inf", "loud", "info,offboard=shout", "", "info,"] {
        let err = Settings::from_toml(&format!("[log]\nlevel = \"{bad}\"")).unwrap_err();
        assert!(err.0.contains("log.level"), "{bad}: {err}");
    }
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let err = Settings::from_toml("[safety]\ndry_rnu = true").unwrap_err();
    assert!(err.0.contains("dry_rnu"), "{err}");
}

#[test]
fn source_secrets_must_be_whsec_base64_of_24_bytes() {
    let err =
        Settings::from_toml("[sources.a]\nkind=\"standard\"\nsecret=\"whsec_!!\"").unwrap_err();
    assert!(err.0.contains("sources.a.secret"), "{err}");
    let err =
        Settings::from_toml("[sources.a]\nkind=\"standard\"\nsecret=\"whsec_YWJj\"").unwrap_err();
    assert!(err.0.contains("24 bytes"), "{err}");
    let err = Settings::from_toml("[sources.a]\nkind=\"bamboo\"\nsecret=\"x\"").unwrap_err();
    assert!(err.0.contains("sources.a.kind"), "{err}");
    let ok = Settings::from_toml(
        "[sources.a]\nkind=\"standard\"\nsecrets=[\"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\", \"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
    )
    .unwrap();
    let shown = ok.sources["a"].describe();
    assert_eq!(
        shown["secrets"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );
}

#[test]
fn secrets_can_come_from_files_and_never_show_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "s3cr3t-api-key\n").unwrap();
    let s = Settings::from_toml(&format!(
        "[workfront]\napi_key_file = {:?}\n[admin]\ntoken = \"admintok\"\n[database]\nurl = \"postgres://u:dbpass@h/db\"",
        path.display().to_string()
    ))
    .unwrap();
    let http = reqwest::Client::new();
    let attach = block_on(s.workfront.auth.attach(&http)).unwrap();
    assert_eq!(
        attach.headers,
        vec![("apiKey", "s3cr3t-api-key".to_string())]
    );
    let debug = format!("{s:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(!debug.contains("admintok"), "{debug}");
    assert!(!debug.contains("dbpass"), "{debug}");
    assert!(debug.contains("postgres://***:***@h/db"), "{debug}");
}

#[test]
fn a_database_url_file_replaces_the_default_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, "postgres://u:pw@db/offboard\n").unwrap();
    let s = Settings::from_toml(&format!(
        "[database]\nurl_file = {:?}",
        path.display().to_string()
    ))
    .unwrap();
    assert_eq!(
        s.database.url.expose_secret(),
        "postgres://u:pw@db/offboard"
    );
}

#[test]
fn an_in_memory_sqlite_url_is_refused_naming_the_key() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://x.db?mode=memory",
    ] {
        let err = Settings::from_toml(&format!("[database]\nurl = {url:?}"))
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"))
            .to_string();
        assert!(
            err.contains("database.url") && err.contains("in-memory"),
            "{url}: {err}"
        );
    }
}

#[test]
fn a_secret_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "x").unwrap();
    let err = Settings::from_toml(&format!(
        "[admin]\ntoken = \"a\"\ntoken_file = {:?}",
        path.display().to_string()
    ))
    .unwrap_err();
    assert!(err.0.contains("admin.token"), "{err}");
}

/// Runs a future to completion on a small runtime (the attach of an API key does no I/O).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn each_workfront_auth_mode_names_what_it_lacks() {
    for (mode, missing) in [
        ("oauth_jwt", "workfront.private_key"),
        ("ims", "workfront.ims_token_url"),
    ] {
        let err = Settings::from_toml(&format!("[workfront]\nauth = \"{mode}\"")).unwrap_err();
        assert!(err.0.contains(missing), "{mode}: {err}");
    }
    let err = Settings::from_toml("[workfront]\nauth = \"oauth_jwt\"\nprivate_key = \"not a pem\"")
        .unwrap_err();
    assert!(
        err.0.contains("workfront.private_key") && !err.0.contains("not a pem"),
        "{err}"
    );
    let err = Settings::from_toml("[workfront]\nauth = \"password\"").unwrap_err();
    assert!(err.0.contains("oauth_jwt"), "{err}");
}

#[test]
fn the_notification_url_is_a_secret_read_from_a_file_and_never_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hook");
    std::fs::write(
        &path,
        "https://hooks.example.com/services/T0/B0/SLACKSECRET\n",
    )
    .unwrap();
    let s = Settings::from_toml(&format!(
        "[notify]\nwebhook_url_file = {:?}\n",
        path.display().to_string()
    ))
    .unwrap();
    assert_eq!(
        s.notify.webhook_url.as_ref().map(|u| u.path()),
        Some("/services/T0/B0/SLACKSECRET")
    );
    let debug = format!("{s:?}");
    assert!(!debug.contains("SLACKSECRET"), "{debug}");
    let e = Settings::from_toml("[notify]\nwebhook_url = \"ftp://x/SLACKSECRET\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("notify.webhook_url") && !e.contains("SLACKSECRET"),
        "{e}"
    );
}
