// The console half of the README's five-minute tour, in Debian's Chromium, against a proctord on
// its embedded default (authentication off). tests/it/tour.rs starts the server, runs the tour's
// CLI commands and reads what this prints:
//   node test/tour.mjs <base URL> <screenshot directory>
// 1. Opens the console, clicks say-hello, types a name, presses "Run say-hello" and waits for the
//    run's page to show the greeting and SUCCEEDED; prints `CONSOLE_RUN <json>`.
// 2. Waits for `WATCH <id>` on stdin (a run the CLI started), opens that execution's page while
//    it runs and records the state when its first line appeared and the lines at the end; prints
//    `WATCHED <json>`.
// Prints `FAILED <message>` and exits 1 when a step fails (a screenshot is kept).
import { launchChromium } from "./chromium.mjs";
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node test/tour.mjs <base URL> <screenshot directory>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const timeout = 30_000;
const stdin = createInterface({ input: process.stdin });
const nextInput = () => new Promise((resolve) => stdin.once("line", resolve));
const outside = [];
const origin = new URL(base).host;
const record = (url) => {
  if (url.startsWith("data:") || url.startsWith("blob:")) return;
  try {
    if (new URL(url).host !== origin) outside.push(url);
  } catch {
    outside.push(url);
  }
};

const browser = await launchChromium();
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
context.on("request", (request) => record(request.url()));
const page = await context.newPage();
page.on("websocket", (socket) => record(socket.url()));
page.setDefaultTimeout(timeout);

const statusOf = () => page.locator("#status [data-status]").getAttribute("data-status");
const lineTexts = () => page.locator("#logs .line .text").allTextContents();
const executionId = () => (page.url().match(/#\/executions\/(\d+)/) || [])[1];

let exitCode = 0;
try {
  // 1. Open the console, click say-hello, type a name, press "Run say-hello".
  await page.goto(`${base}/`);
  await page.locator('#procs [data-proc="say-hello"] a').click();
  await page.locator("#run-say-hello-NAME").fill("grace");
  await page.getByRole("button", { name: "Run say-hello" }).click();
  await page.waitForFunction(() => /^#\/executions\/\d+/.test(location.hash));
  await page.locator('#status [data-status="SUCCEEDED"]').waitFor();
  await page.waitForFunction(() => document.querySelectorAll("#logs .line").length >= 1);
  await page.screenshot({ path: `${shots}/tour-console-run.png` });
  console.log(`CONSOLE_RUN ${JSON.stringify({ id: executionId(), status: await statusOf(), lines: await lineTexts() })}`);

  // 3. Open the execution the CLI started while it counts down.
  const watch = (await nextInput()).match(/^WATCH (\d+)$/);
  if (!watch) throw new Error("expected WATCH <id> on stdin");
  await page.goto(`${base}/#/executions/${watch[1]}`);
  // The page shows this execution (not the previous one) before anything is read off it.
  await page.locator("#execution-title .mono", { hasText: new RegExp(`^${watch[1]}$`) }).waitFor();
  await page.locator("#logs .line").first().waitFor();
  const statusAtFirstLine = await statusOf();
  const linesAtFirstLine = (await lineTexts()).length;
  await page.locator('#status [data-status="SUCCEEDED"]').waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll("#logs .line .text")].some((l) => l.textContent === "liftoff"));
  await page.screenshot({ path: `${shots}/tour-console-watch.png` });
  console.log(`WATCHED ${JSON.stringify({ statusAtFirstLine, linesAtFirstLine, lines: await lineTexts(), outside })}`);
} catch (error) {
  exitCode = 1;
  await page.screenshot({ path: `${shots}/tour-failure.png` }).catch(() => {});
  console.log(`FAILED ${String(error).split("\n")[0]} (at ${page.url()})`);
} finally {
  stdin.close();
  await browser.close();
}
process.exit(exitCode);
