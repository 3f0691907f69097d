// Drives Debian's Chromium through the console of a running proctord (tests/it/console.rs starts
// it and reads what this prints):
//   PROCTOR_TEST_TOKEN=<admin token> node test/console.mjs <base URL> <screenshot directory>
// The journeys: sign in; find a proc; run it with a validation error, then fixed; watch lines
// arrive while it runs; rerun; cancel a long run; filter executions by FAILED; create a schedule
// (preview, first run); set a secret and see it masked; roll a proc back; follow a 200,000-line
// log; and the server going away and coming back (this prints `STOP_SERVER`, and waits for
// `RESTARTED` on stdin). Every page gets an axe-core scan. Every request is recorded.
// Prints one JSON line with what it saw as its last line; exits non-zero when a step fails.
import { launchChromium } from "./chromium.mjs";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const [base, shots] = process.argv.slice(2);
const token = process.env.PROCTOR_TEST_TOKEN;
// The restart journey's server (runs on a cluster, so they go on while it is away).
const cluster = process.env.PROCTOR_TEST_CLUSTER;
const clusterToken = process.env.PROCTOR_TEST_CLUSTER_TOKEN;
if (!base || !shots || !token || !cluster || !clusterToken) {
  console.error("usage: PROCTOR_TEST_TOKEN=<token> PROCTOR_TEST_CLUSTER=<base URL> PROCTOR_TEST_CLUSTER_TOKEN=<token> node test/console.mjs <base URL> <screenshot directory>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const timeout = 30_000;
const seen = { requests: [], axe: {}, consoleErrors: [], steps: [] };
const stdin = createInterface({ input: process.stdin });
const nextInput = () => new Promise((resolve) => stdin.once("line", resolve));
const step = (name) => {
  seen.steps.push(name);
  console.log(`step: ${name}`);
};

const browser = await launchChromium();

async function newPage({ width = 1400, height = 900, colorScheme = "light", signedIn = true } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme, acceptDownloads: true, deviceScaleFactor: 1 });
  context.on("request", (request) => seen.requests.push(request.url()));
  const tokens = { [new URL(base).origin]: token, [new URL(cluster).origin]: clusterToken };
  if (signedIn) await context.addInitScript((byOrigin) => localStorage.setItem("proctor.token", byOrigin[location.origin] ?? ""), tokens);
  const page = await context.newPage();
  page.on("websocket", (socket) => seen.requests.push(socket.url()));
  page.on("console", (message) => message.type() === "error" && seen.consoleErrors.push(message.text()));
  page.on("pageerror", (error) => seen.consoleErrors.push(String(error)));
  page.setDefaultTimeout(timeout);
  return page;
}

/** axe-core on the page as it is now; keeps the serious and critical violations. */
async function scan(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  seen.axe[name] = result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
}

const statusOf = (page) => page.locator("#status [data-status]").getAttribute("data-status");
async function waitStatus(page, wanted, ms = timeout) {
  await page.locator(`#status [data-status="${wanted}"]`).waitFor({ timeout: ms });
}
const executionIdOf = (page) => (page.url().match(/#\/executions\/(\d+)/) || [])[1];
async function waitForExecutionPage(page, other = null) {
  await page.waitForFunction((previous) => {
    const m = location.hash.match(/^#\/executions\/(\d+)/);
    return m && m[1] !== previous;
  }, other);
  await page.locator("#status [data-status]").waitFor();
  return executionIdOf(page);
}
const lineTexts = (page) => page.locator("#logs .line .text").allTextContents();

let page;
try {
  // ---- sign in --------------------------------------------------------------------------------
  step("sign in");
  page = await newPage({ signedIn: false });
  await page.goto(`${base}/`);
  await page.getByRole("heading", { name: "Sign in to Proctor" }).waitFor();
  seen.signInHint = (await page.locator(".sign-in").innerText()).includes("proctord users add");
  await scan(page, "sign-in");
  await page.fill("#token", "not-a-token");
  await page.click("button[type=submit]");
  seen.wrongToken = await page.locator(".sign-in [role=alert]").innerText();
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.locator("#procs").waitFor();
  seen.who = await page.locator("#who").innerText();
  await page.locator('#connection[data-state="live"]').waitFor();
  await scan(page, "catalogue");

  // ---- find a proc -----------------------------------------------------------------------------
  step("find a proc");
  const cardNames = () => page.locator("#procs [data-proc]").evaluateAll((cards) => cards.map((c) => c.dataset.proc));
  seen.allProcs = await cardNames();
  await page.fill("#proc-search", "count");
  await page.waitForFunction(() => document.querySelectorAll("#procs [data-proc]").length === 1);
  seen.searchCount = await cardNames();
  await page.fill("#proc-search", "");
  await page.selectOption("#proc-group", "ops");
  await page.waitForFunction(() => {
    const cards = [...document.querySelectorAll("#procs [data-proc]")];
    return cards.length > 0 && cards.length < 7 && cards.every((c) => c.dataset.proc === "flaky");
  });
  seen.groupOps = await cardNames();
  await page.selectOption("#proc-group", "");

  // ---- run with a validation error, then fixed; lines arrive while it runs ----------------------
  step("run countdown");
  await page.click('#procs [data-proc="countdown"] a');
  await page.locator("#run-countdown-SECONDS").waitFor();
  await scan(page, "proc");
  await page.fill("#run-countdown-SECONDS", "abc");
  await page.click("text=Run countdown");
  seen.validation = await page.locator('[data-invalid="SECONDS"]').innerText();
  seen.validationUrl = page.url();
  await page.fill("#run-countdown-SECONDS", "3");
  await page.click("text=Check arguments");
  seen.dryRun = await page.locator(".checked").innerText();
  await page.click("text=Run countdown");
  const countdownId = await waitForExecutionPage(page);
  await page.locator("#logs .line").first().waitFor();
  seen.statusAtFirstLine = await statusOf(page);
  await waitStatus(page, "SUCCEEDED");
  await page.waitForFunction(() => document.querySelectorAll("#logs .line").length >= 4);
  seen.countdown = { id: countdownId, lines: await lineTexts(page), args: await page.locator("#args").innerText() };
  await scan(page, "execution");

  // ---- rerun -------------------------------------------------------------------------------------
  step("rerun");
  await page.click("#rerun");
  const rerunId = await waitForExecutionPage(page, countdownId);
  await waitStatus(page, "SUCCEEDED");
  seen.rerun = { id: rerunId, args: await page.locator("#args").innerText(), cancelButtons: await page.locator("#cancel").count() };

  // ---- cancel a long run -----------------------------------------------------------------------
  step("cancel");
  await page.goto(`${base}/#/procs/countdown`);
  await page.fill("#run-countdown-SECONDS", "60");
  await page.click("text=Run countdown");
  const longId = await waitForExecutionPage(page);
  await waitStatus(page, "RUNNING");
  await page.locator("#logs .line").first().waitFor();
  await page.click("#cancel");
  await waitStatus(page, "CANCELLED");
  seen.cancel = { id: longId, cancelButtons: await page.locator("#cancel").count(), reason: await page.locator("#reason").innerText() };

  // ---- a failing run, then the executions filtered by FAILED ------------------------------------
  step("filter FAILED");
  await page.goto(`${base}/#/procs/flaky`);
  await page.click("text=Run flaky");
  const failedId = await waitForExecutionPage(page);
  await waitStatus(page, "FAILED");
  await page.goto(`${base}/#/executions`);
  await page.locator("#executions-table").waitFor();
  await scan(page, "executions");
  await page.selectOption("#filter-status", "FAILED");
  await page.waitForFunction(() => location.hash.includes("status=FAILED"));
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#executions-table [data-execution]")];
    return rows.length > 0 && rows.every((r) => r.dataset.status === "FAILED");
  });
  seen.failed = {
    id: failedId,
    rows: await page.locator("#executions-table [data-execution]").evaluateAll((rows) => rows.map((r) => [r.dataset.execution, r.dataset.status])),
  };

  // ---- a schedule: help, preview, first run ----------------------------------------------------
  step("schedule");
  await page.goto(`${base}/#/schedules/new?proc=say-hello`);
  await page.locator("#schedule-arg-NAME").waitFor();
  await page.fill("#schedule-arg-NAME", "Schedule");
  await page.fill("#schedule-cron", "every minute please");
  await page.locator("#cron-preview .invalid").waitFor();
  seen.badCron = await page.locator("#cron-preview").innerText();
  await page.fill("#schedule-cron", "*/2 * * * * *");
  await page.waitForFunction(() => document.querySelectorAll("#cron-preview li time").length === 5);
  seen.preview = await page.locator("#cron-preview li time").evaluateAll((times) => times.map((t) => t.dateTime));
  await scan(page, "schedule-form");
  await page.click("#save-schedule");
  await page.waitForFunction(() => /^#\/schedules\/\d+$/.test(location.hash));
  await page.locator("[data-run-execution]").first().waitFor({ timeout: 30_000 });
  seen.schedule = {
    id: page.url().split("/").pop(),
    firstRun: await page.locator("[data-run-execution]").first().getAttribute("data-run-execution"),
  };
  await scan(page, "schedule");
  await page.click(`[data-toggle="${seen.schedule.id}"]`);
  await page.goto(`${base}/#/schedules`);
  await page.locator("#schedules").waitFor();
  await scan(page, "schedules");

  // ---- a secret, set here and masked in the run ------------------------------------------------
  step("secret");
  const secretValue = "console-secret-4f9d2a";
  await page.goto(`${base}/#/procs/secret-demo`);
  await page.fill("#secret-secret-demo-DEMO_TOKEN", secretValue);
  await page.getByRole("button", { name: "Set DEMO_TOKEN", exact: true }).click();
  await page.locator("text=DEMO_TOKEN is set.").waitFor();
  await page.click("text=Run secret-demo");
  const secretRun = await waitForExecutionPage(page);
  await waitStatus(page, "SUCCEEDED");
  await page.waitForFunction(() => document.querySelectorAll("#logs .line").length >= 2);
  seen.secret = {
    id: secretRun,
    lines: await lineTexts(page),
    valueOnPage: (await page.content()).includes(secretValue),
  };
  await page.goto(`${base}/#/secrets`);
  await page.locator("#secrets-title").waitFor();
  await scan(page, "secrets");

  // ---- output is text: markup a run prints never becomes page content ---------------------------
  step("markup");
  await page.goto(`${base}/#/procs/say-hello`);
  await page.fill("#run-say-hello-NAME", '<img src=x onerror="document.title=1">');
  await page.click("text=Run say-hello");
  await waitForExecutionPage(page);
  await waitStatus(page, "SUCCEEDED");
  await page.locator("#logs .line").first().waitFor();
  seen.markup = { lines: await lineTexts(page), images: await page.locator("#logs img").count() };

  // ---- GraphiQL uses the console's sign-in ------------------------------------------------------
  step("graphiql");
  await page.goto(`${base}/playground`);
  const editor = page.locator(".graphiql-query-editor .CodeMirror").first();
  await editor.waitFor();
  await page.evaluate(() => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue("query Who { me { email admin } }");
  });
  const response = page.locator(".graphiql-response .CodeMirror");
  let shown = "";
  for (let tries = 0; !shown.includes("email") && tries < 40; tries += 1) {
    await page.locator(".graphiql-execute-button").click();
    await page.waitForTimeout(500);
    shown = await response.evaluate((node) => node.CodeMirror.getValue());
  }
  seen.graphiql = JSON.parse(shown);

  // ---- an administrator rolls a proc back ------------------------------------------------------
  step("rollback");
  await page.goto(`${base}/#/procs/greeter`);
  await page.locator("#versions").waitFor();
  await page.click("text=Diff v1 → current");
  await page.locator("pre.diff .removed").first().waitFor();
  seen.diff = { removed: await page.locator("pre.diff .removed").allTextContents(), added: await page.locator("pre.diff .added").allTextContents() };
  page.once("dialog", (dialog) => dialog.accept());
  await page.click("#rollback");
  await page.locator("text=Rolled back").waitFor();
  await page.waitForFunction(() => document.querySelector("#proc-title")?.textContent.includes("v3"));
  seen.rollback = { title: await page.locator("#proc-title").innerText(), yaml: await page.locator("#yaml").innerText() };

  // ---- admin pages -----------------------------------------------------------------------------
  step("admin pages");
  await page.goto(`${base}/#/audit`);
  await page.locator("#audit").waitFor();
  seen.auditActions = await page.locator("#audit td.mono").allTextContents();
  await scan(page, "audit");
  await page.goto(`${base}/#/users`);
  await page.fill("#user-email", "new.user@example.com");
  await page.fill("#user-groups", "ops");
  await page.click("text=Issue token");
  seen.issuedToken = (await page.locator('input[aria-label="New token"]').inputValue()).length;
  await page.locator('#users [data-user="new.user@example.com"]').waitFor();
  seen.users = await page.locator("#users [data-user]").evaluateAll((rows) => rows.map((r) => [...r.cells].slice(0, 4).map((c) => c.textContent)));
  await scan(page, "users");
  await page.goto(`${base}/#/executions/999999`);
  await page.locator("#not-found").waitFor();
  seen.notFound = await page.locator("#not-found h1").innerText();
  await scan(page, "not-found");

  // ---- a 200,000-line log ----------------------------------------------------------------------
  step("large log");
  await page.goto(`${base}/#/procs/flood`);
  await page.click("text=Run flood");
  const floodId = await waitForExecutionPage(page);
  const started = Date.now();
  await waitStatus(page, "SUCCEEDED", 120_000);
  await page.locator("#stream-state", { hasText: "complete" }).waitFor({ timeout: 120_000 });
  seen.flood = {
    id: floodId,
    count: await page.locator("#log-count").innerText(),
    seconds: (Date.now() - started) / 1000,
    rowsInPage: await page.locator("#logs .line").count(),
  };
  // Scrolling to the middle shows the middle lines; searching narrows to the matches.
  await page.locator("#logs").evaluate((box) => { box.scrollTop = box.scrollHeight / 2; });
  await page.waitForTimeout(300);
  seen.flood.middle = await page.locator("#logs .line").first().getAttribute("data-seq");
  const frame = await page.evaluate(async () => {
    const box = document.getElementById("logs");
    const times = [];
    for (let i = 0; i < 30; i += 1) {
      const t0 = performance.now();
      box.scrollTop += 997;
      await new Promise((r) => requestAnimationFrame(() => r()));
      times.push(performance.now() - t0);
    }
    return Math.max(...times);
  });
  seen.flood.worstScrollFrameMs = frame;
  await page.fill("#log-search", "line 123456");
  await page.waitForFunction(() => document.querySelector("#log-matches")?.textContent.startsWith("1 of"));
  seen.flood.search = await page.locator("#log-matches").innerText();
  seen.flood.searchLines = await lineTexts(page);
  await page.close();

  // ---- screenshots: catalogue, run page, executions; 1400 and 390 px; light and dark -------------
  step("screenshots");
  seen.overflow = {};
  for (const [width, height] of [[1400, 900], [390, 844], [360, 740]]) {
    for (const colorScheme of ["light", "dark"]) {
      const shot = await newPage({ width, height, colorScheme });
      for (const [name, path, ready] of [
        ["catalogue", "#/", "#procs"],
        ["run", `#/executions/${countdownId}`, '#status [data-status="SUCCEEDED"]'],
        ["executions", "#/executions", "#executions-table"],
      ]) {
        await shot.goto(`${base}/${path}`);
        await shot.locator(ready).waitFor();
        await shot.locator('#connection[data-state="live"]').waitFor();
        await shot.waitForTimeout(200);
        seen.overflow[`${name}-${width}-${colorScheme}`] = await shot.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        if (width !== 360) await shot.screenshot({ path: `${shots}/console-${name}-${width}-${colorScheme}.png` });
        if (colorScheme === "dark" && width === 1400) await scan(shot, `${name}-dark`);
      }
      await shot.context().close();
    }
  }
  // The toggle overrides the system's choice.
  const toggled = await newPage({ colorScheme: "light" });
  await toggled.goto(`${base}/#/`);
  await toggled.locator("#procs").waitFor();
  const background = () => toggled.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const light = await background();
  await toggled.click("#theme");
  seen.theme = { light, dark: await background(), attribute: await toggled.evaluate(() => document.documentElement.dataset.theme) };
  await toggled.context().close();

  // ---- the server goes away and comes back -----------------------------------------------------
  step("restart");
  const errorsBefore = seen.consoleErrors.length;
  page = await newPage();
  await page.goto(`${cluster}/#/procs/drip`);
  await page.click("text=Run drip");
  const dripId = await waitForExecutionPage(page);
  await page.waitForFunction(() => document.querySelectorAll("#logs .line").length >= 10);
  console.log("STOP_SERVER");
  await page.locator("#banner").waitFor({ timeout: 60_000 });
  seen.restart = { id: dripId, banner: await page.locator("#banner").innerText(), stateWhileDown: await page.locator("#connection").getAttribute("data-state") };
  seen.restart.linesAtBanner = Number((await page.locator("#log-count").innerText()).split(" ")[0]);
  console.log("BANNER_SEEN");
  const answer = await nextInput();
  if (answer.trim() !== "RESTARTED") throw new Error(`expected RESTARTED, got ${answer}`);
  await page.locator('#connection[data-state="live"]').waitFor({ timeout: 60_000 });
  await page.locator("#banner").waitFor({ state: "detached" });
  await page.locator("#stream-state", { hasText: "complete" }).waitFor({ timeout: 60_000 });
  seen.restart.status = await statusOf(page);
  seen.restart.count = Number((await page.locator("#log-count").innerText()).split(" ")[0]);
  const download = page.waitForEvent("download");
  await page.click("#download");
  seen.restart.log = readFileSync(await (await download).path(), "utf8");
  // Failed connections while the server was away are logged by the browser itself.
  seen.consoleErrorsWhileUp = seen.consoleErrors.slice(0, errorsBefore);
  step("done");
} catch (error) {
  seen.failure = `${error.stack ?? error}`;
  if (page && !page.isClosed()) await page.screenshot({ path: `${shots}/console-failure.png` }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
  stdin.close();
  const origins = [new URL(base).host, new URL(cluster).host];
  seen.outside = seen.requests.filter((url) => {
    const u = new URL(url);
    return !(origins.includes(u.host) && ["http:", "ws:"].includes(u.protocol)) && !["data:", "blob:"].includes(u.protocol);
  });
  console.log(JSON.stringify(seen));
}
