// Swagger UI at /docs in a real browser: headless Debian Chromium, driven by
// playwright-core, against a `docflow serve` this test starts on port 0.
// A person's path through the page: Authorize with username and password
// (the OAuth2 password flow), try GET /auth/me, upload a PDF, start
// processing, poll for the result. The page must stay inside its
// Content-Security-Policy, log no console error and talk to no other host.
//
// Environment: DOCFLOW_BIN (the binary), DOCFLOW_ARTIFACTS (where the
// screenshots go), CHROMIUM (default /usr/bin/chromium).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.DOCFLOW_BIN ?? resolve(here, "../../build/src/docflow");
const ARTIFACTS = process.env.DOCFLOW_ARTIFACTS ?? join(tmpdir(), "docflow-interop-artifacts");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const PDF = resolve(here, "../fixtures/en-1page.pdf");

const START_TIMEOUT_MS = 15_000; // for `serve` to log server.listening
const STEP_TIMEOUT_MS = 15_000; // for one thing to appear on the page
const RESULT_BOUND_MS = 60_000; // a job not done by then is hung (detects hangs only)

// Starts `docflow serve` on 127.0.0.1:0 with a fresh data directory and
// resolves once its server.listening log line names the port.
function startServer() {
  const dataDir = mkdtempSync(join(tmpdir(), "docflow-interop-"));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("DOCFLOW_")));
  Object.assign(env, {
    DOCFLOW_LISTEN: "127.0.0.1:0",
    DOCFLOW_DATA_DIR: dataDir,
    DOCFLOW_JWT_SECRET: "interop-test-secret-0123456789abcdef0123",
  });
  const proc = spawn(BIN, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  const logs = [];
  proc.stderr.on("data", (chunk) => logs.push(String(chunk)));
  const stop = () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  };
  return new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`docflow serve did not start within ${START_TIMEOUT_MS} ms:\n${logs.join("\n")}`));
    }, START_TIMEOUT_MS);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`docflow serve exited (${code}):\n${logs.join("\n")}`));
    });
    createInterface({ input: proc.stdout }).on("line", (line) => {
      logs.push(line);
      let event;
      try {
        event = JSON.parse(line);
      } catch {
        return;
      }
      if (event.event === "server.listening") {
        clearTimeout(timer);
        resolvePort({ origin: `http://127.0.0.1:${event.port}`, stop, logs });
      }
    });
  });
}

// The operation block of `method path` on the page, expanded.
async function openOperation(page, method, path) {
  const block = page.locator(`.opblock.opblock-${method.toLowerCase()}`, {
    has: page.locator(`[data-path="${path}"]`),
  });
  await block.first().waitFor({ timeout: STEP_TIMEOUT_MS });
  const op = block.first();
  if (!(await op.locator(".opblock-body").count())) {
    await op.locator(".opblock-summary-control").click();
  }
  await op.locator(".opblock-body").waitFor({ timeout: STEP_TIMEOUT_MS });
  const tryOut = op.locator("button.try-out__btn:not(.cancel)");
  if (await tryOut.count()) await tryOut.click();
  return op;
}

// Swagger UI fills a parameter with its example, and the contract's
// Idempotency-Key example is one key shared by every operation: reusing it
// for a different request is 422. A person types a fresh key, so do we.
async function freshIdempotencyKey(op, name) {
  const key = op.locator('tr[data-param-name="Idempotency-Key"] input');
  if (await key.count()) await key.fill(`docs-ui-${name}-${Date.now().toString(36)}`);
}

// Clicks Execute and returns the HTTP status and body the UI then shows,
// after checking the UI shows what the server actually answered.
async function execute(page, op, method, urlPart) {
  const [response] = await Promise.all([
    page.waitForResponse(
      (r) => r.request().method() === method && new URL(r.url()).pathname.endsWith(urlPart),
      { timeout: STEP_TIMEOUT_MS },
    ),
    op.locator("button.execute").click(),
  ]);
  const status = response.status();
  const shown = op.locator(".live-responses-table .response .response-col_status");
  await assertEventually(async () => (await shown.first().innerText()).trim() === String(status),
    `the UI shows status ${status} for ${method} ${urlPart}`);
  const body = await op.locator(".live-responses-table .response-col_description pre").first().innerText();
  return { status, body };
}

async function assertEventually(check, what) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting until ${what}`);
}

test("Swagger UI: authorize, try /auth/me, upload, process, result", async (t) => {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of readdirSync(ARTIFACTS)) {
    if (/^docs_ui-.*\.png$/.test(f)) rmSync(join(ARTIFACTS, f));  // a previous run's
  }
  const server = await startServer();
  t.after(() => server.stop());
  const { origin } = server;

  // A user to log in as, registered the ordinary way.
  const username = `ui-${Date.now().toString(36)}`;
  const password = "correct horse battery staple";
  const reg = await fetch(`${origin}/auth/register`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  assert.equal(reg.status, 201, await reg.text());

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });

  // Everything the page does wrong, reported at the end with the screenshots.
  const problems = [];
  const foreign = [];
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    // A 409 while the result is not ready is an answer the test polls
    // through, but Chromium logs every non-2xx fetch as an error: that one
    // message, for that one URL, is expected.
    const notReady = /\/documents\/[^/]+\/result$/.test(msg.location().url ?? "") &&
      /status of 409/.test(msg.text());
    if (!notReady) problems.push(`console error: ${msg.text()} (${msg.location().url ?? ""})`);
  });
  page.on("pageerror", (err) => problems.push(`uncaught exception: ${err.message}`));
  page.on("request", (req) => {
    const url = new URL(req.url());
    if (url.protocol === "data:" || url.protocol === "blob:") return;
    if (url.origin !== origin) foreign.push(req.url());
  });
  page.on("requestfailed", (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  // The browser reports CSP violations as console errors too; this catches
  // the ones it reports only as events (report-only, or in workers).
  await page.exposeFunction("__docflowCspViolation", (v) => problems.push(`CSP violation: ${v}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__docflowCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`));
  });

  const screenshots = [];
  const shot = async (name) => {
    const path = join(ARTIFACTS, `docs_ui-${String(screenshots.length + 1).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path, fullPage: false });
    screenshots.push(path);
    console.log(`screenshot: ${path}`);
  };

  try {
    // 1. The page renders the contract.
    const res = await page.goto(`${origin}/docs`);
    assert.equal(res.status(), 200);
    assert.match(res.headers()["content-security-policy"] ?? "", /script-src 'self'/);
    await page.locator(".swagger-ui .info .title").waitFor({ timeout: STEP_TIMEOUT_MS });
    await page.locator(".opblock").first().waitFor({ timeout: STEP_TIMEOUT_MS });
    await shot("loaded");

    // 2. Authorize through the password flow.
    await page.locator(".auth-wrapper button.authorize").click();
    const modal = page.locator(".modal-ux");
    await modal.waitFor({ timeout: STEP_TIMEOUT_MS });
    await modal.locator("#oauth_username").fill(username);
    await modal.locator("#oauth_password").fill(password);
    await shot("authorize-dialog");
    const [login] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === "/auth/login", { timeout: STEP_TIMEOUT_MS }),
      modal.getByRole("button", { name: "Apply given OAuth2 credentials" }).click(),
    ]);
    assert.equal(login.status(), 200, await login.text());
    await modal.getByRole("button", { name: "Remove authorization" }).first().waitFor({ timeout: STEP_TIMEOUT_MS });
    await shot("authorized");
    await modal.locator("button.btn-done").first().click();
    await modal.waitFor({ state: "detached", timeout: STEP_TIMEOUT_MS });

    // 3. GET /auth/me with the token Swagger UI got.
    const me = await openOperation(page, "GET", "/auth/me");
    const meResult = await execute(page, me, "GET", "/auth/me");
    await me.scrollIntoViewIfNeeded();
    await shot("auth-me");
    assert.equal(meResult.status, 200, meResult.body);
    assert.equal(JSON.parse(meResult.body).username, username);

    // 4. Upload the one-page PDF through the form.
    const upload = await openOperation(page, "POST", "/documents");
    await upload.locator('input[type="file"]').first().setInputFiles(PDF);
    await freshIdempotencyKey(upload, "upload");
    const uploaded = await execute(page, upload, "POST", "/documents");
    await shot("uploaded");
    assert.equal(uploaded.status, 201, uploaded.body);
    const id = JSON.parse(uploaded.body).id;
    assert.match(id, /^[0-9a-f-]{36}$/);

    // 5. Start processing it.
    const processOp = await openOperation(page, "POST", "/documents/{id}/process");
    await processOp.locator('tr[data-param-name="id"] input').fill(id);
    await freshIdempotencyKey(processOp, "process");
    const started = await execute(page, processOp, "POST", `/documents/${id}/process`);
    await shot("process");
    assert.equal(started.status, 202, started.body);

    // 6. Poll the result until it is there (409 result-not-ready before).
    const resultOp = await openOperation(page, "GET", "/documents/{id}/result");
    await resultOp.locator('tr[data-param-name="id"] input').fill(id);
    const deadline = Date.now() + RESULT_BOUND_MS;
    let result;
    let polls = 0;
    for (;;) {
      result = await execute(page, resultOp, "GET", `/documents/${id}/result`);
      polls += 1;
      if (result.status !== 409 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    await shot("result");
    console.log(`result: ${result.status} after ${polls} request(s)`);
    assert.equal(result.status, 200, result.body);
    assert.equal(JSON.parse(result.body).document_id, id);

    // 7. The watch above can see a violation: an injected inline script is
    // blocked by the policy and reported. (Only then does an empty list of
    // problems mean something.)
    const before = problems.length;
    await page.evaluate(() => {
      const s = document.createElement("script");
      s.textContent = "window.__docflowInline = true;";
      document.body.append(s);
    });
    assert.equal(await page.evaluate(() => window.__docflowInline), undefined, "an inline script ran");
    await assertEventually(async () => problems.length > before, "the blocked inline script is reported");
    assert.ok(problems.slice(before).every((p) => /Content Security Policy|CSP violation/.test(p)), problems.join("\n"));
    problems.splice(before);
  } catch (err) {
    await shot("failure").catch(() => {});
    for (const p of [...problems, ...foreign.map((u) => `foreign request: ${u}`)]) console.log(p);
    throw err;
  } finally {
    console.log(`screenshots (${screenshots.length}) in ${ARTIFACTS}`);
  }

  assert.deepEqual(problems, [], "the page reported problems");
  assert.deepEqual(foreign, [], "the page made requests to other hosts");
});
