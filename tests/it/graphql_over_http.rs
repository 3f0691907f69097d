//! `/graphql` against the server rules of the GraphQL over HTTP specification
//! (graphql.github.io/graphql-over-http): media types, status codes, the shape of request
//! errors, and the GET rules. See `server/src/graphql_http.rs`.

use proctor_tests::TestApp;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// What came back: status, the content type's essence, and the body as JSON.
struct Answer {
    status: u16,
    media: String,
    body: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    Answer {
        status,
        media,
        body,
    }
}

/// POSTs `body` (raw text) as JSON with `accept` (none when `None`).
async fn post(app: &TestApp, accept: Option<&str>, body: &str) -> Answer {
    let mut request = reqwest::Client::new()
        .post(app.url("/graphql"))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    answer(request.send().await.expect("the server answers")).await
}

async fn get(app: &TestApp, accept: Option<&str>, query: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new().get(with_params(app, query));
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    answer(request.send().await.expect("the server answers")).await
}

/// `/graphql?<params>`, URL-encoded.
fn with_params(app: &TestApp, params: &[(&str, &str)]) -> url::Url {
    url::Url::parse_with_params(&app.url("/graphql"), params).expect("a URL")
}

fn op(query: &str, variables: Value) -> String {
    json!({ "query": query, "variables": variables }).to_string()
}

/// A request error: errors, and no `data` entry at all.
fn assert_request_error(answer: &Answer, what: &str) {
    let body = answer.body.as_object().expect("an object");
    assert!(
        !body.contains_key("data"),
        "{what}: no data entry: {}",
        answer.body
    );
    assert!(
        body["errors"]
            .as_array()
            .is_some_and(|errors| !errors.is_empty()),
        "{what}: {}",
        answer.body
    );
}

#[tokio::test]
async fn the_accept_header_chooses_the_media_type_and_its_content_type() {
    let app = TestApp::spawn().await;
    let query = op("{ serverInfo { version } }", json!({}));
    for (accept, media) in [
        (None, JSON),
        (Some("*/*"), JSON),
        (Some("application/json"), JSON),
        (Some("application/graphql-response+json"), GRAPHQL_RESPONSE),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            GRAPHQL_RESPONSE,
        ),
        (
            Some("application/graphql-response+json;q=0.5, application/json"),
            JSON,
        ),
    ] {
        let got = post(&app, accept, &query).await;
        assert_eq!(got.status, 200, "{accept:?}: {}", got.body);
        assert_eq!(got.media, media, "{accept:?}");
        assert_eq!(
            got.body["data"]["serverInfo"]["version"],
            env!("CARGO_PKG_VERSION")
        );
    }
    let refused = post(&app, Some("text/html"), &query).await;
    assert_eq!(refused.status, 406, "{}", refused.body);
    assert_eq!(refused.media, JSON);
}

#[tokio::test]
async fn request_errors_are_400_under_graphql_response_json_and_200_under_json_without_data() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "a document that does not parse",
            op("{ serverInfo { ", json!({})),
        ),
        (
            "a field that does not exist",
            op("{ noSuchField }", json!({})),
        ),
        (
            "a variable that does not coerce",
            op(
                "query($id: ID!) { execution(id: $id) { id } }",
                json!({ "id": { "not": "an id" } }),
            ),
        ),
        (
            "a missing required variable",
            op("query($id: ID!) { execution(id: $id) { id } }", json!({})),
        ),
        (
            "an operation name that is not in the document",
            json!({ "query": "query A { serverInfo { version } }", "operationName": "B" })
                .to_string(),
        ),
    ];
    for (what, body) in &cases {
        let strict = post(&app, Some(GRAPHQL_RESPONSE), body).await;
        assert_eq!(strict.status, 400, "{what}: {}", strict.body);
        assert_eq!(strict.media, GRAPHQL_RESPONSE, "{what}");
        assert_request_error(&strict, what);
        let legacy = post(&app, Some(JSON), body).await;
        assert_eq!(legacy.status, 200, "{what}: {}", legacy.body);
        assert_eq!(legacy.media, JSON, "{what}");
        assert_request_error(&legacy, what);
    }
}

#[tokio::test]
async fn what_is_not_a_graphql_request_is_400_in_either_media_type() {
    let app = TestApp::spawn().await;
    for accept in [GRAPHQL_RESPONSE, JSON] {
        for (body, says) in [
            ("{not json", "not JSON"),
            ("[]", "JSON object"),
            (r#"{"variables":{}}"#, "query is missing"),
            (r#"{"query":["{ a }"]}"#, "query must be a string"),
            (
                r#"{"query":"{ a }","variables":"{}"}"#,
                "variables must be an object",
            ),
        ] {
            let got = post(&app, Some(accept), body).await;
            assert_eq!(got.status, 400, "{accept} {body}: {}", got.body);
            assert_eq!(got.media, accept, "{body}");
            assert_request_error(&got, body);
            let message = got.body["errors"][0]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(message.contains(says), "{body}: {message}");
        }
    }
}

#[tokio::test]
async fn an_executed_request_is_200_with_data_even_when_a_field_failed() {
    let app = TestApp::spawn().await;
    // A nullable field that fails: data holds the rest.
    let got = post(
        &app,
        Some(GRAPHQL_RESPONSE),
        &op(
            "query($id: ID!) { execution(id: $id) { id } serverInfo { version } }",
            json!({ "id": "not-a-number" }),
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(
        got.body["errors"]
            .as_array()
            .is_some_and(|errors| !errors.is_empty()),
        "a field error: {}",
        got.body
    );
    assert_eq!(
        got.body["data"]["serverInfo"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    // A non-null root field that fails: data is null, and still there.
    let got = post(
        &app,
        Some(GRAPHQL_RESPONSE),
        &op("mutation { deleteProc(name: \"no-such-proc\") }", json!({})),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let body = got.body.as_object().expect("an object");
    assert_eq!(body.get("data"), Some(&Value::Null), "{}", got.body);
    assert!(body["errors"][0]["path"].is_array(), "{}", got.body);
}

#[tokio::test]
async fn post_needs_the_json_content_type() {
    let app = TestApp::spawn().await;
    let query = op("{ serverInfo { version } }", json!({}));
    let client = reqwest::Client::new();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = client.post(app.url("/graphql")).body(query.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let status = request.send().await.expect("answers").status().as_u16();
        assert_eq!(status, 415, "{content_type:?}");
    }
    let with_charset = client
        .post(app.url("/graphql"))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(query)
        .send()
        .await
        .expect("answers");
    assert_eq!(with_charset.status().as_u16(), 200);
}

#[tokio::test]
async fn get_runs_queries_from_the_url_and_refuses_mutations() {
    let app = TestApp::spawn().await;
    let got = get(
        &app,
        Some(GRAPHQL_RESPONSE),
        &[
            ("query", "query Info($n: Int) { serverInfo { version } executions(first: $n) { edges { cursor } } }"),
            ("operationName", "Info"),
            ("variables", r#"{"n":1}"#),
        ],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.media, GRAPHQL_RESPONSE);
    assert_eq!(
        got.body["data"]["serverInfo"]["version"],
        env!("CARGO_PKG_VERSION")
    );

    let response = reqwest::Client::new()
        .get(with_params(
            &app,
            &[("query", "mutation { deleteProc(name: \"x\") }")],
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");

    let bad = get(
        &app,
        None,
        &[("query", "{ serverInfo { version } }"), ("variables", "{")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_request_error(&bad, "variables that are not JSON");
    let unparsed = get(&app, Some(GRAPHQL_RESPONSE), &[("query", "{ serverInfo {")]).await;
    assert_eq!(unparsed.status, 400, "{}", unparsed.body);
    assert_request_error(&unparsed, "a document that does not parse");
    let missing = get(&app, Some(JSON), &[]).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
}
