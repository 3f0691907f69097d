// Drives Debian's Chromium through the playground of a running proctord:
//   node test/browser.mjs <base URL, e.g. http://127.0.0.1:5001> <screenshot directory>
// /playground: GraphiQL loads, runs a query, shows the result (the console's journeys are in
// test/console.mjs).
// Every request the pages make is recorded; the run fails if one leaves the server's origin.
// Prints one JSON line with what it saw; exits non-zero on any failure.
import { launchChromium } from "./chromium.mjs";
import { mkdirSync } from "node:fs";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node test/browser.mjs <base URL> <screenshot directory>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const origin = new URL(base);
const requests = [];
const timeout = 30_000;

const browser = await launchChromium();
const result = { requests, graphiql: null };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.on("request", (request) => requests.push(request.url()));
  const page = await context.newPage();
  page.on("websocket", (socket) => requests.push(socket.url()));
  const consoleErrors = [];
  page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));
  page.on("pageerror", (error) => consoleErrors.push(String(error)));

  // GraphiQL: replace the query, run it, read the result.
  await page.goto(`${base}/playground`, { waitUntil: "load" });
  const editor = page.locator(".graphiql-query-editor .CodeMirror").first();
  await editor.waitFor({ timeout });
  await editor.click();
  await page.evaluate(() => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(
      "query Probe { serverInfo { version executor } procs { name } }");
  });
  // GraphiQL picks up the new operation name a moment after the edit; run until it answers.
  const response = page.locator(".graphiql-response .CodeMirror");
  const deadline = Date.now() + timeout;
  let shown = "";
  while (!shown.includes("countdown")) {
    if (Date.now() > deadline) throw new Error(`GraphiQL never showed the result: ${shown}`);
    await page.locator(".graphiql-execute-button").click();
    await page.waitForTimeout(500);
    shown = await response.evaluate((node) => node.CodeMirror.getValue());
  }
  result.graphiql = JSON.parse(shown);
  await page.screenshot({ path: `${shots}/playground-graphiql.png` });

  result.consoleErrors = consoleErrors;
} finally {
  await browser.close();
}

const outside = requests.filter((url) => {
  if (url.startsWith("data:") || url.startsWith("blob:")) return false;
  try {
    return new URL(url).host !== origin.host;
  } catch {
    return true;
  }
});
result.outside = outside;
console.log(JSON.stringify(result));
process.exit(outside.length === 0 ? 0 : 1);
