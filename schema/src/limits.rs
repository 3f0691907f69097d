//! What one GraphQL response may hold, whatever the query asks for.
//!
//! Three layers, each a different attack:
//! - Cost before execution: list fields multiply the cost of what is under them by their
//!   `first` (see the `complexity` attributes on `executions`, `logs`, `schedules`, `runs`),
//!   so a query asking for a hundred executions with ten thousand lines each is refused by
//!   `PROCTOR_GRAPHQL_MAX_COMPLEXITY` with an error that says so, before anything is read.
//! - A budget during execution: every response (an HTTP request or one websocket operation)
//!   gets a [`ResponseBudget`] of [`MAX_LINES_PER_RESPONSE`] log lines and
//!   [`MAX_RESPONSE_BYTES`] bytes of log text, shared by all its fields (aliases included).
//!   Stored lines are read page by page and charged before the next page is read, so memory
//!   stays bounded even when the cost limit was raised.
//! - Echo caps: an error message never quotes more than [`MAX_ECHOED_MESSAGE`] bytes of
//!   what the caller sent.
//!
//! Input hygiene lives here too: no input string may hold a NUL character (Postgres cannot
//! store one and C programs would cut the value at it). Variables and inline literals of every
//! GraphQL operation are checked before it runs, and the REST shim checks its bodies with
//! [`nul_path_json`]; the error is `BAD_USER_INPUT` naming the field.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest,
    NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Request, Response, ServerError, ServerResult, ValidationResult, Variables};

use crate::error::{ApiError, MAX_ECHOED_MESSAGE, cap_echo};

/// Log lines one response may hold.
pub const MAX_LINES_PER_RESPONSE: usize = 10_000;
/// Bytes of log text one response may hold.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// What is left of one response's allowance.
#[derive(Debug)]
pub struct ResponseBudget {
    lines: AtomicUsize,
    bytes: AtomicUsize,
}

impl Default for ResponseBudget {
    fn default() -> Self {
        Self {
            lines: AtomicUsize::new(MAX_LINES_PER_RESPONSE),
            bytes: AtomicUsize::new(MAX_RESPONSE_BYTES),
        }
    }
}

impl ResponseBudget {
    /// How many more lines may be added.
    pub fn lines_left(&self) -> usize {
        self.lines.load(Ordering::Acquire)
    }

    /// Takes `lines` lines of `bytes` bytes from the allowance, or says which limit they
    /// would pass (and takes nothing).
    pub fn charge(&self, lines: usize, bytes: usize) -> Result<(), ApiError> {
        take(&self.lines, lines).map_err(|()| {
            ApiError::LimitExceeded(format!(
                "this response would hold more than {MAX_LINES_PER_RESPONSE} log lines; \
                 ask for fewer (first) and page with afterSeq"
            ))
        })?;
        take(&self.bytes, bytes).map_err(|()| {
            self.lines.fetch_add(lines, Ordering::AcqRel);
            ApiError::LimitExceeded(format!(
                "this response would hold more than {} MiB of log text; ask for fewer lines \
                 (first) and page with afterSeq",
                MAX_RESPONSE_BYTES / (1024 * 1024)
            ))
        })
    }
}

fn take(counter: &AtomicUsize, amount: usize) -> Result<(), ()> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            left.checked_sub(amount)
        })
        .map(|_| ())
        .map_err(|_| ())
}

/// The extension giving every request a [`ResponseBudget`] and explaining and capping errors.
pub struct ResponseLimits;

impl ExtensionFactory for ResponseLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ResponseLimitsExtension)
    }
}

struct ResponseLimitsExtension;

#[async_trait::async_trait]
impl Extension for ResponseLimitsExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        for error in &mut response.errors {
            if error.message.len() > MAX_ECHOED_MESSAGE {
                error.message = cap_echo(std::mem::take(&mut error.message), MAX_ECHOED_MESSAGE);
            }
        }
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        for (name, value) in request.variables.iter() {
            if let Some(path) = nul_path_const(value, name.as_str()) {
                return Err(nul_error(&path));
            }
        }
        if request.query.contains('\0')
            || request
                .query
                .as_bytes()
                .windows(6)
                .any(|window| window.eq_ignore_ascii_case(b"\\u0000"))
        {
            return Err(nul_error("query"));
        }
        next.run(ctx, request.data(ResponseBudget::default())).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        for (_, operation) in document.operations.iter() {
            if operation.node.ty != OperationType::Subscription {
                continue;
            }
            let mut seen = Vec::new();
            let fields = root_fields(&document, &operation.node.selection_set.node, &mut seen);
            if fields > 1 {
                return Err(ServerError::new(
                    format!(
                        "a subscription selects exactly one root field (this one selects \
                         {fields}); open one subscription per field"
                    ),
                    Some(operation.pos),
                ));
            }
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|mut error| {
                    if error.message == "Query is too complex." {
                        error.message = "Query is too complex: its cost (each field 1, list \
                                         fields multiplied by their `first`) passes \
                                         PROCTOR_GRAPHQL_MAX_COMPLEXITY; ask for fewer items \
                                         or fewer fields and page"
                            .to_owned();
                    }
                    error
                })
                .collect()
        })
    }
}

/// How many root fields `set` selects (`__typename` aside), through fragments; `seen` guards
/// against fragment cycles (validation reports those later).
fn root_fields<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    seen: &mut Vec<&'d str>,
) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => usize::from(field.node.name.node.as_str() != "__typename"),
            Selection::InlineFragment(fragment) => {
                root_fields(document, &fragment.node.selection_set.node, seen)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if seen.contains(&name) {
                    return 0;
                }
                seen.push(name);
                document
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .map_or(0, |fragment| {
                        root_fields(document, &fragment.node.selection_set.node, seen)
                    })
            }
        })
        .sum()
}

fn nul_error(path: &str) -> ServerError {
    let error = ApiError::bad_input(path, "must not contain NUL characters (\\u0000)");
    let mut server_error = ServerError::new(error.to_string(), None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", error.code());
    extensions.set("field", path);
    server_error.extensions = Some(extensions);
    server_error
}

/// The path of the first string (or object key) in a GraphQL value holding a NUL character
/// (the JSON walk of [`nul_path_json`]; only strings matter, and they convert as they are).
pub fn nul_path_const(value: &async_graphql::Value, path: &str) -> Option<String> {
    let json = value.clone().into_json().ok()?;
    nul_path_json(&json, path)
}

/// The path of the first string (or object key) in `value` holding a NUL character, under
/// `path` (`""` at the top: a REST body).
pub fn nul_path_json(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('\0') => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path_json(item, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let here = if path.is_empty() {
                key.replace('\0', "\\u0000")
            } else {
                format!("{path}.{}", key.replace('\0', "\\u0000"))
            };
            if key.contains('\0') {
                Some(here)
            } else {
                nul_path_json(item, &here)
            }
        }),
        _ => None,
    }
}

/// The budget of the current operation (a fresh one when the schema was built without
/// [`ResponseLimits`], e.g. in a unit test: the per-field limits still hold).
pub fn budget<'a>(ctx: &'a async_graphql::Context<'_>) -> Option<&'a ResponseBudget> {
    ctx.data_opt::<ResponseBudget>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_found_with_their_path() {
        let body = serde_json::json!({ "name": "ok", "args": { "who": "a\u{0}b" } });
        assert_eq!(nul_path_json(&body, "").as_deref(), Some("args.who"));
        let list = serde_json::json!([{ "name": "x" }, { "name": "\u{0}" }]);
        assert_eq!(nul_path_json(&list, "").as_deref(), Some("[1].name"));
        assert_eq!(nul_path_json(&serde_json::json!({ "a": ["b"] }), ""), None);
        let value = async_graphql::Value::from_json(serde_json::json!({
            "description": "x\u{0}"
        }))
        .unwrap();
        assert_eq!(
            nul_path_const(&value, "input").as_deref(),
            Some("input.description")
        );
    }

    #[test]
    fn the_budget_refuses_what_would_pass_either_limit_and_takes_nothing_then() {
        let budget = ResponseBudget::default();
        budget.charge(9_000, 1_000).unwrap();
        let refused = budget.charge(1_001, 10).unwrap_err();
        assert_eq!(refused.code(), "LIMIT_EXCEEDED");
        assert!(refused.to_string().contains("10000 log lines"), "{refused}");
        assert_eq!(budget.lines_left(), 1_000);
        let refused = budget.charge(10, MAX_RESPONSE_BYTES).unwrap_err();
        assert!(refused.to_string().contains("MiB"), "{refused}");
        assert_eq!(budget.lines_left(), 1_000, "a refused charge takes nothing");
        budget.charge(1_000, 10).unwrap();
        assert_eq!(budget.lines_left(), 0);
    }
}
