// The console's link to proctord: one credential store (shared with GraphiQL), queries and
// mutations over POST /graphql, subscriptions over graphql-transport-ws, and the connection state
// the banner shows. Errors always reach the page as readable sentences, never as raw HTML.
import { createClient } from "graphql-ws";

/** Where the token lives; GraphiQL (src/graphiql.jsx) reads the same key. */
export const TOKEN_KEY = "proctor.token";

export const getToken = () => localStorage.getItem(TOKEN_KEY) || "";

function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// ---- connection state ------------------------------------------------------------------------
// "live": the websocket is connected (or the last request got an answer); "reconnecting": the
// websocket is trying again; "offline": the server could not be reached at all.
let connection = { state: "connecting", since: Date.now() };
const listeners = new Set();
function setConnection(state) {
  if (connection.state === state) return;
  connection = { state, since: Date.now() };
  for (const listener of listeners) listener(connection);
}
export const connectionState = () => connection;
export function onConnection(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** An error the page can show as is; `code` and `field` come from the server's extensions. */
export class ApiError extends Error {
  constructor(message, { code = null, field = null, errors = [] } = {}) {
    super(message);
    this.code = code;
    this.field = field;
    this.errors = errors;
  }
}

/** Turns an answer that is not GraphQL JSON into a sentence. */
function describeHttp(response, text) {
  if (response.status === 502 || response.status === 503 || response.status === 504) {
    return `The server is not answering (HTTP ${response.status} from the proxy in front of it). The console retries by itself.`;
  }
  const kind = response.headers.get("content-type") || "no content type";
  return `The server answered HTTP ${response.status} with ${kind.split(";")[0]} instead of GraphQL.`;
}

/** Runs a query or mutation; resolves to `data` or throws an ApiError. */
export async function call(query, variables = {}) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/graphql-response+json, application/json", ...authHeaders() },
      body: JSON.stringify({ query: String(query), variables }),
    });
  } catch {
    setConnection("offline");
    throw new ApiError("Cannot reach the server. The console retries by itself; check that proctord is running.", { code: "OFFLINE" });
  }
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(describeHttp(response, text), { code: `HTTP_${response.status}` });
  }
  if (connection.state === "offline") setConnection(wsState === "connected" ? "live" : "reconnecting");
  if (body.errors?.length) {
    const first = body.errors[0];
    if (first.extensions?.code === "UNAUTHENTICATED") credentialsRefused();
    throw new ApiError(body.errors.map((e) => e.message).join("; "), {
      code: first.extensions?.code ?? null,
      field: first.extensions?.field ?? null,
      errors: body.errors,
    });
  }
  return body.data;
}

// ---- subscriptions ---------------------------------------------------------------------------
let client = null;
let clientToken = null;
let wsState = "connecting";
// Close codes after which trying again cannot help (a bad request, credentials refused). 4403
// is not among them: the server closes with it when a user's rights change, to be asked again.
const FATAL = new Set([4400, 4401, 4409]);

/** The credentials were refused (revoked, expired): forget them and let the page sign in again. */
function credentialsRefused() {
  if (!getToken()) return;
  localStorage.removeItem(TOKEN_KEY);
  resetConnection();
  window.dispatchEvent(new Event("proctor:signed-out"));
}

function ws() {
  const token = getToken();
  if (client && clientToken === token) return client;
  client?.dispose();
  clientToken = token;
  // Events of a client that was replaced (sign-in, sign-out) must not move the banner.
  let self = null;
  const current = () => self !== null && self === client;
  self = createClient({
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql/ws`,
    connectionParams: () => (getToken() ? { Authorization: `Bearer ${getToken()}` } : {}),
    lazy: false,
    keepAlive: 10_000,
    retryAttempts: Infinity,
    shouldRetry: (event) => !(event && FATAL.has(event.code)),
    // Jittered exponential backoff capped at 3 s: a restarted server is found again quickly.
    retryWait: (retries) =>
      new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 3000) * (0.5 + Math.random() / 2))),
    on: {
      connecting: () => {
        if (!current()) return;
        wsState = "connecting";
        setConnection(connection.state === "connecting" ? "connecting" : "reconnecting");
      },
      connected: () => {
        if (!current()) return;
        wsState = "connected";
        setConnection("live");
      },
      closed: (event) => {
        if (!current()) return;
        if (event?.code === 4401) credentialsRefused();
        wsState = "closed";
        setConnection(event?.code && FATAL.has(event.code) ? "offline" : "reconnecting");
      },
    },
  });
  client = self;
  return client;
}

/** Starts the websocket now so the banner tells the truth from the first second. */
export const connect = () => ws();

/** The browser says it lost or regained the network. */
export const browserOffline = () => setConnection("offline");
export const browserOnline = () => setConnection(wsState === "connected" ? "live" : "reconnecting");

/**
 * Subscribes. `variables` is sent again (as it is then) when the client resubscribes after a
 * reconnect, so a caller that keeps `afterSeq` current resumes exactly after its last line.
 * Returns a function that unsubscribes.
 */
export function subscribe(query, variables, { next, error = () => {}, complete = () => {} }) {
  return ws().subscribe(
    { query: String(query), variables },
    {
      next: (result) => {
        if (result.errors?.length) {
          const first = result.errors[0];
          error(new ApiError(result.errors.map((e) => e.message).join("; "), { code: first.extensions?.code ?? null }));
        } else if (result.data) next(result.data);
      },
      error: (e) => error(e instanceof Error ? e : new ApiError(Array.isArray(e) ? e.map((x) => x.message).join("; ") : "The live connection failed.")),
      complete,
    },
  );
}

/** Forgets the websocket so the next subscription authenticates with the current token. */
export function resetConnection() {
  client?.dispose();
  client = null;
  clientToken = null;
}
