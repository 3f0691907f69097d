// The catalogue (search and group filter) and a proc's page: what it does, its arguments and run
// form, recent runs, schedules, secrets, its definition as YAML and its version history with a
// diff against the current definition and, for administrators, rollback.
import { useEffect, useState } from "react";
import { diffLines } from "diff";
import { call } from "../api.js";
import { PROC, PROC_SCHEDULES, PROCS, ROLLBACK } from "../ops.js";
import { RunForm } from "../runform.jsx";
import { SecretsEditor } from "./admin.jsx";
import { ExecutionRows, useExecutions } from "./executions.jsx";
import { Empty, ErrorMessage, Loading, Table, Time, href, useQuery } from "../ui.jsx";

export function Catalogue({ query }) {
  const [search, setSearch] = useState(query.get("q") || "");
  const [group, setGroup] = useState(query.get("group") || "");
  const [debounced, setDebounced] = useState(search);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(search.trim()), 200);
    return () => clearTimeout(timer);
  }, [search]);
  const all = useQuery(PROCS, {});
  const filter = {};
  if (debounced) filter.search = debounced;
  if (group) filter.group = group;
  const { data, error, loading } = useQuery(PROCS, { filter });
  const groups = [...new Set((all.data?.procs ?? []).flatMap((p) => p.authorizedGroups))].sort();
  const procs = data?.procs ?? [];
  return (
    <section aria-labelledby="catalogue-title">
      <h1 id="catalogue-title">Procs</h1>
      <form className="filters" role="search" aria-label="Find a proc" onSubmit={(e) => e.preventDefault()}>
        <div className="field grow">
          <label htmlFor="proc-search">Search</label>
          <input id="proc-search" type="search" placeholder="Name or description" value={search} onChange={(e) => setSearch(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="proc-group">Group</label>
          <select id="proc-group" value={group} onChange={(e) => setGroup(e.target.value)}>
            <option value="">all groups</option>
            {groups.map((g) => (
              <option key={g} value={g}>
                {g}
              </option>
            ))}
          </select>
        </div>
      </form>
      <ErrorMessage error={error} />
      {loading && !data ? (
        <Loading />
      ) : procs.length ? (
        <ul className="cards" id="procs">
          {procs.map((p) => (
            <li className="card" key={p.name} data-proc={p.name}>
              <h2>
                <a href={href("procs", p.name)}>{p.name}</a>
              </h2>
              <p>{p.description || <span className="muted">No description.</span>}</p>
              <p className="meta">
                {p.args.length} {p.args.length === 1 ? "argument" : "arguments"}
                {p.secrets.length ? ` · ${p.secrets.length} secret${p.secrets.length > 1 ? "s" : ""}` : ""} · v{p.version}
                {p.authorizedGroups.length ? ` · ${p.authorizedGroups.join(", ")}` : ""}
              </p>
            </li>
          ))}
        </ul>
      ) : (
        <Empty>{debounced || group ? "No proc matches. Try another word or group." : "No procs you may run yet. An administrator adds them with `proctor procs apply` or the upsertProc mutation."}</Empty>
      )}
    </section>
  );
}

function Diff({ from, to }) {
  return (
    <pre className="diff">
      {diffLines(from, to).map((part, i) => (
        <span key={i} className={part.added ? "added" : part.removed ? "removed" : "same"}>
          {part.value
            .replace(/\n$/, "")
            .split("\n")
            .map((line) => `${part.added ? "+ " : part.removed ? "- " : "  "}${line}`)
            .join("\n")}
          {"\n"}
        </span>
      ))}
    </pre>
  );
}

function Versions({ proc, admin, reload }) {
  const [selected, setSelected] = useState(null);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const version = proc.versions.find((v) => v.number === selected);
  const rollback = async (number) => {
    if (!window.confirm(`Store version ${number}'s definition of ${proc.name} as its newest version?`)) return;
    setError(null);
    try {
      const { rollbackProc } = await call(ROLLBACK, { name: proc.name, version: number });
      setDone(`Rolled back: version ${rollbackProc.version} now holds version ${number}'s definition.`);
      setSelected(null);
      reload();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <>
      {done ? (
        <p className="ok" role="status">
          {done}
        </p>
      ) : null}
      <ErrorMessage error={error} />
      <Table caption="Versions" headers={["Version", "Changed", "By", "Description", ""]} id="versions">
        {proc.versions.map((v) => (
          <tr key={v.number} data-version={v.number}>
            <td>
              v{v.number}
              {v.number === proc.version ? " (current)" : ""}
            </td>
            <td>
              <Time value={v.changedAt} />
            </td>
            <td>{v.changedBy || "—"}</td>
            <td>{v.description || ""}</td>
            <td>
              {v.number !== proc.version ? (
                <button type="button" className="secondary small" onClick={() => setSelected(selected === v.number ? null : v.number)}>
                  {selected === v.number ? "Hide diff" : `Diff v${v.number} → current`}
                </button>
              ) : null}
            </td>
          </tr>
        ))}
      </Table>
      {version ? (
        <div className="diff-box">
          <h3>
            v{version.number} → v{proc.version}
          </h3>
          <Diff from={version.yaml} to={proc.yaml} />
          {admin ? (
            <button type="button" className="danger" id="rollback" onClick={() => rollback(version.number)}>
              Roll back to v{version.number}
            </button>
          ) : null}
        </div>
      ) : null}
    </>
  );
}

export function ProcPage({ name, me }) {
  const { data, error, loading, reload } = useQuery(PROC, { name });
  const schedules = useQuery(PROC_SCHEDULES, { proc: name });
  const recent = useExecutions({ proc: name }, 10);
  if (loading && !data) return <Loading />;
  if (error) return <ErrorMessage error={error}>Proc {name} could not be loaded</ErrorMessage>;
  const proc = data?.proc;
  if (!proc) {
    return (
      <section id="not-found">
        <p>
          <a href="#/">← Procs</a>
        </p>
        <h1>No proc named {name}</h1>
        <Empty>It may have been deleted or renamed.</Empty>
      </section>
    );
  }
  const initial = {};
  return (
    <section aria-labelledby="proc-title">
      <p>
        <a href="#/">← Procs</a>
      </p>
      <h1 id="proc-title">
        {proc.name} <small className="muted">v{proc.version}</small>
      </h1>
      <p>{proc.description || <span className="muted">No description.</span>}</p>
      <p className="meta">
        {proc.image ? `image ${proc.image}` : proc.command ? `command ${proc.command.join(" ")}` : ""}
        {proc.authorizedGroups.length ? ` · groups ${proc.authorizedGroups.join(", ")}` : " · any signed-in user"}
        {proc.timeoutSeconds ? ` · timeout ${proc.timeoutSeconds} s` : ""}
        {proc.retries ? ` · ${proc.retries} retries` : ""}
        {proc.author ? ` · by ${proc.author}` : ""}
      </p>
      <div className="columns">
        <div>
          <h2>Run</h2>
          <RunForm proc={proc} initial={initial} />
        </div>
        <div>
          <h2>Recent runs</h2>
          {recent.rows.length ? <ExecutionRows rows={recent.rows.slice(0, 10)} showProc={false} /> : <Empty>No runs yet.</Empty>}
          <p>
            <a href={`#/executions?proc=${encodeURIComponent(proc.name)}`}>All runs of {proc.name} →</a>
          </p>
          <h2>Schedules</h2>
          {schedules.data?.schedules.nodes.length ? (
            <ul className="plain">
              {schedules.data.schedules.nodes.map((s) => (
                <li key={s.id}>
                  <a href={href("schedules", s.id)}>
                    <code>{s.cron}</code> ({s.timezone})
                  </a>{" "}
                  {s.enabled ? (
                    <>
                      next <time dateTime={s.nextFireAt}>{s.nextFireAt ? new Date(s.nextFireAt).toLocaleString() : "—"}</time>
                    </>
                  ) : (
                    "paused"
                  )}
                </li>
              ))}
            </ul>
          ) : (
            <Empty>No schedules.</Empty>
          )}
          <p>
            <a href={`#/schedules/new?proc=${encodeURIComponent(proc.name)}`}>Schedule {proc.name} →</a>
          </p>
        </div>
      </div>
      <h2>Secrets</h2>
      {proc.secrets.length ? <SecretsEditor proc={proc.name} secrets={proc.secrets} admin={me?.admin} onChange={reload} /> : <Empty>This proc declares no secrets.</Empty>}
      <h2>Definition</h2>
      <pre className="yaml" id="yaml" tabIndex={0}>
        {proc.yaml}
      </pre>
      <h2>Versions</h2>
      <Versions proc={proc} admin={me?.admin} reload={reload} />
    </section>
  );
}
