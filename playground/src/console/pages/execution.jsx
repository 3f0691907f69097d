// One execution: what ran, with which arguments, who or what started it, when, how it ended,
// its notifications, and its log streamed live (resumed after the last line shown whenever the
// connection comes back). Cancel only while it can still stop; rerun with the same arguments.
import { useEffect, useRef, useState } from "react";
import { call, subscribe } from "../api.js";
import { CANCEL, EXECUTE, EXECUTION, LOGS, STATUS } from "../ops.js";
import { LogView } from "../logview.jsx";
import { Duration, Empty, ErrorMessage, FINAL, Loading, StatusBadge, Time, go, href, useQuery } from "../ui.jsx";

export function ExecutionPage({ id }) {
  const { data, error, loading } = useQuery(EXECUTION, { id });
  const [live, setLive] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [busy, setBusy] = useState(false);
  const lines = useRef([]);
  const [count, setCount] = useState(0);
  const [streamState, setStreamState] = useState("following");

  useEffect(() => {
    lines.current = [];
    setCount(0);
    setLive(null);
    setStreamState("following live");
    const variables = { id, afterSeq: 0 };
    let stopped = false;
    const stops = [];
    let retry = null;
    // A stream the server ended with an error (rights re-checked, a restart mid-request) is
    // followed again after a pause, from the last line shown.
    const FINAL_ERRORS = new Set(["NOT_FOUND", "FORBIDDEN", "BAD_USER_INPUT"]);
    const again = (error) => {
      if (stopped || retry !== null || FINAL_ERRORS.has(error?.code)) return;
      retry = setTimeout(() => {
        retry = null;
        stops.splice(0).forEach((stop) => stop());
        follow();
      }, 2000);
    };
    const follow = () => {
      stops.push(subscribe(STATUS, { id }, { next: (d) => setLive(d.executionStatus), error: again }));
      stops.push(
        subscribe(LOGS, variables, {
          next: (d) => {
            let added = false;
            for (const entry of d.executionLogBatches.lines) {
              // After a reconnect the server resumes after `afterSeq`; never show a line twice.
              if (entry.seq <= variables.afterSeq) continue;
              variables.afterSeq = entry.seq;
              lines.current.push(entry);
              added = true;
            }
            if (added) setCount(lines.current.length);
            setStreamState("following live");
          },
          error: (e) => {
            setStreamState(FINAL_ERRORS.has(e.code) ? e.message : `${e.message}; trying again`);
            again(e);
          },
          complete: () => setStreamState("complete: the run has ended"),
        }),
      );
    };
    follow();
    return () => {
      stopped = true;
      clearTimeout(retry);
      stops.forEach((stop) => stop());
    };
  }, [id]);

  if (loading && !data) return <Loading />;
  if (error) {
    return (
      <section>
        <p>
          <a href="#/executions">← Executions</a>
        </p>
        <ErrorMessage error={error}>Execution {id} could not be loaded</ErrorMessage>
      </section>
    );
  }
  const execution = data?.execution;
  if (!execution) {
    return (
      <section className="not-found" id="not-found">
        <p>
          <a href="#/executions">← Executions</a>
        </p>
        <h1>No execution {id}</h1>
        <Empty>There is no execution with this id. It may have been typed wrong, or belong to another server.</Empty>
      </section>
    );
  }
  const e = { ...execution, ...(live ?? {}) };
  const finished = FINAL.has(e.status);

  const cancel = async () => {
    setBusy(true);
    setActionError(null);
    try {
      const { cancelExecution } = await call(CANCEL, { id });
      setLive((l) => ({ ...(l ?? {}), ...cancelExecution }));
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy(false);
    }
  };
  const rerun = async () => {
    setBusy(true);
    setActionError(null);
    try {
      const { execute } = await call(EXECUTE, { proc: e.procName, args: e.args.map(({ name, value }) => ({ name, value })) });
      go(href("executions", execute.id));
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy(false);
    }
  };
  const download = () => {
    const text = lines.current.map((l) => l.line).join("\n");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text ? `${text}\n` : ""], { type: "text/plain" }));
    link.download = `execution-${id}.log`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  };

  return (
    <section aria-labelledby="execution-title">
      <p>
        <a href="#/executions">← Executions</a>
      </p>
      <div className="title-row">
        <h1 id="execution-title">
          Execution <span className="mono">{e.id}</span> · <a href={href("procs", e.procName)}>{e.procName}</a>
        </h1>
        <span id="status">
          <StatusBadge status={e.status} />
        </span>
      </div>
      <div className="actions">
        {!finished ? (
          <button type="button" className="danger" id="cancel" disabled={busy} onClick={cancel}>
            Cancel run
          </button>
        ) : null}
        <button type="button" className="secondary" id="rerun" disabled={busy} onClick={rerun}>
          Rerun with the same arguments
        </button>
        <button type="button" className="secondary" id="download" onClick={download}>
          Download log
        </button>
      </div>
      <ErrorMessage error={actionError} />
      <dl className="facts">
        <dt>Arguments</dt>
        <dd id="args">
          {e.args.length ? (
            e.args.map((a) => (
              <code key={a.name}>
                {a.name}={a.value}
              </code>
            ))
          ) : (
            <span className="muted">none</span>
          )}
        </dd>
        <dt>Triggered</dt>
        <dd>
          {e.trigger.toLowerCase()} by {e.user || "—"}
          {e.scheduleId ? (
            <>
              {" "}
              (<a href={href("schedules", e.scheduleId)}>schedule {e.scheduleId}</a>)
            </>
          ) : null}
        </dd>
        <dt>Created</dt>
        <dd>
          <Time value={e.createdAt} />
        </dd>
        <dt>Started</dt>
        <dd>
          <Time value={e.startedAt} />
        </dd>
        <dt>Finished</dt>
        <dd>
          <Time value={e.finishedAt} />
        </dd>
        <dt>Duration</dt>
        <dd id="duration">
          <Duration start={e.startedAt} end={e.finishedAt} status={e.status} />
        </dd>
        <dt>Exit code</dt>
        <dd id="exit-code">{e.exitCode ?? "—"}</dd>
        {e.reason ? (
          <>
            <dt>Reason</dt>
            <dd id="reason">{e.reason}</dd>
          </>
        ) : null}
        <dt>Attempts</dt>
        <dd>{e.attempts}</dd>
        <dt>Proc version</dt>
        <dd>{e.procVersion ?? "—"}</dd>
        {e.logLinesLost ? (
          <>
            <dt>Lines lost</dt>
            <dd className="error">{e.logLinesLost}</dd>
          </>
        ) : null}
        <dt>Notifications</dt>
        <dd>
          {e.notifications.length ? (
            <ul className="plain">
              {e.notifications.map((n, i) => (
                <li key={i}>
                  {n.channel} → {n.target}: {n.state.toLowerCase()} ({n.attempts} attempts)
                  {n.lastError ? <span className="error"> {n.lastError}</span> : null}
                </li>
              ))}
            </ul>
          ) : (
            <span className="muted">none</span>
          )}
        </dd>
      </dl>
      <h2>Log</h2>
      <LogView lines={lines.current} count={count} streamState={streamState} />
    </section>
  );
}
