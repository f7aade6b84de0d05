//! `offboard actions …`: a thin client of the admin API for operators (and `offboard reconcile`,
//! [`reconcile`]).
//!
//! Reads `OFFBOARD_URL` (default `http://127.0.0.1:8080`) and `OFFBOARD_ADMIN_TOKEN`. Prints tables
//! for people, or the API's JSON with `--json`. Exit codes: 0 done, 1 the API refused (its error
//! code and message are printed), 2 usage (no token, service unreachable).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

pub mod reconcile;

#[derive(Subcommand, Debug)]
pub enum ActionsCommand {
    /// List actions, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        source: Option<String>,
        /// Employee id or email.
        #[arg(long)]
        employee: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this page (the `next` value printed by the previous page).
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one action with its events and audit trail.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a held action (with --user to resolve an ambiguous match).
    Approve {
        id: String,
        /// The Workfront user ID to act on.
        #[arg(long)]
        user: Option<String>,
        /// Allow a user that is not among the candidates.
        #[arg(long)]
        r#override: bool,
        #[command(flatten)]
        who: Who,
    },
    /// Retry a failed action with a fresh retry budget.
    Retry {
        id: String,
        #[command(flatten)]
        who: Who,
    },
    /// Cancel a scheduled, pending, held or failed action.
    Cancel {
        id: String,
        #[command(flatten)]
        who: Who,
    },
    /// Approve everything the mass-deactivation brake holds.
    ReleaseBrake {
        #[command(flatten)]
        who: Who,
    },
}

/// Who acts and why, for the audit trail.
#[derive(Args, Debug)]
pub struct Who {
    /// Your name, recorded in the audit trail (default: $USER).
    #[arg(long, env = "USER")]
    operator: Option<String>,
    #[arg(long)]
    note: Option<String>,
    #[arg(long)]
    json: bool,
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// From `OFFBOARD_URL` and `OFFBOARD_ADMIN_TOKEN`; `None` (after saying why) without a token.
    fn from_env() -> Option<Api> {
        let base = std::env::var("OFFBOARD_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
        let Ok(token) = std::env::var("OFFBOARD_ADMIN_TOKEN") else {
            eprintln!("offboard: set OFFBOARD_ADMIN_TOKEN to the service's admin.token");
            return None;
        };
        Some(Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        })
    }
}

pub async fn run(cmd: ActionsCommand) -> ExitCode {
    let Some(api) = Api::from_env() else {
        return ExitCode::from(2);
    };
    let (result, as_json, table) = match cmd {
        ActionsCommand::List {
            status,
            reason,
            source,
            employee,
            limit,
            cursor,
            json,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("status", status),
                ("reason", reason),
                ("source", source),
                ("employee", employee),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            (
                api.get("/admin/v1/actions", &query).await,
                json,
                Table::List,
            )
        }
        ActionsCommand::Show { id, json } => (
            api.get(&format!("/admin/v1/actions/{id}"), &[]).await,
            json,
            Table::One,
        ),
        ActionsCommand::Approve {
            id,
            user,
            r#override,
            who,
        } => {
            let body = json!({"workfront_user_id": user, "override": r#override, "operator": who.operator, "note": who.note});
            (
                api.post(&format!("/admin/v1/actions/{id}/approve"), body)
                    .await,
                who.json,
                Table::One,
            )
        }
        ActionsCommand::Retry { id, who } => {
            let body = json!({"operator": who.operator, "note": who.note});
            (
                api.post(&format!("/admin/v1/actions/{id}/retry"), body)
                    .await,
                who.json,
                Table::One,
            )
        }
        ActionsCommand::Cancel { id, who } => {
            let body = json!({"operator": who.operator, "note": who.note});
            (
                api.post(&format!("/admin/v1/actions/{id}/cancel"), body)
                    .await,
                who.json,
                Table::One,
            )
        }
        ActionsCommand::ReleaseBrake { who } => {
            let body = json!({"operator": who.operator, "note": who.note});
            (
                api.post("/admin/v1/brake/release", body).await,
                who.json,
                Table::Released,
            )
        }
    };
    match result {
        Err(e) => {
            eprintln!("offboard: {e}");
            ExitCode::from(2)
        }
        Ok((status, body)) if !status.is_success() => {
            let code = body["error"]["code"].as_str().unwrap_or("error");
            let message = body["error"]["message"].as_str().unwrap_or("");
            eprintln!("offboard: {status}: {code}: {message}");
            ExitCode::FAILURE
        }
        Ok((_, body)) => {
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&body).unwrap_or_default()
                );
            } else {
                print!("{}", table.render(&body));
            }
            ExitCode::SUCCESS
        }
    }
}

impl Api {
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(reqwest::StatusCode, Value), String> {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(&self.token);
        Self::send(req).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<(reqwest::StatusCode, Value), String> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .bearer_auth(&self.token);
        Self::send(req).await
    }

    async fn send(req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Value), String> {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the service: {e}"))?;
        let status = resp.status();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

enum Table {
    List,
    One,
    Released,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn employee(a: &Value) -> String {
    let e = &a["employee"];
    match (e["employee_id"].as_str(), e["email"].as_str()) {
        (Some(id), Some(mail)) => format!("{id} {mail}"),
        (Some(x), None) | (None, Some(x)) => x.to_string(),
        (None, None) => "-".into(),
    }
}

fn pad(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

impl Table {
    fn render(&self, body: &Value) -> String {
        match self {
            Table::List => {
                let mut rows = vec![[
                    "ID",
                    "KIND",
                    "STATUS",
                    "REASON",
                    "DUE",
                    "EMPLOYEE",
                    "WORKFRONT USER",
                ]
                .map(String::from)
                .to_vec()];
                for a in body["actions"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        text(&a["id"]),
                        text(&a["kind"]),
                        text(&a["status"]),
                        text(&a["reason"]),
                        text(&a["due_at"]),
                        employee(a),
                        text(&a["workfront_user"]["ID"]),
                    ]);
                }
                let mut out = pad(&rows);
                if let Some(next) = body["next_cursor"].as_str() {
                    out.push_str(&format!("next: --cursor {next}\n"));
                }
                out
            }
            Table::One => {
                let a = body;
                let mut out = format!(
                    "{}  {} {}/{}\n  employee:       {}\n  workfront user: {} {}\n  due:            {}\n  attempts:       {}\n",
                    text(&a["id"]),
                    text(&a["kind"]),
                    text(&a["status"]),
                    text(&a["reason"]),
                    employee(a),
                    text(&a["workfront_user"]["ID"]),
                    a["workfront_user"]["name"].as_str().unwrap_or(""),
                    text(&a["due_at"]),
                    text(&a["attempts"]),
                );
                for c in a["candidates"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "  candidate:      {} {} {}\n",
                        text(&c["ID"]),
                        text(&c["name"]),
                        text(&c["emailAddr"])
                    ));
                }
                if let Some(e) = a["last_error"].as_str() {
                    out.push_str(&format!("  last error:     {e}\n"));
                }
                out.push_str("  audit:\n");
                for e in a["audit"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "    {}  {:<18} {}\n",
                        text(&e["at"]),
                        text(&e["step"]),
                        e["detail"]
                    ));
                }
                out
            }
            Table::Released => format!(
                "released {} action(s) held by the brake\n",
                text(&body["released"])
            ),
        }
    }
}
