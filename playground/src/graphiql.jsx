// GraphiQL served by proctord: the docs explorer, the headers editor (credentials such as
// {"Authorization": "Bearer …"} or {"Access-Token": "…", "Email-Id": "…"}; not stored: the console's
// sign-in is the one credential store) and subscriptions
// over graphql-transport-ws, all from bundled assets.
import React from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { parse } from "graphql";
import "graphiql/graphiql.css";
import { wsClient } from "./client.js";

/** The type of the operation GraphiQL is about to run. */
function operationType(query, operationName) {
  try {
    const operations = parse(query).definitions.filter((d) => d.kind === "OperationDefinition");
    const chosen = operations.find((o) => o.name?.value === operationName) ?? operations[0];
    return chosen?.operation ?? "query";
  } catch {
    return "query";
  }
}

/**
 * The console's sign-in (one credential store): its token is sent unless the Headers tab
 * carries credentials of its own.
 */
function withConsoleToken(headers) {
  const token = localStorage.getItem("proctor.token");
  const own = Object.keys(headers).some((name) => ["authorization", "access-token"].includes(name.toLowerCase()));
  return token && !own ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

/** GraphiQL's fetcher: HTTP for queries and mutations, the websocket for subscriptions. */
function fetcher(params, options = {}) {
  const headers = withConsoleToken(options.headers ?? {});
  if (operationType(params.query, params.operationName) === "subscription") {
    return wsClient(headers).iterate({
      query: params.query,
      variables: params.variables ?? {},
      operationName: params.operationName ?? undefined,
    });
  }
  return fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(params),
  }).then((response) => response.json());
}

const DEFAULT_QUERY = `# Proctor's GraphQL API. Open the docs with the book icon on the left;
# Signed in to the console (/)? Its token is used here too. Otherwise put credentials in the
# Headers tab below, e.g. {"Authorization": "Bearer <token>"}.

query Procs {
  serverInfo { version storage executor authEnabled }
  procs { name description args { name type required default } }
}

# Run a proc, then follow it (paste the id into the subscription's variables):
# mutation Run { execute(proc: "countdown", args: [{ name: "SECONDS", value: "3" }]) { id status } }
# subscription Follow($id: ID!) { executionLogs(id: $id) { seq line } }
`;

createRoot(document.getElementById("graphiql")).render(
  <GraphiQL fetcher={fetcher} defaultQuery={DEFAULT_QUERY} isHeadersEditorEnabled />,
);
