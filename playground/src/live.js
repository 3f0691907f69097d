// The live view: procs with run forms built from their typed arguments, an executions table kept
// current by the executionEvents subscription, an execution page streaming its log
// (executionLogBatches, resumed from the last line after a reconnect) and status, and schedules with
// pause and resume. Plain DOM code; the only library is graphql-ws.
import { request, subscribe } from "./client.js";
// Typed from schema/schema.graphql (generated into generated/gql by build.mjs): an operation that no
// longer fits the schema fails the build, not the page.
import { graphql } from "../generated/gql/index.ts";

const app = document.getElementById("app");
const FINAL = new Set(["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "CREATION_FAILED", "LOST"]);
let cleanups = [];

// ---- credentials -------------------------------------------------------------------------
const stored = JSON.parse(localStorage.getItem("proctor.credentials") || "{}");
const emailInput = document.getElementById("email");
const tokenInput = document.getElementById("token");
emailInput.value = stored.email || "";
tokenInput.value = stored.token || "";
function headers() {
  const { email, token } = JSON.parse(localStorage.getItem("proctor.credentials") || "{}");
  const result = {};
  if (email) result["Email-Id"] = email;
  if (token) result["Access-Token"] = token;
  return result;
}
document.getElementById("credentials").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(
    "proctor.credentials",
    JSON.stringify({ email: emailInput.value.trim(), token: tokenInput.value.trim() }),
  );
  route();
});

// ---- helpers -----------------------------------------------------------------------------
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
const statusBadge = (status) => el("span", { class: `status ${status}`, "data-status": status }, status);
const when = (time) => (time ? new Date(time).toLocaleString() : "");
const errorText = (response) => (response.errors || []).map((e) => e.message).join("; ");
async function call(query, variables) {
  const response = await request(query, variables, headers());
  if (response.errors?.length) throw Object.assign(new Error(errorText(response)), { errors: response.errors });
  return response.data;
}

// ---- home: procs, executions, schedules --------------------------------------------------
const PROCS = graphql(`query LiveProcs { procs { name description args { name description type required default pattern values } } }`);
const EXECUTIONS = graphql(`query LiveExecutions($first: Int) { executions(first: $first) { nodes {
  id procName status trigger user exitCode createdAt finishedAt } } }`);
const EVENTS = graphql(`subscription LiveEvents { executionEvents { id procName status trigger user exitCode createdAt finishedAt } }`);
const SCHEDULES = graphql(`query LiveSchedules { schedules(first: 50) { nodes { id procName cron timezone enabled nextFireAt } } }`);
const SET_ENABLED = graphql(`mutation LiveSetEnabled($id: ID!, $enabled: Boolean!) { setScheduleEnabled(id: $id, enabled: $enabled) {
  id procName cron timezone enabled nextFireAt } }`);
const VALIDATE = graphql(`query LiveValidate($proc: String!, $args: [ArgInput!]) { validateArgs(proc: $proc, args: $args) { name } }`);
const EXECUTE = graphql(`mutation LiveExecute($proc: String!, $args: [ArgInput!]) { execute(proc: $proc, args: $args) { id } }`);

function argInput(proc, arg) {
  const id = `arg-${proc.name}-${arg.name}`;
  let input;
  if (arg.type === "ENUM") {
    input = el("select", { id, name: arg.name },
      arg.required ? null : el("option", { value: "" }, ""),
      arg.values.map((v) => el("option", { value: v, selected: v === arg.default }, v)));
  } else if (arg.type === "BOOL") {
    input = el("select", { id, name: arg.name },
      el("option", { value: "" }, arg.default ? `(default ${arg.default})` : ""),
      el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"));
  } else {
    // The server checks values (required, type, pattern, allowed values); its messages are shown
    // next to the field, so the rules live in one place.
    input = el("input", {
      id, name: arg.name, type: arg.type === "INT" ? "number" : "text", placeholder: arg.default ?? "",
    });
  }
  const hint = [arg.type.toLowerCase(), arg.required ? "required" : null, arg.default ? `default ${arg.default}` : null]
    .filter(Boolean).join(", ");
  return el("label", { class: "field" },
    el("span", {}, arg.name, " ", el("small", {}, `(${hint})`)),
    input,
    arg.description ? el("small", {}, arg.description) : null,
    el("small", { class: "invalid", "data-invalid": arg.name }));
}

function procCard(proc) {
  const message = el("div", { class: "error" });
  const form = el("form", { "data-proc": proc.name }, proc.args.map((arg) => argInput(proc, arg)),
    el("button", { type: "submit" }, "Run"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll("[data-invalid]").forEach((n) => (n.textContent = ""));
    message.textContent = "";
    const args = [...new FormData(form).entries()]
      .filter(([, value]) => value !== "")
      .map(([name, value]) => ({ name, value: String(value) }));
    try {
      await call(VALIDATE, { proc: proc.name, args });
      const { execute } = await call(EXECUTE, { proc: proc.name, args });
      location.hash = `#/executions/${execute.id}`;
    } catch (error) {
      let placed = false;
      for (const e of error.errors || []) {
        const field = e.extensions?.field || "";
        const name = field.replace(/^args\./, "").replace(/^input\./, "");
        const slot = form.querySelector(`[data-invalid="${CSS.escape(name)}"]`);
        if (slot) { slot.textContent = e.message.replace(`${field}: `, ""); placed = true; }
      }
      if (!placed) message.textContent = error.message;
    }
  });
  return el("div", { class: "proc", "data-proc-card": proc.name },
    el("h3", {}, proc.name), el("p", {}, proc.description || ""), form);
}

function executionRow(e) {
  return el("tr", { class: "clickable", "data-execution": e.id, onclick: () => (location.hash = `#/executions/${e.id}`) },
    el("td", {}, e.id), el("td", {}, e.procName), el("td", {}, statusBadge(e.status)),
    el("td", {}, e.trigger), el("td", {}, e.user || ""), el("td", {}, e.exitCode ?? ""),
    el("td", {}, when(e.createdAt)));
}

function scheduleRow(s, body) {
  const button = el("button", { class: "secondary", "data-toggle": s.id }, s.enabled ? "Pause" : "Resume");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const { setScheduleEnabled } = await call(SET_ENABLED, { id: s.id, enabled: !s.enabled });
      body.replaceChild(scheduleRow(setScheduleEnabled, body), row);
    } catch (error) {
      button.disabled = false;
      alert(error.message);
    }
  });
  const row = el("tr", { "data-schedule": s.id },
    el("td", {}, s.id), el("td", {}, s.procName), el("td", {}, `${s.cron} (${s.timezone})`),
    el("td", {}, s.enabled ? "enabled" : "paused"), el("td", {}, when(s.nextFireAt)), el("td", {}, button));
  return row;
}

async function home() {
  const procsSection = el("section", {}, el("h2", {}, "Procs"), el("div", { class: "procs" }, "Loading…"));
  const executionsBody = el("tbody", { id: "executions" });
  const executionsSection = el("section", {}, el("h2", {}, "Executions ", el("small", { class: "muted" }, "(live)")),
    el("table", {}, el("thead", {}, el("tr", {}, ["ID", "Proc", "Status", "Trigger", "User", "Exit", "Created"].map((h) => el("th", {}, h)))),
      executionsBody));
  const schedulesBody = el("tbody", { id: "schedules" });
  const schedulesSection = el("section", {}, el("h2", {}, "Schedules"),
    el("table", {}, el("thead", {}, el("tr", {}, ["ID", "Proc", "Cron", "State", "Next run", ""].map((h) => el("th", {}, h)))),
      schedulesBody));
  app.replaceChildren(procsSection, executionsSection, schedulesSection);

  const rows = new Map();
  const upsert = (e) => {
    const row = executionRow(e);
    const existing = rows.get(e.id);
    if (existing) executionsBody.replaceChild(row, existing);
    else executionsBody.prepend(row);
    rows.set(e.id, row);
  };
  // Subscribe first, then load, so no change between the two is missed.
  cleanups.push(subscribe(EVENTS, {}, headers(), ({ data }) => data && upsert(data.executionEvents)));
  try {
    const [{ procs }, { executions }, { schedules }] = await Promise.all([
      call(PROCS), call(EXECUTIONS, { first: 30 }), call(SCHEDULES),
    ]);
    procsSection.lastChild.replaceChildren(...(procs.length ? procs.map(procCard) : [el("p", { class: "muted" }, "No procs you may run.")]));
    for (const e of [...executions.nodes].reverse()) if (!rows.has(e.id)) upsert(e);
    schedulesBody.replaceChildren(...schedules.nodes.map((s) => scheduleRow(s, schedulesBody)));
  } catch (error) {
    procsSection.lastChild.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

// ---- one execution -----------------------------------------------------------------------
const EXECUTION = graphql(`query LiveExecution($id: ID!) { execution(id: $id) { id procName status exitCode reason user createdAt finishedAt args { name value } } }`);
const STATUS = graphql(`subscription LiveStatus($id: ID!) { executionStatus(id: $id) { id procName status exitCode reason finishedAt } }`);
const LOGS = graphql(`subscription LiveLogs($id: ID!, $afterSeq: Int) { executionLogBatches(id: $id, afterSeq: $afterSeq, maxDelayMs: 50) { lastSeq lines { seq stream line } } }`);
const CANCEL = graphql(`mutation LiveCancel($id: ID!) { cancelExecution(id: $id) { id status } }`);

async function executionPage(id) {
  const status = el("span", { id: "status" }, "…");
  const detail = el("span", { class: "muted", id: "detail" });
  const logs = el("div", { class: "logs", id: "logs" });
  const cancel = el("button", { class: "secondary", id: "cancel" }, "Cancel");
  const pause = el("button", { class: "secondary", id: "pause" }, "Pause");
  const download = el("button", { class: "secondary", id: "download" }, "Download");
  const streamState = el("span", { class: "muted", id: "stream-state" }, "streaming");
  app.replaceChildren(el("section", {},
    el("h2", {}, `Execution ${id} `, el("span", { id: "proc" })),
    el("div", { class: "toolbar" }, status, detail, cancel, pause, download, streamState),
    logs));

  const lines = [];
  const buffered = [];
  let paused = false;
  const variables = { id, afterSeq: 0 };
  const show = (entry) => {
    const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
    logs.append(el("div", { class: `line ${entry.stream}`, "data-seq": entry.seq }, entry.line));
    if (atBottom) logs.scrollTop = logs.scrollHeight;
  };
  const setStatus = (e) => {
    status.replaceChildren(statusBadge(e.status));
    document.getElementById("proc").textContent = e.procName ? `· ${e.procName}` : "";
    detail.textContent = [e.exitCode !== null && e.exitCode !== undefined ? `exit ${e.exitCode}` : null, e.reason]
      .filter(Boolean).join(" · ");
    cancel.disabled = FINAL.has(e.status);
  };
  try {
    setStatus((await call(EXECUTION, { id })).execution ?? { status: "NOT FOUND" });
  } catch (error) {
    detail.textContent = error.message;
  }
  cleanups.push(subscribe(STATUS, { id }, headers(), ({ data }) => data && setStatus(data.executionStatus)));
  // `variables` is sent again when graphql-ws resubscribes after a reconnect; keeping afterSeq at
  // the last line shown makes the server resume right after it.
  cleanups.push(subscribe(LOGS, variables, headers(), ({ data, errors }) => {
    if (errors?.length) { streamState.textContent = errorText({ errors }); return; }
    for (const entry of data.executionLogBatches.lines) {
      if (entry.seq <= variables.afterSeq) continue;
      variables.afterSeq = entry.seq;
      lines.push(entry);
      if (paused) buffered.push(entry); else show(entry);
    }
  }, (error) => { streamState.textContent = error ? "stream failed; reload to retry" : "complete"; }));

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try { setStatus((await call(CANCEL, { id })).cancelExecution); } catch (error) { detail.textContent = error.message; }
  });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) buffered.splice(0).forEach(show);
  });
  download.addEventListener("click", () => {
    const blob = new Blob([lines.map((l) => l.line).join("\n") + "\n"], { type: "text/plain" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `execution-${id}.log` });
    link.click();
    URL.revokeObjectURL(link.href);
  });
}

// ---- routing -----------------------------------------------------------------------------
function route() {
  cleanups.splice(0).forEach((stop) => stop());
  const match = location.hash.match(/^#\/executions\/(\d+)/);
  if (match) executionPage(match[1]); else home();
}
window.addEventListener("hashchange", route);
route();
