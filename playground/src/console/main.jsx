// The Proctor console at `/`: sign-in, the procs catalogue, proc pages with run forms, live
// executions, schedules, secrets, the audit log, users and tokens. Routes live in the address's
// hash (`#/executions/12`), so every view can be bookmarked and the server needs one page.
//
// Invariants: nothing is loaded from another origin (the server's Content-Security-Policy says
// so too); server text is rendered as text; the connection state is always on screen.
import { useEffect, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import "./console.css";
import { TOKEN_KEY, browserOffline, browserOnline, call, connect, connectionState, getToken, onConnection, resetConnection } from "./api.js";
import { SERVER } from "./ops.js";
import { ErrorMessage, Loading, useRoute } from "./ui.jsx";
import { Catalogue, ProcPage } from "./pages/procs.jsx";
import { ExecutionPage } from "./pages/execution.jsx";
import { ExecutionsPage } from "./pages/executions.jsx";
import { ScheduleForm, SchedulePage, SchedulesPage } from "./pages/schedules.jsx";
import { AuditPage, SecretsPage, UsersPage } from "./pages/admin.jsx";

const THEME_KEY = "proctor.theme";

/** `executions` → `Executions`; ids and names stay as they are. */
const titleWord = (word, index) => (index === 0 ? word.charAt(0).toUpperCase() + word.slice(1) : word);

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function ThemeToggle() {
  const [theme, setTheme] = useState(() => localStorage.getItem(THEME_KEY) || "");
  useEffect(() => {
    applyTheme(theme);
    if (theme) localStorage.setItem(THEME_KEY, theme);
    else localStorage.removeItem(THEME_KEY);
  }, [theme]);
  const dark = theme ? theme === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  return (
    <button type="button" className="ghost" id="theme" aria-pressed={dark} onClick={() => setTheme(dark ? "light" : "dark")} title="Switch between light and dark">
      {dark ? "☀ Light" : "☾ Dark"}
    </button>
  );
}

const LABELS = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", offline: "Offline" };

function ConnectionBanner() {
  const [state, setState] = useState(connectionState().state);
  useEffect(() => onConnection((c) => setState(c.state)), []);
  useEffect(() => {
    window.addEventListener("offline", browserOffline);
    window.addEventListener("online", browserOnline);
    return () => {
      window.removeEventListener("offline", browserOffline);
      window.removeEventListener("online", browserOnline);
    };
  }, []);
  return (
    <>
      <span className={`connection ${state}`} id="connection" data-state={state} role="status" aria-live="polite">
        <span className="dot" aria-hidden="true" />
        {LABELS[state] ?? state}
      </span>
      {state === "reconnecting" || state === "offline" ? (
        <div className="banner" id="banner" role="alert">
          {state === "offline"
            ? "The server cannot be reached. The console keeps trying and picks up where it left off."
            : "Lost the connection to the server; reconnecting. Live views resume without losing lines."}
        </div>
      ) : null}
    </>
  );
}

function SignIn({ info, onSignedIn, error }) {
  const [token, setToken] = useState("");
  const [failure, setFailure] = useState(error);
  const submit = async (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, token.trim());
    resetConnection();
    try {
      const data = await call(SERVER);
      if (!data.me) throw new Error("The server did not recognise this token.");
      connect();
      onSignedIn(data);
    } catch (e) {
      localStorage.removeItem(TOKEN_KEY);
      setFailure(e);
    }
  };
  return (
    <section className="sign-in" aria-labelledby="sign-in-title">
      <h1 id="sign-in-title">Sign in to Proctor</h1>
      <form onSubmit={submit} className="stack">
        <div className="field">
          <label htmlFor="token">API token</label>
          <input id="token" type="password" autoComplete="current-password" required value={token} onChange={(e) => setToken(e.target.value)} />
        </div>
        <ErrorMessage error={failure} />
        <div className="actions">
          <button type="submit">Sign in</button>
        </div>
      </form>
      <p className="muted">
        No token yet? An administrator issues one on the Users page, or on the server with <code>proctord users add --email you@example.com --group &lt;group&gt;</code>{" "}
        (it prints the token as its last line). The token is kept in this browser only and is shared with GraphiQL.
      </p>
      {info ? <p className="muted">proctord {info.version}</p> : null}
    </section>
  );
}

function Page({ route, me }) {
  const [first, second, third] = route.path;
  switch (first) {
    case undefined:
    case "procs":
      // Keyed by what they show: moving from one to another starts afresh rather than showing
      // the previous one's data until the new one loads.
      return second ? <ProcPage key={second} name={second} me={me} /> : <Catalogue query={route.query} />;
    case "executions":
      return second ? <ExecutionPage key={second} id={second} /> : <ExecutionsPage query={route.query} />;
    case "schedules":
      if (second === "new") return <ScheduleForm query={route.query} />;
      if (second && third === "edit") return <ScheduleForm id={second} query={route.query} />;
      return second ? <SchedulePage key={second} id={second} /> : <SchedulesPage />;
    case "secrets":
      return <SecretsPage me={me} />;
    case "audit":
      return <AuditPage />;
    case "users":
      return <UsersPage />;
    default:
      return (
        <section id="not-found">
          <h1>Nothing here</h1>
          <p>
            <a href="#/">Back to the procs</a>
          </p>
        </section>
      );
  }
}

function App() {
  const route = useRoute();
  const [session, setSession] = useState({ loading: true, data: null, error: null });
  const load = () =>
    call(SERVER).then(
      (data) => setSession({ loading: false, data, error: null }),
      (error) => setSession({ loading: false, data: null, error }),
    );
  useEffect(() => {
    connect();
    load();
  }, []);
  // A refused token (revoked while signed in) leads to sign-in; a sign-in or sign-out in another
  // tab changes this one too.
  useEffect(() => {
    const refused = () => setSession((s) => ({ loading: false, data: { serverInfo: s.data?.serverInfo, me: null }, error: null }));
    const changed = (event) => {
      if (event.key !== TOKEN_KEY) return;
      resetConnection();
      connect();
      load();
    };
    window.addEventListener("proctor:signed-out", refused);
    window.addEventListener("storage", changed);
    return () => {
      window.removeEventListener("proctor:signed-out", refused);
      window.removeEventListener("storage", changed);
    };
  }, []);
  // A server that was away is asked again once the connection is back.
  useEffect(() => onConnection((c) => c.state === "live" && !session.data && load()), [session.data]);

  // A new view (not a new filter of the same one) moves keyboard and screen-reader focus to the
  // content, as a page load would; the title names the view.
  const view = route.path.join("/");
  const firstView = useRef(true);
  useEffect(() => {
    document.title = route.path.length ? `${route.path.map(titleWord).join(" ")} · Proctor` : "Procs · Proctor";
    if (firstView.current) {
      firstView.current = false;
      return;
    }
    document.getElementById("main")?.focus();
  }, [view]);

  const info = session.data?.serverInfo;
  const me = session.data?.me ?? (info && !info.authEnabled ? { email: null, admin: true, groups: [] } : null);
  const needsSignIn =
    (info?.authEnabled && !session.data?.me) || session.error?.code === "UNAUTHENTICATED";
  const signOut = () => {
    localStorage.removeItem(TOKEN_KEY);
    resetConnection();
    connect();
    setSession({ loading: false, data: { serverInfo: info, me: null }, error: null });
  };
  const current = route.path[0] ?? "procs";
  const link = (path, label) => (
    <a href={`#/${path}`} aria-current={current === path ? "page" : undefined}>
      {label}
    </a>
  );
  return (
    <>
      <a className="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header>
        <a className="brand" href="#/">
          Proctor
        </a>
        {me && !needsSignIn ? (
          <nav aria-label="Main">
            {link("procs", "Procs")}
            {link("executions", "Executions")}
            {link("schedules", "Schedules")}
            {link("secrets", "Secrets")}
            {me.admin ? link("audit", "Audit") : null}
            {me.admin ? link("users", "Users") : null}
            <a href="/playground">GraphiQL</a>
          </nav>
        ) : null}
        <div className="header-end">
          <ConnectionBanner />
          <ThemeToggle />
          {session.data?.me ? (
            <span className="who">
              <span id="who">{session.data.me.email}</span>
              {session.data.me.admin ? <small> (admin)</small> : null}{" "}
              <button type="button" className="ghost" onClick={signOut}>
                Sign out
              </button>
            </span>
          ) : null}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {session.loading ? (
          <Loading />
        ) : needsSignIn ? (
          <SignIn info={info} onSignedIn={(data) => setSession({ loading: false, data, error: null })} error={getToken() ? session.error : null} />
        ) : session.error ? (
          <ErrorMessage error={session.error}>The console could not load</ErrorMessage>
        ) : (
          <Page key={view} route={route} me={me} />
        )}
      </main>
    </>
  );
}

applyTheme(localStorage.getItem(THEME_KEY) || "");
createRoot(document.getElementById("console")).render(<App />);
