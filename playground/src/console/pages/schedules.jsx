// Schedules: the list (pause/resume, trigger now), one schedule with its run history, and the
// create/edit form with cron help and the next slots from cronPreview as the expression is typed.
import { useEffect, useMemo, useState } from "react";
import { call } from "../api.js";
import {
  CREATE_SCHEDULE, CRON_PREVIEW, DELETE_SCHEDULE, PROC, PROCS, SCHEDULE, SCHEDULES, SET_SCHEDULE_ENABLED,
  TRIGGER_SCHEDULE, UPDATE_SCHEDULE,
} from "../ops.js";
import { ArgFields, argInputs, placeErrors } from "../runform.jsx";
import { CatchUpPolicy, OverlapPolicy } from "../../../generated/gql/graphql.ts";
import { Empty, ErrorMessage, Loading, Pager, StatusBadge, Table, Time, go, href, usePager, useQuery } from "../ui.jsx";

// What each policy means, for the selects; the values themselves come from the schema.
const OVERLAP_TEXT = { FORBID: "skip the slot while a run is still going", ALLOW: "start another run anyway", REPLACE: "cancel the unfinished run and start a new one" };
const CATCH_UP_TEXT = { SKIP: "forget missed slots", LAST: "fire once, for the latest missed slot", ALL: "fire every missed slot (at most 100)" };
const OVERLAP = Object.fromEntries(Object.values(OverlapPolicy).map((v) => [v, OVERLAP_TEXT[v] ?? v]));
const CATCH_UP = Object.fromEntries(Object.values(CatchUpPolicy).map((v) => [v, CATCH_UP_TEXT[v] ?? v]));

function ScheduleActions({ schedule, onChange, setError }) {
  const toggle = async () => {
    try {
      await call(SET_SCHEDULE_ENABLED, { id: schedule.id, enabled: !schedule.enabled });
      onChange();
    } catch (e) {
      setError(e);
    }
  };
  const trigger = async () => {
    try {
      const { triggerSchedule } = await call(TRIGGER_SCHEDULE, { id: schedule.id });
      go(href("executions", triggerSchedule.id));
    } catch (e) {
      setError(e);
    }
  };
  return (
    <span className="nowrap">
      <button type="button" className="secondary small" data-toggle={schedule.id} aria-label={`${schedule.enabled ? "Pause" : "Resume"} schedule ${schedule.id}`} onClick={toggle}>
        {schedule.enabled ? "Pause" : "Resume"}
      </button>{" "}
      <button type="button" className="secondary small" aria-label={`Run now: schedule ${schedule.id}`} onClick={trigger}>
        Run now
      </button>
    </span>
  );
}

export function SchedulesPage() {
  const pager = usePager();
  const { data, error, loading, reload } = useQuery(SCHEDULES, { first: 50, after: pager.after });
  const [actionError, setActionError] = useState(null);
  const page = data?.schedules;
  return (
    <section aria-labelledby="schedules-title">
      <div className="title-row">
        <h1 id="schedules-title">Schedules</h1>
        <a className="button" href="#/schedules/new">
          New schedule
        </a>
      </div>
      <ErrorMessage error={error || actionError} />
      {loading && !data ? <Loading /> : null}
      {page ? (
        page.nodes.length ? (
          <Table caption="Schedules" headers={["ID", "Proc", "Cron", "State", "Next run", "Overlap", "Owner", ""]} id="schedules">
            {page.nodes.map((s) => (
              <tr key={s.id} data-schedule={s.id}>
                <td>
                  <a href={href("schedules", s.id)}>{s.id}</a>
                </td>
                <td>
                  <a href={href("procs", s.procName)}>{s.procName}</a>
                </td>
                <td>
                  <code>{s.cron}</code> <small className="muted">{s.timezone}</small>
                </td>
                <td>{s.enabled ? "active" : "paused"}</td>
                <td>
                  <Time value={s.nextFireAt} />
                </td>
                <td>{s.overlapPolicy.toLowerCase()}</td>
                <td>{s.createdBy || "—"}</td>
                <td>
                  <ScheduleActions schedule={s} onChange={reload} setError={setActionError} />
                </td>
              </tr>
            ))}
          </Table>
        ) : (
          <Empty>No schedules yet. Create one to run a proc on a timetable.</Empty>
        )
      ) : null}
      <Pager pager={pager} pageInfo={page?.pageInfo} />
    </section>
  );
}

export function SchedulePage({ id }) {
  const { data, error, loading, reload } = useQuery(SCHEDULE, { id });
  const [actionError, setActionError] = useState(null);
  // The run history fills in as the schedule fires.
  useEffect(() => {
    const timer = setInterval(reload, 3000);
    return () => clearInterval(timer);
  }, [reload]);
  if (loading && !data) return <Loading />;
  if (error) return <ErrorMessage error={error}>Schedule {id} could not be loaded</ErrorMessage>;
  const s = data?.schedule;
  if (!s) {
    return (
      <section id="not-found">
        <p>
          <a href="#/schedules">← Schedules</a>
        </p>
        <h1>No schedule {id}</h1>
        <Empty>It may have been deleted.</Empty>
      </section>
    );
  }
  const remove = async () => {
    if (!window.confirm(`Delete schedule ${s.id} and its run history?`)) return;
    try {
      await call(DELETE_SCHEDULE, { id: s.id });
      go("#/schedules");
    } catch (e) {
      setActionError(e);
    }
  };
  return (
    <section aria-labelledby="schedule-title">
      <p>
        <a href="#/schedules">← Schedules</a>
      </p>
      <div className="title-row">
        <h1 id="schedule-title">
          Schedule {s.id} · <a href={href("procs", s.procName)}>{s.procName}</a>
        </h1>
        <span>{s.enabled ? "active" : "paused"}</span>
      </div>
      <div className="actions">
        <ScheduleActions schedule={s} onChange={reload} setError={setActionError} />
        <a className="button secondary small" href={`#/schedules/${encodeURIComponent(s.id)}/edit`}>
          Edit
        </a>
        <button type="button" className="danger small" onClick={remove}>
          Delete
        </button>
      </div>
      <ErrorMessage error={actionError} />
      <dl className="facts">
        <dt>Cron</dt>
        <dd>
          <code>{s.cron}</code> in {s.timezone}
        </dd>
        <dt>Next run</dt>
        <dd id="next-fire">
          <Time value={s.nextFireAt} />
        </dd>
        <dt>Arguments</dt>
        <dd>{s.args.length ? s.args.map((a) => <code key={a.name}>{`${a.name}=${a.value}`}</code>) : <span className="muted">defaults</span>}</dd>
        <dt>Overlap</dt>
        <dd>{OVERLAP[s.overlapPolicy] ?? s.overlapPolicy}</dd>
        <dt>Catch-up</dt>
        <dd>{CATCH_UP[s.catchUpPolicy] ?? s.catchUpPolicy}</dd>
        <dt>Notify</dt>
        <dd>
          {[...s.notificationEmails, s.slackWebhookConfigured ? "Slack" : null, s.webhookUrl].filter(Boolean).join(", ") || <span className="muted">nobody</span>}
        </dd>
        <dt>Tags</dt>
        <dd>{s.tags.join(", ") || <span className="muted">none</span>}</dd>
        <dt>Owner</dt>
        <dd>{s.createdBy || "—"}</dd>
      </dl>
      <h2>Runs</h2>
      {s.runs.nodes.length ? (
        <Table caption="Runs of this schedule" headers={["Slot", "Fired", "Outcome", "Execution"]} id="schedule-runs">
          {s.runs.nodes.map((r) => (
            <tr key={`${r.slot}-${r.firedAt}`}>
              <td>
                <Time value={r.slot} />
              </td>
              <td>
                <Time value={r.firedAt} />
              </td>
              <td>
                {r.outcome.toLowerCase()}
                {r.detail ? <small className="muted"> {r.detail}</small> : null}
              </td>
              <td>
                {r.execution ? (
                  <a href={href("executions", r.execution.id)} data-run-execution={r.execution.id}>
                    {r.execution.id} <StatusBadge status={r.execution.status} />
                  </a>
                ) : (
                  "—"
                )}
              </td>
            </tr>
          ))}
        </Table>
      ) : (
        <Empty>It has not fired yet.</Empty>
      )}
    </section>
  );
}

/** A policy, each value described in words. */
const PolicySelect = ({ id, label, choices, value, onChange }) => (
  <div className="field">
    <label htmlFor={id}>{label}</label>
    <select id={id} value={value} onChange={onChange}>
      {Object.entries(choices).map(([choice, text]) => (
        <option key={choice} value={choice}>
          {text}
        </option>
      ))}
    </select>
  </div>
);

/** The next slots of `cron` in `timezone`, asked as the user types (debounced). */
function usePreview(cron, timezone) {
  const [state, setState] = useState({ times: [], error: null });
  useEffect(() => {
    if (!cron.trim()) {
      setState({ times: [], error: null });
      return undefined;
    }
    let current = true;
    const timer = setTimeout(() => {
      call(CRON_PREVIEW, { cron: cron.trim(), timezone: timezone.trim() || null }).then(
        ({ cronPreview }) => current && setState({ times: cronPreview, error: null }),
        (error) => current && setState({ times: [], error }),
      );
    }, 250);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [cron, timezone]);
  return state;
}

const TIMEZONES = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];

export function ScheduleForm({ id, query }) {
  const editing = Boolean(id);
  const existing = useQuery(SCHEDULE, { id: id ?? "" }, { skip: !editing });
  const procs = useQuery(PROCS, {});
  const [form, setForm] = useState({
    proc: query.get("proc") || "", cron: "", timezone: "UTC", overlapPolicy: OverlapPolicy.Forbid, catchUpPolicy: CatchUpPolicy.Skip,
    notificationEmails: "", webhookUrl: "", slackWebhookUrl: "", tags: "", group: "", enabled: true,
  });
  const [args, setArgs] = useState({});
  const [invalid, setInvalid] = useState({});
  const [fieldErrors, setFieldErrors] = useState({});
  const [message, setMessage] = useState(null);
  const loaded = existing.data?.schedule;
  useEffect(() => {
    if (!loaded) return;
    setForm({
      proc: loaded.procName, cron: loaded.cron, timezone: loaded.timezone, overlapPolicy: loaded.overlapPolicy,
      catchUpPolicy: loaded.catchUpPolicy, notificationEmails: loaded.notificationEmails.join(", "),
      webhookUrl: loaded.webhookUrl ?? "", slackWebhookUrl: "", tags: loaded.tags.join(", "), group: loaded.group ?? "",
      enabled: loaded.enabled,
    });
    setArgs(Object.fromEntries(loaded.args.map((a) => [a.name, a.value])));
  }, [loaded]);
  const proc = useQuery(PROC, { name: form.proc }, { skip: !form.proc });
  const preview = usePreview(form.cron, form.timezone);
  const set = (name) => (event) => setForm((f) => ({ ...f, [name]: event.target.type === "checkbox" ? event.target.checked : event.target.value }));
  const list = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);
  const specs = useMemo(() => proc.data?.proc?.args ?? [], [proc.data]);

  const submit = async (event) => {
    event.preventDefault();
    setInvalid({});
    setFieldErrors({});
    setMessage(null);
    const input = {
      proc: form.proc, args: argInputs(args), cron: form.cron.trim(), timezone: form.timezone.trim() || null,
      overlapPolicy: form.overlapPolicy, catchUpPolicy: form.catchUpPolicy, notificationEmails: list(form.notificationEmails),
      // On edit an empty field clears the stored value (null would keep it).
      webhookUrl: form.webhookUrl.trim() || (editing ? "" : null), tags: list(form.tags),
      group: form.group.trim() || (editing ? "" : null), enabled: form.enabled,
    };
    // The Slack URL is write-only: left empty on edit, the stored one stays.
    if (form.slackWebhookUrl.trim()) input.slackWebhookUrl = form.slackWebhookUrl.trim();
    try {
      const result = editing ? await call(UPDATE_SCHEDULE, { id, input }) : await call(CREATE_SCHEDULE, { input });
      go(href("schedules", editing ? id : result.createSchedule.id));
    } catch (error) {
      const placed = placeErrors(error);
      setInvalid(placed.invalid);
      const field = (error.field || "").replace(/^input\./, "");
      if (field && !placed.invalid[field] && field in form) {
        setFieldErrors({ [field]: error.message.replace(/^[^:]+:\s*/, "") });
      } else setMessage(placed.rest || null);
    }
  };
  const fieldError = (name) =>
    fieldErrors[name] ? (
      <small className="invalid" role="alert" data-invalid={name}>
        {fieldErrors[name]}
      </small>
    ) : null;

  if (editing && existing.loading && !loaded) return <Loading />;
  return (
    <section aria-labelledby="schedule-form-title">
      <p>
        <a href={editing ? href("schedules", id) : "#/schedules"}>← {editing ? `Schedule ${id}` : "Schedules"}</a>
      </p>
      <h1 id="schedule-form-title">{editing ? `Edit schedule ${id}` : "New schedule"}</h1>
      <ErrorMessage error={existing.error || procs.error} />
      <form className="stack schedule-form" onSubmit={submit} aria-label={editing ? "Edit schedule" : "New schedule"}>
        <div className="field">
          <label htmlFor="schedule-proc">Proc</label>
          <select id="schedule-proc" value={form.proc} onChange={set("proc")} required disabled={editing}>
            <option value="">choose a proc…</option>
            {(procs.data?.procs ?? []).map((p) => (
              <option key={p.name} value={p.name}>
                {p.name}
              </option>
            ))}
          </select>
          {fieldError("proc")}
        </div>
        {form.proc ? (
          <fieldset>
            <legend>Arguments</legend>
            <ArgFields idPrefix="schedule-arg" specs={specs} values={args} setValue={(n, v) => setArgs((a) => ({ ...a, [n]: v }))} invalid={invalid} />
          </fieldset>
        ) : null}
        <div className="field">
          <label htmlFor="schedule-cron">Cron expression</label>
          <input id="schedule-cron" className="mono" value={form.cron} onChange={set("cron")} required placeholder="0 9 * * 1-5" aria-describedby="cron-help" autoComplete="off" spellCheck="false" />
          <small id="cron-help" className="muted">
            5 fields (minute hour day-of-month month weekday), 6 with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly. Example: <code>0 9 * * 1-5</code> is 09:00 on weekdays.
          </small>
          {fieldError("cron")}
        </div>
        <div className="preview" id="cron-preview" aria-live="polite">
          {preview.error ? (
            <small className="invalid">{preview.error.message.replace(/^[^:]+:\s*/, "")}</small>
          ) : preview.times.length ? (
            <>
              <strong>Next runs:</strong>
              <ol>
                {preview.times.map((t) => (
                  <li key={t}>
                    <time dateTime={t}>{new Date(t).toLocaleString()}</time>
                  </li>
                ))}
              </ol>
            </>
          ) : (
            <small className="muted">Type an expression to see its next runs.</small>
          )}
        </div>
        <div className="field">
          <label htmlFor="schedule-timezone">Time zone</label>
          <input id="schedule-timezone" list="timezones" value={form.timezone} onChange={set("timezone")} autoComplete="off" />
          <datalist id="timezones">
            {TIMEZONES.map((z) => (
              <option key={z} value={z} />
            ))}
          </datalist>
          {fieldError("timezone")}
        </div>
        <PolicySelect id="schedule-overlap" label="When a run is still going at the next slot" choices={OVERLAP} value={form.overlapPolicy} onChange={set("overlapPolicy")} />
        <PolicySelect id="schedule-catchup" label="Slots missed while no scheduler ran" choices={CATCH_UP} value={form.catchUpPolicy} onChange={set("catchUpPolicy")} />
        <div className="field">
          <label htmlFor="schedule-emails">Notify e-mails (comma-separated)</label>
          <input id="schedule-emails" value={form.notificationEmails} onChange={set("notificationEmails")} />
          {fieldError("notificationEmails")}
        </div>
        <div className="field">
          <label htmlFor="schedule-webhook">Webhook URL (signed JSON outcome)</label>
          <input id="schedule-webhook" type="url" value={form.webhookUrl} onChange={set("webhookUrl")} />
          {fieldError("webhookUrl")}
        </div>
        <div className="field">
          <label htmlFor="schedule-slack">Slack webhook URL {loaded?.slackWebhookConfigured ? "(one is set; leave empty to keep it)" : ""}</label>
          <input id="schedule-slack" type="password" autoComplete="off" value={form.slackWebhookUrl} onChange={set("slackWebhookUrl")} />
          {fieldError("slackWebhookUrl")}
        </div>
        <div className="field">
          <label htmlFor="schedule-tags">Tags (comma-separated)</label>
          <input id="schedule-tags" value={form.tags} onChange={set("tags")} />
          {fieldError("tags")}
        </div>
        <div className="field">
          <label htmlFor="schedule-group">Group</label>
          <input id="schedule-group" value={form.group} onChange={set("group")} />
          {fieldError("group")}
        </div>
        <label className="inline">
          <input type="checkbox" checked={form.enabled} onChange={set("enabled")} /> Active
        </label>
        {message ? (
          <p className="error" role="alert">
            {message}
          </p>
        ) : null}
        <div className="actions">
          <button type="submit" id="save-schedule">
            {editing ? "Save" : "Create schedule"}
          </button>
        </div>
      </form>
    </section>
  );
}
