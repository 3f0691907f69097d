// One GraphQL client for both pages: queries and mutations over HTTP POST /graphql, subscriptions
// over graphql-transport-ws at /graphql/ws. Credentials go in HTTP headers and in the websocket's
// connection_init payload (browsers cannot set websocket headers).
import { createClient } from "graphql-ws";

const wsUrl = () =>
  `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql/ws`;

/** POSTs one operation; returns the whole `{ data, errors }` response. */
export async function request(query, variables = {}, headers = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query: String(query), variables }),
  });
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { errors: [{ message: `HTTP ${response.status}: ${text.slice(0, 200)}` }] };
  }
}

const clients = new Map();

/** A websocket client per set of credentials; it reconnects by itself. */
export function wsClient(headers = {}) {
  const key = JSON.stringify(headers);
  if (!clients.has(key)) {
    clients.set(
      key,
      createClient({
        url: wsUrl(),
        connectionParams: headers,
        lazy: true,
        retryAttempts: Infinity,
        shouldRetry: () => true,
        retryWait: async (retries) =>
          new Promise((resolve) => setTimeout(resolve, Math.min(1000 * 2 ** retries, 5000))),
      }),
    );
  }
  return clients.get(key);
}

/**
 * Subscribes; `onNext` gets each `{ data, errors }`. Returns a function that unsubscribes.
 * `onEnd(error)` runs when the server completes the stream or it fails for good.
 */
export function subscribe(query, variables, headers, onNext, onEnd = () => {}) {
  return wsClient(headers).subscribe(
    { query: String(query), variables },
    { next: onNext, error: (error) => onEnd(error), complete: () => onEnd(null) },
  );
}
