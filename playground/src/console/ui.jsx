// Small pieces every page uses: navigation by hash, data loading with readable errors, status
// badges, times and durations. Log lines and every other server text are rendered as React text
// nodes, never as HTML.
import { useCallback, useEffect, useState } from "react";
import { call } from "./api.js";
import { ExecutionStatus, Trigger } from "../../generated/gql/graphql.ts";

/** Runs that reached one of these states will not change again. */
export const FINAL = new Set(["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "CREATION_FAILED", "LOST"]);
// The enums' values come from the schema (generated), so they cannot drift from the server's.
export const STATUSES = Object.values(ExecutionStatus);
export const TRIGGERS = Object.values(Trigger);

// ---- routing ---------------------------------------------------------------------------------
/** The current hash route as `{ path: ["executions", "12"], query: URLSearchParams }`. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const decode = (part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  return { path: path.split("/").filter(Boolean).map(decode), query: new URLSearchParams(query) };
}
export function useRoute() {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const update = () => setRoute(parseHash());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}
export const href = (...parts) => `#/${parts.map((p) => encodeURIComponent(p)).join("/")}`;
export const go = (target) => {
  location.hash = target.replace(/^#/, "");
};

// ---- data ------------------------------------------------------------------------------------
/**
 * Loads `query` with `variables` (reloading when they change); `reload()` loads again.
 * `{ data, error, loading }`; `error` is an ApiError with a readable message.
 */
export function useQuery(query, variables = {}, { skip = false } = {}) {
  const key = JSON.stringify(variables);
  const [state, setState] = useState({ data: null, error: null, loading: !skip });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (skip) return undefined;
    let current = true;
    setState((s) => ({ ...s, loading: true }));
    call(query, JSON.parse(key)).then(
      (data) => current && setState({ data, error: null, loading: false }),
      (error) => current && setState({ data: null, error, loading: false }),
    );
    return () => {
      current = false;
    };
  }, [query, key, tick, skip]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** Re-renders every `ms` while `active` (running durations tick). */
export function useTicker(active, ms = 1000) {
  const [, setNow] = useState(0);
  useEffect(() => {
    if (!active) return undefined;
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [active, ms]);
}

// ---- display ---------------------------------------------------------------------------------
export const StatusBadge = ({ status }) => (
  <span className={`status status-${status}`} data-status={status}>
    {status.replace("_", " ")}
  </span>
);

export function Time({ value }) {
  if (!value) return <span className="muted">—</span>;
  const date = new Date(value);
  return (
    <time dateTime={value} title={date.toISOString()}>
      {date.toLocaleString()}
    </time>
  );
}

/** `45 ms`, `1.2 s`, `3 min 4 s`, `2 h 5 min`. */
export function formatDuration(ms) {
  if (ms < 0 || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`.replace(/^0 min /, "");
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** How long a run took, or has been running (ticking). */
export function Duration({ start, end, status }) {
  const running = start && !end && !FINAL.has(status);
  useTicker(running);
  if (!start) return <span className="muted">—</span>;
  return <span>{formatDuration((end ? new Date(end) : new Date()) - new Date(start))}</span>;
}

export const ErrorMessage = ({ error, children }) =>
  error ? (
    <p className="error" role="alert">
      {children ? `${children}: ` : ""}
      {error.message}
    </p>
  ) : null;

export const Empty = ({ children }) => <p className="empty">{children}</p>;

export const Loading = () => (
  <p className="muted" aria-live="polite">
    Loading…
  </p>
);

/** A table that scrolls sideways inside its box on narrow screens instead of widening the page. */
export const Table = ({ caption, headers, children, ...rest }) => (
  <div className="table-wrap">
    <table {...rest}>
      {caption ? <caption className="visually-hidden">{caption}</caption> : null}
      <thead>
        <tr>
          {headers.map((h) => (
            <th key={h} scope="col">
              {h}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  </div>
);

/** Cursor paging newest first: the cursors of the pages behind, so "Newer" can go back. */
export function usePager() {
  const [cursors, setCursors] = useState([null]);
  return {
    after: cursors[cursors.length - 1],
    back: cursors.length > 1 ? () => setCursors((c) => c.slice(0, -1)) : null,
    forward: (cursor) => setCursors((c) => [...c, cursor]),
  };
}

/** "← Newer" and "Older →" for a connection's `pageInfo`. */
export const Pager = ({ pager, pageInfo }) => (
  <div className="actions">
    {pager.back ? (
      <button type="button" className="secondary" onClick={pager.back}>
        ← Newer
      </button>
    ) : null}
    {pageInfo?.hasNextPage ? (
      <button type="button" className="secondary" onClick={() => pager.forward(pageInfo.endCursor)}>
        Older →
      </button>
    ) : null}
  </div>
);
