// End-to-end tests of the operator console (SPEC §11) in real headless Chromium.
//
// Each test starts its own stack: the built `workfront-sim` and `offboard serve` as processes on
// free loopback ports, with a fresh SQLite file. Deliveries are signed here (Standard Webhooks,
// HMAC-SHA256), and the outcome is read from the simulator and the admin API, not from the page.
//
// Needs: `cargo build --bins` (or OFFBOARD_BIN_DIR), Debian's chromium (CHROMIUM, default
// /usr/bin/chromium), and `npm ci` here. Run: `node --test tests/browser` (.ci/run does).
// Screenshots go to SCREENSHOT_DIR (default target/console-screenshots).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const binDir = process.env.OFFBOARD_BIN_DIR ?? join(root, "target/debug");
const shots = process.env.SCREENSHOT_DIR ?? join(root, "target/console-screenshots");
const TOKEN = "console-test-admin-token";
const API_KEY = "console-test-api-key";
const SECRET = "whsec_" + randomBytes(32).toString("base64");
const OPERATOR = "Olivia Operator";

// Two accounts share one email: a termination that names only the email is ambiguous.
const SAM = "5f1c0a7e0000a1b2c3d4e5f6000000b1";
const SAM_CONTRACTOR = "5f1c0a7e0000a1b2c3d4e5f6000000b2";
const users = JSON.parse(readFileSync(join(root, "src/sim/sample-users.json"), "utf8"));
users.push(
  { ID: SAM, objCode: "USER", name: "Sam Lee", emailAddr: "sam.lee@example.com", username: "sam.lee",
    isActive: true, isAdmin: false, extRefID: "E-2001" },
  { ID: SAM_CONTRACTOR, objCode: "USER", name: "Sam Lee (contractor)", emailAddr: "sam.lee@example.com",
    username: "slee.contractor", isActive: true, isAdmin: false, extRefID: "C-77" },
);
const JANE = users.find((u) => u.extRefID === "E-1042").ID;
const JOHN = users.find((u) => u.extRefID === "E-1043").ID;

const stacks = [];
let browser;
after(async () => {
  await browser?.close();
  for (const s of stacks) s.stop();
});

async function launch() {
  browser ??= await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  return browser;
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

async function waitFor(what, check, seconds = 20) {
  const until = Date.now() + seconds * 1000;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function start(bin, args) {
  const child = spawn(join(binDir, bin), args, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (d) => { err = (err + d).slice(-4000); });
  child.exitedEarly = () => (child.exitCode !== null ? `${bin} exited ${child.exitCode}: ${err}` : null);
  return child;
}

/** workfront-sim and offboard serve, with `toml` laid over the test configuration. */
async function stack(toml = "") {
  const dir = mkdtempSync(join(tmpdir(), "offboard-console-"));
  const [port, simPort] = [await freePort(), await freePort()];
  writeFileSync(join(dir, "users.json"), JSON.stringify(users));
  const sim = start("workfront-sim", ["--bind", `127.0.0.1:${simPort}`, "--users", join(dir, "users.json"),
    "--api-key", API_KEY]);
  writeFileSync(join(dir, "offboard.toml"), `
[server]
bind = "127.0.0.1:${port}"
[database]
url = "sqlite://${join(dir, "offboard.db")}"
[workfront]
base_url = "http://127.0.0.1:${simPort}"
api_key = "${API_KEY}"
[admin]
token = "${TOKEN}"
[log]
level = "warn"
[sources.hr]
kind = "standard"
secret = "${SECRET}"
${toml}
`);
  const app = start("offboard", ["serve", "--config", join(dir, "offboard.toml")]);
  const s = {
    base: `http://127.0.0.1:${port}`,
    sim: `http://127.0.0.1:${simPort}`,
    stop() { app.kill("SIGTERM"); sim.kill("SIGTERM"); },
  };
  stacks.push(s);
  await waitFor("offboard ready", async () => {
    for (const c of [sim, app]) if (c.exitedEarly()) throw new Error(c.exitedEarly());
    return (await fetch(`${s.base}/readyz`)).ok;
  }).catch((e) => { throw new Error(`${e.message}; ${sim.exitedEarly() ?? ""} ${app.exitedEarly() ?? ""}`); });
  return s;
}

async function deliver(s, data) {
  const body = JSON.stringify({ type: "employee.terminated", timestamp: new Date().toISOString(), data });
  const id = "msg_" + randomBytes(12).toString("hex");
  const ts = Math.floor(Date.now() / 1000).toString();
  const key = Buffer.from(SECRET.slice("whsec_".length), "base64");
  const sig = createHmac("sha256", key).update(`${id}.${ts}.${body}`).digest("base64");
  const r = await fetch(`${s.base}/webhooks/hr`, {
    method: "POST", body,
    headers: { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": ts,
      "webhook-signature": `v1,${sig}` },
  });
  const text = await r.text();
  assert.equal(r.status, 202, text);
}

async function admin(s, path) {
  const r = await fetch(`${s.base}/admin/v1/${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

async function heldAction(s, reason) {
  return waitFor(`a held ${reason} action`, async () =>
    (await admin(s, `actions?status=held&reason=${reason}`)).actions[0]);
}

async function simUser(s, id) {
  const r = await fetch(`${s.sim}/__sim/users`, { headers: { apiKey: API_KEY } });
  return (await r.json()).users.find((u) => u.ID === id);
}

async function signIn(s, { token = TOKEN } = {}) {
  const context = await (await launch()).newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${s.base}/console`);
  assert.match(new URL(page.url()).pathname, /^\/console\/login$/, "an anonymous visitor is sent to sign-in");
  await page.getByLabel("Admin token").fill(token);
  await page.getByLabel(/Your name/).fill(OPERATOR);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/console/login") && r.request().method() === "POST"),
    page.getByRole("button", { name: "Sign in" }).click(),
  ]);
  await page.waitForLoadState();
  return { page, context, answer };
}

function shot(page, name) {
  mkdirSync(shots, { recursive: true });
  return page.screenshot({ path: join(shots, name), fullPage: true });
}

test("an operator picks the right candidate of an ambiguous match in the queue, and that user is deactivated", async () => {
  const s = await stack();
  await deliver(s, { email: "sam.lee@example.com", name: "Sam Lee" });
  const held = await heldAction(s, "ambiguous_match");

  const { page, context } = await signIn(s);
  assert.equal(new URL(page.url()).pathname, "/console");
  const card = page.locator("section", { has: page.locator(`a[href="/console/actions/${held.id}"]`) });
  await card.waitFor();
  // Both candidates side by side, with what tells them apart.
  for (const text of ["Sam Lee (contractor)", "slee.contractor", "C-77", "sam.lee", "E-2001", "ambiguous_match"]) {
    assert.ok(await card.getByText(text, { exact: true }).first().isVisible(), `the queue shows ${text}`);
  }
  await shot(page, "console-queue.png");

  await card.locator(`input[type=radio][value="${SAM}"]`).check();
  await card.getByLabel("Note for the audit (optional)").first().fill("checked with HR: the employee, not the contractor");
  await card.getByRole("button", { name: "Approve" }).click();
  await page.waitForURL(`**/console/actions/${held.id}?done=approve`);
  assert.ok(await page.getByText("Approved.").isVisible());

  await waitFor("the chosen user inactive", async () => (await simUser(s, SAM)).isActive === false);
  const done = await waitFor("the action succeeded", async () => {
    const a = await admin(s, `actions/${held.id}`);
    return a.status === "succeeded" && a;
  });
  assert.equal(done.reason, "deactivated");
  assert.equal(done.workfront_user.ID, SAM);
  assert.equal((await simUser(s, SAM_CONTRACTOR)).isActive, true, "the other candidate is untouched");
  const approval = done.audit.find((e) => e.step === "operator_approved");
  assert.equal(approval.detail.operator, OPERATOR, "the operator's name is in the audit");
  assert.equal(approval.detail.workfront_user_id, SAM);

  // The detail page tells the story: the Workfront calls, and the raw JSON one click away.
  await page.reload();
  assert.ok(await page.locator(".badge.succeeded").first().isVisible());
  assert.ok(await page.getByText(/update: sent PUT user\//).first().isVisible());
  await page.getByText("Raw JSON of this action").click();
  assert.ok(await page.getByText(`"id": "${held.id}"`).isVisible());
  await shot(page, "console-action.png");
  await context.close();
});

test("a wrong admin token is refused at sign-in and no session is made", async () => {
  const s = await stack();
  const { page, context, answer } = await signIn(s, { token: "not-the-token" });
  assert.equal(answer.status(), 401);
  assert.ok(await page.getByText("That is not the admin token.").isVisible());
  assert.equal((await context.cookies()).length, 0, "no session cookie");
  await page.goto(`${s.base}/console/actions`);
  assert.equal(new URL(page.url()).pathname, "/console/login");
  await context.close();
});

test("a change posted without the CSRF token is refused with 403 and changes nothing", async () => {
  const s = await stack();
  await deliver(s, { email: "sam.lee@example.com" });
  const held = await heldAction(s, "ambiguous_match");
  const { page, context } = await signIn(s);
  const cookie = (await context.cookies()).find((c) => c.name === "offboard_session");
  assert.ok(cookie?.httpOnly, "the session cookie is HttpOnly");
  assert.equal(cookie.sameSite, "Strict");

  for (const form of [{ note: "no token" }, { note: "wrong token", csrf: "0".repeat(64) }]) {
    const r = await page.request.post(`${s.base}/console/actions/${held.id}/cancel`, { form });
    assert.equal(r.status(), 403, form.note);
  }
  const after = await admin(s, `actions/${held.id}`);
  assert.equal(after.status, "held");
  assert.ok(!after.audit.some((e) => e.step === "operator_cancelled"));

  // The page's own form carries the token and works.
  await page.goto(`${s.base}/console/actions/${held.id}`);
  await page.getByRole("button", { name: "Cancel this action" }).click();
  await page.waitForURL("**?done=cancel");
  assert.equal((await admin(s, `actions/${held.id}`)).status, "cancelled");
  await context.close();
});

test("the brake is released from the page after a confirmation, and the held deactivation runs", async () => {
  const s = await stack("[safety]\nbrake_max = 1\n");
  await deliver(s, { employee_id: "E-1042" });
  await waitFor("Jane inactive", async () => (await simUser(s, JANE)).isActive === false);
  await deliver(s, { employee_id: "E-1043" });
  const held = await heldAction(s, "rate_brake");

  const { page, context } = await signIn(s);
  await page.getByRole("link", { name: "Brake" }).click();
  assert.ok(await page.getByText("The brake is engaged.").isVisible());
  assert.ok(await page.locator(`a[href="/console/actions/${held.id}"]`).isVisible());
  // Without the confirmation the browser does not send the form.
  await page.getByRole("button", { name: "Release the brake" }).click();
  assert.equal(new URL(page.url()).pathname, "/console/brake");
  assert.equal((await admin(s, `actions/${held.id}`)).status, "held");
  await page.getByRole("checkbox").check();
  await page.getByRole("button", { name: "Release the brake" }).click();
  await page.waitForURL("**/console/brake?done=released");

  await waitFor("John inactive", async () => (await simUser(s, JOHN)).isActive === false);
  const done = await waitFor("released action succeeded", async () => {
    const a = await admin(s, `actions/${held.id}`);
    return a.status === "succeeded" && a;
  });
  assert.equal(done.audit.find((e) => e.step === "brake_released").detail.operator, OPERATOR);
  await context.close();
});

test("a leavers CSV is uploaded, the report is read and downloaded, and its gaps are applied", async () => {
  const s = await stack();
  const { page, context } = await signIn(s);
  await page.getByRole("link", { name: "Reconciliations" }).click();
  await page.getByLabel("…or paste it").fill("employee_id,email\nE-1042,jane.doe@example.com\nE-9999,nobody@example.com\n");
  await page.getByRole("button", { name: "Reconcile" }).click();
  await page.waitForURL(/\/console\/reconciliations\/rec_[0-9a-f]{32}$/);
  const report = page.url();
  // The page reloads itself while the report runs.
  await page.locator(".badge.done").first().waitFor({ timeout: 20000 });
  assert.ok(await page.getByText("1 people who left still have an active Workfront user.").isVisible());

  const [download] = await Promise.all([page.waitForEvent("download"),
    page.getByText("Download the report (CSV)").click()]);
  const csv = readFileSync(await download.path(), "utf8");
  assert.match(csv, /^row,employee_id,email/);
  assert.match(csv, /E-1042,jane\.doe@example\.com,,active/);
  assert.match(csv, /E-9999,nobody@example\.com,,not_found/);

  await page.getByRole("checkbox").check();
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForURL((u) => u.href !== report && /reconciliations\/rec_/.test(u.href));
  await waitFor("Jane inactive", async () => (await simUser(s, JANE)).isActive === false);
  await context.close();
});

test("on a phone-sized screen the queue needs no sideways scrolling", async () => {
  const s = await stack();
  await deliver(s, { email: "sam.lee@example.com" });
  await heldAction(s, "ambiguous_match");
  const context = await (await launch()).newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.goto(`${s.base}/console/login`);
  await page.getByLabel("Admin token").fill(TOKEN);
  await page.getByLabel(/Your name/).fill(OPERATOR);
  await page.getByLabel(/Your name/).press("Enter");
  await page.waitForURL("**/console");
  const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  assert.ok(scroll <= client, `page is ${scroll}px wide in a ${client}px viewport`);
  await shot(page, "console-queue-phone.png");
  await context.close();
});

test("an ambiguous match is resolved with the keyboard alone", async () => {
  const s = await stack();
  await deliver(s, { email: "sam.lee@example.com" });
  const held = await heldAction(s, "ambiguous_match");
  const { page, context } = await signIn(s);
  // Tab until `matches` holds for the focused element (bounded), as a keyboard user would.
  const tabTo = async (what, matches) => {
    for (let i = 0; i < 60; i++) {
      await page.keyboard.press("Tab");
      if (await page.evaluate(matches)) return;
    }
    throw new Error(`Tab never reached ${what}`);
  };
  await tabTo("the right candidate", () => document.activeElement?.value === "5f1c0a7e0000a1b2c3d4e5f6000000b1");
  await page.keyboard.press("Space");
  await tabTo("Approve", () => document.activeElement?.textContent === "Approve");
  const focusVisible = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(focusVisible, "none", "the focused button shows where the focus is");
  await page.keyboard.press("Enter");
  await page.waitForURL(`**/console/actions/${held.id}?done=approve`);
  await waitFor("the chosen user inactive", async () => (await simUser(s, SAM)).isActive === false);
  assert.equal((await simUser(s, SAM_CONTRACTOR)).isActive, true);
  await context.close();
});
