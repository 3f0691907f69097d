// The executions the caller may see, newest first: filters (proc, status, user, trigger, time
// range) kept in the address so a view can be shared, cursor paging, a duration column, and rows
// kept current by the executionEvents subscription.
import { useEffect, useRef, useState } from "react";
import { call, subscribe } from "../api.js";
import { EVENTS, EXECUTIONS } from "../ops.js";
import { Duration, Empty, ErrorMessage, Loading, STATUSES, StatusBadge, TRIGGERS, Table, Time, go, href } from "../ui.jsx";

const PAGE = 25;

/** The filter the address holds, as an ExecutionFilter. */
export function filterOf(query) {
  const filter = {};
  if (query.get("proc")) filter.proc = query.get("proc");
  if (query.get("status")) filter.status = query.get("status").split(",");
  if (query.get("user")) filter.user = query.get("user");
  if (query.get("trigger")) filter.trigger = query.get("trigger");
  // A time the address holds that is not one is left out rather than breaking the page.
  const time = (name) => {
    const date = new Date(query.get(name) || "");
    return Number.isNaN(date.getTime()) ? null : date.toISOString();
  };
  if (time("from")) filter.createdAfter = time("from");
  if (time("to")) filter.createdBefore = time("to");
  return filter;
}

const matches = (filter, e) =>
  (!filter.proc || e.procName === filter.proc) &&
  (!filter.status || filter.status.includes(e.status)) &&
  (!filter.user || e.user === filter.user) &&
  (!filter.trigger || e.trigger === filter.trigger) &&
  (!filter.createdAfter || Date.parse(e.createdAt) >= Date.parse(filter.createdAfter)) &&
  (!filter.createdBefore || Date.parse(e.createdAt) < Date.parse(filter.createdBefore));

/** A table of executions; `rows` newest first. */
export function ExecutionRows({ rows, showProc = true }) {
  return (
    <Table caption="Executions" headers={["ID", ...(showProc ? ["Proc"] : []), "Status", "Trigger", "User", "Exit", "Created", "Duration"]} id="executions-table">
      {rows.map((e) => (
        <tr key={e.id} data-execution={e.id} data-status={e.status}>
          <td>
            <a href={href("executions", e.id)}>{e.id}</a>
          </td>
          {showProc ? (
            <td>
              <a href={href("procs", e.procName)}>{e.procName}</a>
            </td>
          ) : null}
          <td>
            <StatusBadge status={e.status} />
          </td>
          <td>{e.trigger.toLowerCase()}</td>
          <td>{e.user || "—"}</td>
          <td>{e.exitCode ?? "—"}</td>
          <td>
            <Time value={e.createdAt} />
          </td>
          <td>
            <Duration start={e.startedAt} end={e.finishedAt} status={e.status} />
          </td>
        </tr>
      ))}
    </Table>
  );
}

/** The state after a page arrived: its rows appended (those already shown, live, skipped). */
const withPage = (executions) => (s) => {
  const seen = new Set(s.rows.map((r) => r.id));
  return {
    rows: [...s.rows, ...executions.nodes.filter((n) => !seen.has(n.id))],
    cursor: executions.pageInfo.endCursor,
    more: executions.pageInfo.hasNextPage,
    loading: false,
    error: null,
  };
};

/** Loads pages of executions matching `filter` and keeps them live. */
export function useExecutions(filter, first = PAGE) {
  const key = JSON.stringify(filter);
  const keyRef = useRef(key);
  keyRef.current = key;
  const [state, setState] = useState({ rows: [], cursor: null, more: false, loading: true, error: null });
  useEffect(() => {
    const current = JSON.parse(key);
    let alive = true;
    setState({ rows: [], cursor: null, more: false, loading: true, error: null });
    // Subscribe before loading so no change in between is missed.
    const stop = subscribe(EVENTS, current.proc ? { proc: current.proc } : {}, {
      next: ({ executionEvents: e }) =>
        setState((s) => {
          const at = s.rows.findIndex((r) => r.id === e.id);
          if (at >= 0) return { ...s, rows: s.rows.map((r, i) => (i === at ? { ...r, ...e } : r)) };
          return matches(current, e) ? { ...s, rows: [e, ...s.rows] } : s;
        }),
    });
    call(EXECUTIONS, { first, filter: current }).then(
      ({ executions }) =>
        alive &&
        setState(withPage(executions)),
      (error) => alive && setState((s) => ({ ...s, loading: false, error })),
    );
    return () => {
      alive = false;
      stop();
    };
  }, [key, first]);
  const loadMore = async () => {
    setState((s) => ({ ...s, loading: true }));
    try {
      const { executions } = await call(EXECUTIONS, { first, after: state.cursor, filter: JSON.parse(key) });
      // A page asked for under another filter is dropped.
      if (keyRef.current === key) setState(withPage(executions));
    } catch (error) {
      setState((s) => ({ ...s, loading: false, error }));
    }
  };
  return { ...state, loadMore };
}

/** A text filter applied when it loses focus or Enter is pressed. */
const TextFilter = ({ name, label, query, set }) => (
  <div className="field">
    <label htmlFor={`filter-${name}`}>{label}</label>
    <input
      id={`filter-${name}`}
      key={query.get(name) || ""}
      defaultValue={query.get(name) || ""}
      onBlur={(e) => set(name, e.target.value.trim())}
      onKeyDown={(e) => e.key === "Enter" && set(name, e.currentTarget.value.trim())}
    />
  </div>
);

/** A choice among an enum's values, or any. */
const SelectFilter = ({ name, label, values, query, set }) => (
  <div className="field">
    <label htmlFor={`filter-${name}`}>{label}</label>
    <select id={`filter-${name}`} value={query.get(name) || ""} onChange={(e) => set(name, e.target.value)}>
      <option value="">any</option>
      {values.map((v) => (
        <option key={v} value={v}>
          {v.toLowerCase()}
        </option>
      ))}
    </select>
  </div>
);

export function ExecutionsPage({ query }) {
  const filter = filterOf(query);
  const { rows, more, loading, error, loadMore } = useExecutions(filter);
  const set = (name, value) => {
    const next = new URLSearchParams(query);
    if (value) next.set(name, value);
    else next.delete(name);
    const text = next.toString();
    go(`#/executions${text ? `?${text}` : ""}`);
  };
  const filtered = Object.keys(filter).length > 0;
  return (
    <section aria-labelledby="executions-title">
      <h1 id="executions-title">Executions</h1>
      <form className="filters" aria-label="Filter executions" onSubmit={(e) => e.preventDefault()}>
        <TextFilter name="proc" label="Proc" query={query} set={set} />
        <SelectFilter name="status" label="Status" values={STATUSES} query={query} set={set} />
        <TextFilter name="user" label="User" query={query} set={set} />
        <SelectFilter name="trigger" label="Trigger" values={TRIGGERS} query={query} set={set} />
        <div className="field">
          <label htmlFor="filter-from">Created from</label>
          <input id="filter-from" type="datetime-local" value={query.get("from") || ""} onChange={(e) => set("from", e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="filter-to">Created before</label>
          <input id="filter-to" type="datetime-local" value={query.get("to") || ""} onChange={(e) => set("to", e.target.value)} />
        </div>
        {filtered ? (
          <button type="button" className="secondary" onClick={() => go("#/executions")}>
            Clear filters
          </button>
        ) : null}
      </form>
      <ErrorMessage error={error} />
      {rows.length ? <ExecutionRows rows={rows} /> : loading ? <Loading /> : <Empty>{filtered ? "No execution matches these filters." : "Nothing has run yet. Pick a proc in the catalogue and run it."}</Empty>}
      {more ? (
        <button type="button" className="secondary" id="more" disabled={loading} onClick={loadMore}>
          Load older executions
        </button>
      ) : null}
    </section>
  );
}
