//! The console's pages, as maud templates compiled into the binary (every value is escaped).
//! Views only: the handlers in [`super`] gather the data and decide what may be done.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

use crate::domain::{Reason, Status};
use crate::store::{ActionDetail, ActionRecord, LeaverRecord, ReconciliationRecord};

/// The page the navigation marks as current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Queue,
    Actions,
    Brake,
    Reconciliations,
    None,
}

/// What every page of a signed-in operator shows around its content.
pub struct Frame<'a> {
    pub title: &'a str,
    pub nav: Nav,
    /// (operator, CSRF token); `None` on the sign-in and error pages of a visitor.
    pub session: Option<(&'a str, &'a str)>,
    /// Reload every this many seconds (a reconciliation that is still running).
    pub refresh: Option<u32>,
}

/// A choice of an ambiguous match, as shown side by side.
pub struct Candidate {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    pub ext_ref_id: Option<String>,
    pub active: Option<bool>,
    pub admin: Option<bool>,
}

pub fn layout(f: &Frame, content: Markup) -> Markup {
    let current = |n: Nav| (f.nav == n).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = f.refresh { meta http-equiv="refresh" content=(s); }
                title { (f.title) " · offboard" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                @if let Some((operator, csrf)) = f.session {
                    header {
                        a.brand href="/console" { "offboard" }
                        nav aria-label="Console" .row {
                            a href="/console" aria-current=[current(Nav::Queue)] { "Review queue" }
                            a href="/console/actions" aria-current=[current(Nav::Actions)] { "Actions" }
                            a href="/console/brake" aria-current=[current(Nav::Brake)] { "Brake" }
                            a href="/console/reconciliations" aria-current=[current(Nav::Reconciliations)] { "Reconciliations" }
                        }
                        div.who {
                            span { "Signed in as " strong { (operator) } }
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (content) }
                script src="/console/assets/console.js" defer {}
            }
        }
    }
}

pub fn time(ms: i64) -> String {
    let t = crate::store::from_ms(ms);
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn badge(text: &str) -> Markup {
    html! { span class=(format!("badge {text}")) { (text) } }
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("–")
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "–",
    }
}

fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

pub fn flash(message: Option<&str>) -> Markup {
    html! { @if let Some(m) = message { div.card.flash role="status" { (m) } } }
}

fn employee(a: &ActionRecord) -> Markup {
    html! {
        (opt(&a.employee_id)) " · " (opt(&a.email))
        @if let Some(n) = &a.employee_name { " · " (n) }
    }
}

fn workfront_user(a: &ActionRecord) -> Markup {
    html! {
        @match &a.user {
            Some(u) => { (opt(&u.name)) " · " (opt(&u.email)) " · " code { (u.id) } },
            None => span.muted { "not matched yet" },
        }
    }
}

/// Approve (choosing among the candidates of an ambiguous match) and cancel, for a held action.
pub fn held_forms(a: &ActionRecord, candidates: &[Candidate], csrf: &str) -> Markup {
    let approve = format!("/console/actions/{}/approve", a.id);
    let cancel = format!("/console/actions/{}/cancel", a.id);
    html! {
        form method="post" action=(approve) {
            (csrf_field(csrf))
            @if a.reason == Some(Reason::AmbiguousMatch) {
                fieldset {
                    legend { "Several Workfront users match. Choose the one to deactivate:" }
                    div.scroll { table.stack {
                        thead { tr { th { span.muted { "choose" } } th { "Name" } th { "Email" } th { "Username" } th { "extRefID" } th { "Active" } th { "Admin" } th { "ID" } } }
                        tbody {
                            @for c in candidates {
                                @let input_id = format!("pick-{}-{}", a.id, c.id);
                                tr {
                                    td { input type="radio" name="workfront_user_id" value=(c.id) id=(input_id) required; }
                                    td data-label="Name" { label for=(input_id) { (opt(&c.name)) } }
                                    td data-label="Email" { (opt(&c.email)) }
                                    td data-label="Username" { (opt(&c.username)) }
                                    td data-label="extRefID" { (opt(&c.ext_ref_id)) }
                                    td data-label="Active" { (yes_no(c.active)) }
                                    td data-label="Admin" { (yes_no(c.admin)) }
                                    td data-label="ID" { code { (c.id) } }
                                }
                            }
                        }
                    } }
                }
            }
            div.actions {
                div {
                    label for=(format!("note-approve-{}", a.id)) { "Note for the audit (optional)" }
                    input type="text" name="note" id=(format!("note-approve-{}", a.id)) maxlength="500";
                }
                button type="submit" { "Approve" }
            }
        }
        form method="post" action=(cancel) {
            (csrf_field(csrf))
            div.actions {
                div {
                    label for=(format!("note-cancel-{}", a.id)) { "Note for the audit (optional)" }
                    input type="text" name="note" id=(format!("note-cancel-{}", a.id)) maxlength="500";
                }
                button.secondary type="submit" { "Cancel this action" }
            }
        }
    }
}

pub fn queue(
    held: &[(ActionRecord, Vec<Candidate>)],
    total: i64,
    next: Option<&str>,
    csrf: &str,
) -> Markup {
    html! {
        h1 { "Review queue" }
        p.muted { (total) " held " (if total == 1 { "action waits" } else { "actions wait" }) " for an operator, oldest first." }
        @if held.is_empty() { div.card { "Nothing is held. offboard needs no decision from you right now." } }
        @for (a, candidates) in held {
            section.card aria-labelledby=(format!("h-{}", a.id)) {
                div.row {
                    h2.flush id=(format!("h-{}", a.id)) { a href=(format!("/console/actions/{}", a.id)) { code { (a.id) } } }
                    (badge(a.reason.map_or("held", |r| r.as_str())))
                    span.muted { (a.kind.as_str()) " · from " (a.source) " · held since " (time(a.updated_at)) }
                }
                div.row {
                    div { strong { "Employee" } br; (employee(a)) }
                    div { strong { "Workfront user" } br; (workfront_user(a)) }
                }
                (held_forms(a, candidates, csrf))
            }
        }
        @if let Some(cursor) = next { p { a href=(format!("/console?after={cursor}")) { "Older held actions →" } } }
    }
}

/// One audit step in words: what was sent and answered, how long it took, the retry.
fn audit_line(step: &str, d: &Value) -> Markup {
    let s = |k: &str| {
        d.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    html! {
        @if step == "workfront_call" {
            (s("op").unwrap_or_default()) ": sent " code { (s("request").unwrap_or_default()) }
            " → "
            @match d.get("status").and_then(Value::as_u64) { Some(st) => { "answered " strong { (st) } }, None => { strong { "no answer" } } }
            " in " (s("millis").unwrap_or_default()) " ms"
            @if let Some(n) = d.get("slowed_down").and_then(Value::as_u64) { " (after " (n) " × 429)" }
        } @else {
            @for key in ["status", "reason", "error", "attempt", "next_attempt_at", "operator", "note", "workfront_user_id", "found", "released"] {
                @if let Some(v) = s(key).filter(|v| v != "null") { span { (key) ": " (v) } " " }
            }
        }
    }
}

pub fn action(d: &ActionDetail, candidates: &[Candidate], raw: &str, csrf: &str) -> Markup {
    let a = &d.action;
    let can_cancel = matches!(
        a.status,
        Status::Scheduled | Status::Pending | Status::Held | Status::Failed
    );
    html! {
        h1 { "Action " code { (a.id) } }
        div.row { (badge(a.status.as_str())) @if let Some(r) = a.reason { (badge(r.as_str())) } span.muted { (a.kind.as_str()) " · from " (a.source) } }
        div.card { div.scroll { table {
            tbody {
                tr { th { "Employee" } td { (employee(a)) } }
                tr { th { "Workfront user" } td { (workfront_user(a)) } }
                tr { th { "Due" } td { (time(a.due_at)) } }
                tr { th { "Created / updated" } td { (time(a.created_at)) " / " (time(a.updated_at)) } }
                tr { th { "Attempts" } td { (a.attempts) } }
                @if let Some(e) = &a.last_error { tr { th { "Last error" } td { (e) } } }
            }
        } } }
        @if a.status == Status::Held {
            section.card { h2 { "Decide" } (held_forms(a, candidates, csrf)) }
        } @else if can_cancel || a.status == Status::Failed {
            section.card {
                h2 { "Operate" }
                div.actions {
                    @if a.status == Status::Failed {
                        form method="post" action=(format!("/console/actions/{}/retry", a.id)) {
                            (csrf_field(csrf))
                            label for="note-retry" { "Note for the audit (optional)" }
                            input type="text" name="note" id="note-retry" maxlength="500";
                            button type="submit" { "Retry" }
                        }
                    }
                    @if can_cancel {
                        form method="post" action=(format!("/console/actions/{}/cancel", a.id)) {
                            (csrf_field(csrf))
                            label for="note-cancel" { "Note for the audit (optional)" }
                            input type="text" name="note" id="note-cancel" maxlength="500";
                            button.secondary type="submit" { "Cancel this action" }
                        }
                    }
                }
            }
        }
        h2 { "What caused it" }
        div.card.scroll { table.stack {
            thead { tr { th { "Event" } th { "Employee" } th { "Effective" } th { "HR time" } th { "Received" } th { "Delivery" } } }
            tbody { @for e in &d.events { tr {
                td data-label="Event" { (e.kind) }
                td data-label="Employee" { (opt(&e.employee_id)) " · " (opt(&e.email)) }
                td data-label="Effective" { (opt(&e.effective_at)) }
                td data-label="HR time" { (time(e.occurred_at)) }
                td data-label="Received" { (time(e.received_at)) }
                td data-label="Delivery" { code { (e.delivery_id) } }
            } } }
        } }
        h2 { "Audit trail" }
        div.card {
            ol.timeline {
                @for e in &d.audit {
                    @let class = if e.step == "workfront_call" { "call" } else if matches!(e.step.as_str(), "rejected" | "retries_exhausted" | "retry_scheduled" | "workfront_auth") { "bad" } else { "" };
                    li class=(class) {
                        div { strong { (e.step) } " " span.muted { (time(e.at)) } }
                        div { (audit_line(&e.step, &e.detail)) }
                        details { summary { "JSON" } pre { (serde_json::to_string_pretty(&e.detail).unwrap_or_default()) } }
                    }
                }
            }
        }
        details.card { summary { "Raw JSON of this action (as the admin API shows it)" } pre { (raw) } }
    }
}

pub struct ListQuery<'a> {
    pub status: &'a str,
    pub reason: &'a str,
    pub source: &'a str,
    pub employee: &'a str,
}

pub fn actions(
    rows: &[ActionRecord],
    counts: &[(Status, i64)],
    q: &ListQuery,
    next: Option<&str>,
) -> Markup {
    let select = |name: &str, current: &str, values: &[&str]| {
        html! {
            select name=(name) id=(format!("f-{name}")) {
                option value="" { "any" }
                @for v in values { option value=(v) selected[*v == current] { (v) } }
            }
        }
    };
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let query = |cursor: &str| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("status", q.status)
            .append_pair("reason", q.reason)
            .append_pair("source", q.source)
            .append_pair("employee", q.employee)
            .append_pair("cursor", cursor);
        s.finish()
    };
    html! {
        h1 { "Actions" }
        p.counts {
            @for (s, n) in counts { a href=(format!("/console/actions?status={}", s.as_str())) { (badge(s.as_str())) " " (n) } }
        }
        form.card.filters method="get" action="/console/actions" {
            div { label for="f-status" { "Status" } (select("status", q.status, &statuses)) }
            div { label for="f-reason" { "Reason" } (select("reason", q.reason, &reasons)) }
            div { label for="f-source" { "Source" } input type="text" name="source" id="f-source" value=(q.source); }
            div { label for="f-employee" { "Employee id or email" } input type="text" name="employee" id="f-employee" value=(q.employee); }
            div { button type="submit" { "Filter" } }
        }
        div.card.scroll { table.stack {
            thead { tr { th { "Action" } th { "Kind" } th { "Status" } th { "Employee" } th { "Source" } th { "Updated" } } }
            tbody {
                @if rows.is_empty() { tr { td colspan="6" { "No action matches." } } }
                @for a in rows { tr {
                    td data-label="Action" { a href=(format!("/console/actions/{}", a.id)) { code { (a.id) } } }
                    td data-label="Kind" { (a.kind.as_str()) }
                    td data-label="Status" { (badge(a.status.as_str())) @if let Some(r) = a.reason { " " (badge(r.as_str())) } }
                    td data-label="Employee" { (employee(a)) }
                    td data-label="Source" { (a.source) }
                    td data-label="Updated" { (time(a.updated_at)) }
                } }
            }
        } }
        @if let Some(c) = next { p { a href=(format!("/console/actions?{}", query(c))) { "Older actions →" } } }
    }
}

pub fn brake(engaged: bool, held: &[ActionRecord], csrf: &str) -> Markup {
    html! {
        h1 { "Brake" }
        div.card class=(if engaged { "error" } else { "flash" }) {
            @if engaged { strong { "The brake is engaged." } " More deactivations than safety.brake_max came within safety.brake_window; the excess waits here." }
            @else { "The brake is not engaged." }
        }
        h2 { (held.len()) " held by the brake" }
        @if !held.is_empty() {
            div.card.scroll { table.stack {
                thead { tr { th { "Action" } th { "Kind" } th { "Employee" } th { "Workfront user" } th { "Held since" } } }
                tbody { @for a in held { tr {
                    td data-label="Action" { a href=(format!("/console/actions/{}", a.id)) { code { (a.id) } } }
                    td data-label="Kind" { (a.kind.as_str()) }
                    td data-label="Employee" { (employee(a)) }
                    td data-label="Workfront user" { (workfront_user(a)) }
                    td data-label="Held since" { (time(a.updated_at)) }
                } } }
            } }
            form.card method="post" action="/console/brake/release" {
                (csrf_field(csrf))
                label.check {
                    input type="checkbox" name="confirm" value="yes" required;
                    "I have checked these " (held.len()) " actions: each of these people left, and their Workfront users may be changed now."
                }
                label for="note-release" { "Note for the audit (optional)" }
                input type="text" name="note" id="note-release" maxlength="500";
                div.actions { button.danger type="submit" { "Release the brake" } }
            }
        }
    }
}

pub fn reconciliations(list: &[ReconciliationRecord], csrf: &str) -> Markup {
    html! {
        h1 { "Reconciliations" }
        form.card method="post" action="/console/reconciliations" {
            (csrf_field(csrf))
            h2.flush { "Check a list of leavers" }
            p.muted { "CSV with a header row: employee_id, email, terminated_on (other columns are ignored)." }
            label for="csv-file" { "CSV file" }
            input type="file" id="csv-file" accept=".csv,text/csv" data-fills="csv";
            label for="csv" { "…or paste it" }
            textarea name="csv" id="csv" required placeholder="employee_id,email\nE-1042,jane.doe@example.com" {}
            label.check { input type="checkbox" name="apply" value="yes"; "Deactivate the people still active (through safety, brake and approvals)" }
            div.actions { button type="submit" { "Reconcile" } }
        }
        h2 { "Recent reports" }
        div.card.scroll { table.stack {
            thead { tr { th { "Report" } th { "Origin" } th { "Status" } th { "Rows" } th { "Still active" } th { "Created" } } }
            tbody {
                @if list.is_empty() { tr { td colspan="6" { "No reconciliation yet." } } }
                @for r in list { tr {
                    td data-label="Report" { a href=(format!("/console/reconciliations/{}", r.id)) { code { (r.id) } } }
                    td data-label="Origin" { (r.origin) @if r.apply { " (apply)" } }
                    td data-label="Status" { (badge(if r.done { "done" } else { "running" })) }
                    td data-label="Rows" { (r.total) }
                    td data-label="Still active" { (r.count(crate::domain::reconcile::Outcome::Active)) }
                    td data-label="Created" { (time(r.created_at)) }
                } }
            }
        } }
    }
}

/// Rows shown on the page; the CSV has all.
pub const ROWS_SHOWN: usize = 1000;

pub fn reconciliation(r: &ReconciliationRecord, rows: &[LeaverRecord], csrf: &str) -> Markup {
    use crate::domain::reconcile::Outcome;
    let checked: i64 = r.counts.iter().map(|(_, n)| n).sum();
    let gaps = r.count(Outcome::Active);
    html! {
        h1 { "Reconciliation " code { (r.id) } }
        div.row {
            (badge(if r.done { "done" } else { "running" }))
            span.muted { (r.origin) " · created " (time(r.created_at)) @if let Some(t) = r.finished_at { " · finished " (time(t)) } @if r.apply { " · applies" } }
        }
        div.card {
            p { strong { (checked) " of " (r.total) } " rows checked" @if !r.done { " (this page reloads until it is done)" } }
            p.counts {
                @for o in Outcome::ALL { span { (badge(o.as_str())) " " (r.count(o)) " " } }
            }
            p { a href=(format!("/console/reconciliations/{}/report.csv", r.id)) download { "Download the report (CSV)" } }
        }
        @if r.done && gaps > 0 && !r.apply {
            form.card.error method="post" action=(format!("/console/reconciliations/{}/apply", r.id)) {
                (csrf_field(csrf))
                p { strong { (gaps) } " people who left still have an active Workfront user." }
                label.check { input type="checkbox" name="confirm" value="yes" required; "Check them again and deactivate those still active (through safety, brake and approvals)" }
                div.actions { button.danger type="submit" { "Apply" } }
            }
        }
        div.card.scroll { table.stack {
            thead { tr { th { "Row" } th { "Employee id" } th { "Email" } th { "Outcome" } th { "Workfront user" } th { "Action" } th { "Detail" } } }
            tbody { @for row in rows.iter().take(ROWS_SHOWN) { tr {
                td data-label="Row" { (row.idx + 1) }
                td data-label="Employee id" { (opt(&row.employee_id)) }
                td data-label="Email" { (opt(&row.email)) }
                td data-label="Outcome" { @match row.outcome { Some(o) => (badge(o.as_str())), None => span.muted { "unchecked" } } }
                td data-label="Workfront user" { @if let Some(u) = &row.user { (opt(&u.name)) " · " code { (u.id) } } }
                td data-label="Action" { @if let Some(id) = &row.action_id { a href=(format!("/console/actions/{id}")) { code { (id) } } } }
                td data-label="Detail" { (opt(&row.detail)) }
            } } }
        } }
        @if rows.len() > ROWS_SHOWN { p.muted { "The first " (ROWS_SHOWN) " of " (rows.len()) " rows are shown; the CSV has all." } }
    }
}

pub fn login(error: Option<&str>, next: &str) -> Markup {
    html! {
        div.login {
            h1 { "offboard console" }
            @if let Some(e) = error { div.card.error role="alert" { (e) } }
            form.card method="post" action="/console/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input type="password" name="token" id="token" required autocomplete="current-password" autofocus;
                label for="operator" { "Your name (written into the audit of every change)" }
                input type="text" name="operator" id="operator" required maxlength="80" autocomplete="name";
                div.actions { button type="submit" { "Sign in" } }
            }
        }
    }
}

pub fn problem(status: u16, message: &str, back: &str) -> Markup {
    html! {
        h1 { "Not done (" (status) ")" }
        div.card.error role="alert" { (message) }
        p { a href=(back) { "← Back" } }
    }
}

/// The stylesheet and the one small script, compiled in.
pub const CSS: &str = include_str!("console.css");
pub const JS: &str = include_str!("console.js");

/// Markup as a string, for the size check in tests.
pub fn render(m: Markup) -> String {
    let PreEscaped(s) = m;
    s
}
