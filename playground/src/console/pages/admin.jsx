// Administration: secrets (write-only: values go in, only "set" comes back), the audit log with
// paging, and API tokens (issued once, shown once; revoked by e-mail).
import { useEffect, useState } from "react";
import { call } from "../api.js";
import { AUDIT, CREATE_TOKEN, DELETE_SECRET, PROCS, REVOKE_TOKEN, SET_SECRETS, USERS } from "../ops.js";
import { Empty, ErrorMessage, Loading, Pager, Table, Time, href, usePager, useQuery } from "../ui.jsx";

/** A proc's declared secrets: whether each is set, and for administrators set and delete. */
export function SecretsEditor({ proc, secrets, admin, onChange }) {
  const [values, setValues] = useState({});
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(null);
  const save = async (key) => {
    setError(null);
    setSaved(null);
    try {
      await call(SET_SECRETS, { proc, secrets: [{ key, value: values[key] ?? "" }] });
      setValues((v) => ({ ...v, [key]: "" }));
      setSaved(`${key} is set.`);
      onChange?.();
    } catch (e) {
      setError(e);
    }
  };
  const remove = async (key) => {
    setError(null);
    setSaved(null);
    try {
      await call(DELETE_SECRET, { proc, key });
      setSaved(`${key} is deleted.`);
      onChange?.();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <>
      <ErrorMessage error={error} />
      {saved ? (
        <p className="ok" role="status">
          {saved}
        </p>
      ) : null}
      <Table caption={`Secrets of ${proc}`} headers={admin ? ["Secret", "State", "Updated", "New value", ""] : ["Secret", "State", "Updated"]}>
        {secrets.map((s) => {
          const id = `secret-${proc}-${s.key}`;
          return (
            <tr key={s.key} data-secret={s.key}>
              <td>
                <span className="mono">{s.key}</span>
                {s.description ? <small className="muted"> {s.description}</small> : null}
              </td>
              <td>{s.isSet ? <span className="set">set</span> : <span className="unset">not set</span>}</td>
              <td>
                <Time value={s.updatedAt} />
              </td>
              {admin ? (
                <>
                  <td>
                    <label htmlFor={id} className="visually-hidden">
                      New value of {s.key}
                    </label>
                    <input id={id} type="password" autoComplete="new-password" value={values[s.key] ?? ""} onChange={(e) => setValues((v) => ({ ...v, [s.key]: e.target.value }))} />
                  </td>
                  <td className="nowrap">
                    <button type="button" className="small" aria-label={`Set ${s.key}`} disabled={!values[s.key]} onClick={() => save(s.key)}>
                      Set
                    </button>{" "}
                    {s.isSet ? (
                      <button type="button" className="secondary small" aria-label={`Delete ${s.key}`} onClick={() => remove(s.key)}>
                        Delete
                      </button>
                    ) : null}
                  </td>
                </>
              ) : null}
            </tr>
          );
        })}
      </Table>
    </>
  );
}

export function SecretsPage({ me }) {
  const { data, error, loading, reload } = useQuery(PROCS, {});
  if (loading && !data) return <Loading />;
  const procs = (data?.procs ?? []).filter((p) => p.secrets.length);
  return (
    <section aria-labelledby="secrets-title">
      <h1 id="secrets-title">Secrets</h1>
      <p className="muted">Values are write-only: the server stores them encrypted, shows only whether one is set, and masks them as *** in every log.</p>
      <ErrorMessage error={error} />
      {procs.length ? (
        procs.map((p) => (
          <div key={p.name} className="group">
            <h2>
              <a href={href("procs", p.name)}>{p.name}</a>
            </h2>
            <SecretsEditor proc={p.name} secrets={p.secrets.map((s) => ({ ...s, description: null, updatedAt: null }))} admin={me?.admin} onChange={reload} />
          </div>
        ))
      ) : (
        <Empty>No proc declares secrets.</Empty>
      )}
    </section>
  );
}

export function AuditPage() {
  const pager = usePager();
  const { data, error, loading } = useQuery(AUDIT, { first: 50, after: pager.after });
  const events = data?.auditEvents;
  return (
    <section aria-labelledby="audit-title">
      <h1 id="audit-title">Audit log</h1>
      <ErrorMessage error={error} />
      {loading && !data ? <Loading /> : null}
      {events ? (
        events.nodes.length ? (
          <Table caption="Audit events" headers={["When", "Who", "Action", "Object", "Detail"]} id="audit">
            {events.nodes.map((a, i) => (
              <tr key={`${a.createdAt}-${i}`}>
                <td className="nowrap">
                  <Time value={a.createdAt} />
                </td>
                <td>{a.actor || "—"}</td>
                <td className="mono">{a.action}</td>
                <td>
                  {a.objectKind} {a.objectId}
                </td>
                <td className="mono detail">{a.detail ? JSON.stringify(a.detail) : ""}</td>
              </tr>
            ))}
          </Table>
        ) : (
          <Empty>No events yet.</Empty>
        )
      ) : null}
      <Pager pager={pager} pageInfo={events?.pageInfo} />
    </section>
  );
}

function UserList({ reloadKey, onRevoke }) {
  const pager = usePager();
  const { data, error, loading, reload } = useQuery(USERS, { first: 50, after: pager.after });
  // Issuing or revoking a token changes what the list shows.
  useEffect(() => {
    if (reloadKey) reload();
  }, [reloadKey, reload]);
  const users = data?.users;
  return (
    <>
      <ErrorMessage error={error} />
      {loading && !data ? <Loading /> : null}
      {users ? (
        users.nodes.length ? (
          <Table caption="Users" headers={["E-mail", "Groups", "Admin", "Active tokens", "Last used", "Created", ""]} id="users">
            {users.nodes.map((u) => (
              <tr key={u.email} data-user={u.email}>
                <td>{u.email}</td>
                <td>{u.groups.join(", ") || <span className="muted">none</span>}</td>
                <td>{u.admin ? "yes" : "no"}</td>
                <td>{u.activeTokens}</td>
                <td>
                  <Time value={u.lastUsedAt} />
                </td>
                <td>
                  <Time value={u.createdAt} />
                </td>
                <td>
                  {u.activeTokens ? (
                    <button type="button" className="secondary small" aria-label={`Revoke the tokens of ${u.email}`} onClick={() => onRevoke(u.email)}>
                      Revoke
                    </button>
                  ) : null}
                </td>
              </tr>
            ))}
          </Table>
        ) : (
          <Empty>No users yet.</Empty>
        )
      ) : null}
      <Pager pager={pager} pageInfo={users?.pageInfo} />
    </>
  );
}

export function UsersPage() {
  const [reloadKey, setReloadKey] = useState(0);
  const [email, setEmail] = useState("");
  const [groups, setGroups] = useState("");
  const [admin, setAdmin] = useState(false);
  const [token, setToken] = useState(null);
  const [error, setError] = useState(null);
  const [revokeEmail, setRevokeEmail] = useState("");
  const [revoked, setRevoked] = useState(null);
  const issue = async (event) => {
    event.preventDefault();
    setError(null);
    setToken(null);
    try {
      const list = groups.split(",").map((g) => g.trim()).filter(Boolean);
      const { createApiToken } = await call(CREATE_TOKEN, { email: email.trim(), groups: list, admin });
      setToken({ email: email.trim(), value: createApiToken });
      setReloadKey((k) => k + 1);
    } catch (e) {
      setError(e);
    }
  };
  const revokeEmailOf = async (target) => {
    setError(null);
    setRevoked(null);
    try {
      const { revokeApiToken } = await call(REVOKE_TOKEN, { email: target });
      setRevoked(revokeApiToken ? `Every token of ${target} is revoked; open connections are closed.` : `${target} had no active token.`);
      setReloadKey((k) => k + 1);
    } catch (e) {
      setError(e);
    }
  };
  const revoke = (event) => {
    event.preventDefault();
    revokeEmailOf(revokeEmail.trim());
  };
  return (
    <section aria-labelledby="users-title">
      <h1 id="users-title">Users and tokens</h1>
      <ErrorMessage error={error} />
      {revoked ? (
        <p className="ok" role="status">
          {revoked}
        </p>
      ) : null}
      <UserList reloadKey={reloadKey} onRevoke={revokeEmailOf} />
      <h2>Issue a token</h2>
      <form className="stack" onSubmit={issue}>
        <div className="field">
          <label htmlFor="user-email">E-mail</label>
          <input id="user-email" type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="user-groups">Groups (comma-separated; replaces the user's groups)</label>
          <input id="user-groups" value={groups} onChange={(e) => setGroups(e.target.value)} />
        </div>
        <label className="inline">
          <input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.target.checked)} /> Administrator
        </label>
        <div className="actions">
          <button type="submit">Issue token</button>
        </div>
      </form>
      {token ? (
        <div className="ok" role="status">
          <p>
            Token for {token.email}, shown only now; copy it:
          </p>
          <input aria-label="New token" readOnly value={token.value} onFocus={(e) => e.target.select()} className="mono wide" />
        </div>
      ) : null}
      <h2>Revoke tokens</h2>
      <form className="stack" onSubmit={revoke}>
        <div className="field">
          <label htmlFor="revoke-email">E-mail</label>
          <input id="revoke-email" type="email" required value={revokeEmail} onChange={(e) => setRevokeEmail(e.target.value)} />
        </div>
        <div className="actions">
          <button type="submit" className="danger">
            Revoke every token
          </button>
        </div>
      </form>
    </section>
  );
}
