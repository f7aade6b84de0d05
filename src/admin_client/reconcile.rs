//! `offboard reconcile --leavers FILE [--apply] [--format table|json|csv]` (SPEC §2, §12).
//!
//! Sends the list (CSV, or JSON when the file is `.json` or starts with `{`), waits for the
//! report, prints it, and says in its exit code whether someone who left still has access, so it
//! can run from cron or CI: 0 no gap, 1 gaps, 2 usage (no token, unreadable file), 3 the check
//! did not happen (the API refused the list, or the service cannot be reached).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::{pad, text, Api};

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// The leavers: CSV with a header row (employee_id, email, terminated_on) or JSON.
    #[arg(long)]
    leavers: PathBuf,
    /// Create the missing deactivations (through the normal pipeline: brake, safety, dry run).
    #[arg(long)]
    apply: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

const EXIT_GAPS: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 3;

/// How often the report is read while it runs.
const POLL: Duration = Duration::from_millis(250);

pub async fn run(args: ReconcileArgs) -> ExitCode {
    let Some(api) = Api::from_env() else {
        return ExitCode::from(EXIT_USAGE);
    };
    let body = match std::fs::read(&args.leavers) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("offboard: cannot read {}: {e}", args.leavers.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let json = args
        .leavers
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let content_type = if json { "application/json" } else { "text/csv" };
    let mut req = api
        .http
        .post(format!("{}/admin/v1/reconciliations", api.base))
        .header("content-type", content_type)
        .bearer_auth(&api.token)
        .body(body);
    if args.apply {
        req = req.query(&[("apply", "true")]);
    }
    let id = match Api::send(req).await {
        Err(e) => return refused(&e),
        Ok((status, body)) if !status.is_success() => return refused(&api_error(status, &body)),
        Ok((_, body)) => match body["id"].as_str() {
            Some(id) => id.to_string(),
            None => return refused("the service answered without a report id"),
        },
    };
    eprintln!("offboard: reconciliation {id} is running");
    let path = format!("/admin/v1/reconciliations/{id}");
    let report = loop {
        match api.get(&path, &[]).await {
            Err(e) => return refused(&e),
            Ok((status, body)) if !status.is_success() => {
                return refused(&api_error(status, &body))
            }
            Ok((_, body)) if body["status"] == "done" => break body,
            Ok(_) => tokio::time::sleep(POLL).await,
        }
    };
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Format::Table => print!("{}", table(&report)),
        Format::Csv => {
            let req = api
                .http
                .get(format!("{}{path}", api.base))
                .header("accept", "text/csv")
                .bearer_auth(&api.token);
            match req.send().await.and_then(|r| r.error_for_status()) {
                Ok(resp) => match resp.text().await {
                    Ok(t) => print!("{t}"),
                    Err(e) => return refused(&format!("cannot read the CSV report: {e}")),
                },
                Err(e) => return refused(&format!("cannot fetch the CSV report: {e}")),
            }
        }
    }
    let gaps = report["counts"]["active"].as_i64().unwrap_or(0);
    if gaps > 0 {
        eprintln!("offboard: {gaps} leaver(s) still active in Workfront");
        ExitCode::from(EXIT_GAPS)
    } else {
        ExitCode::SUCCESS
    }
}

fn refused(why: &str) -> ExitCode {
    eprintln!("offboard: {why}");
    ExitCode::from(EXIT_REFUSED)
}

fn api_error(status: reqwest::StatusCode, body: &Value) -> String {
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"].as_str().unwrap_or("");
    format!("{status}: {code}: {message}")
}

fn table(report: &Value) -> String {
    let mut rows = vec![[
        "ROW",
        "EMPLOYEE_ID",
        "EMAIL",
        "OUTCOME",
        "WORKFRONT USER",
        "ACTION",
        "DETAIL",
    ]
    .map(String::from)
    .to_vec()];
    for r in report["rows"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&r["row"]),
            text(&r["employee_id"]),
            text(&r["email"]),
            text(&r["outcome"]),
            text(&r["workfront_user"]["ID"]),
            text(&r["action_id"]),
            text(&r["detail"]),
        ]);
    }
    let mut out = pad(&rows);
    let c = &report["counts"];
    out.push_str(&format!(
        "\n{}: {} leavers, {} inactive, {} active (gaps), {} not found, {} ambiguous, {} pending, {} invalid{}\n",
        text(&report["id"]),
        text(&report["total"]),
        text(&c["inactive"]),
        text(&c["active"]),
        text(&c["not_found"]),
        text(&c["ambiguous"]),
        text(&c["pending"]),
        text(&c["invalid"]),
        if report["apply"] == true { "; applied" } else { "" },
    ));
    out
}
