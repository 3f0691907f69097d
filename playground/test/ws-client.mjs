// Drives /graphql/ws with the graphql-ws client the playground uses (Node's WebSocket, so run
// with --experimental-websocket on Node 20): one operation, keep-alive pings answered by pongs,
// and a refused connection_init. Prints one JSON report line; the Rust test
// (graphql_ws_protocol::the_graphql_ws_client_...) checks it.
//
//   PROCTOR_WS_TOKEN=… node --experimental-websocket test/ws-client.mjs ws://127.0.0.1:PORT/graphql/ws BAD_TOKEN
// (the good token comes from the environment, so it is not in the process list)
import { createClient } from "graphql-ws";

const [url, badToken] = process.argv.slice(2);
const token = process.env.PROCTOR_WS_TOKEN;
const report = { data: null, pongs: 0, refused: null };

function run(client, query) {
  return new Promise((resolve, reject) => {
    let result = null;
    client.subscribe({ query }, {
      next: (value) => { result = value; },
      error: reject,
      complete: () => resolve(result),
    });
  });
}

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  keepAlive: 50,
  lazy: false, // Stays connected after the operation, so keep-alive pings go on.
  retryAttempts: 0,
  connectionParams: token ? { token } : undefined,
  on: { pong: () => { report.pongs += 1; } },
});
const answer = await run(client, "{ serverInfo { version } }");
report.data = answer.data;
await new Promise((resolve) => setTimeout(resolve, 400));
await client.dispose();

if (badToken) {
  const refused = createClient({
    url,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
    connectionParams: { token: badToken, email: "nobody@example.com" },
    on: { closed: (event) => { report.refused ??= { code: event.code, reason: event.reason }; } },
  });
  await run(refused, "{ serverInfo { version } }").catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 200));
  await refused.dispose();
}
console.log(JSON.stringify(report));
process.exit(0);
