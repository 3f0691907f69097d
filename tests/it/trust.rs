//! What makes runs trustworthy to the outside: per-run identity tokens a standard JWT library
//! verifies against the served JWKS, the audit log's hash chain (`proctord audit verify`),
//! signed run receipts (`proctord receipts verify`), and live log alerts and `logMatches`.

use std::process::Output;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use proctor_tests::api::upsert_proc::{AlertInput, IdentityInput, NotificationsInput};
use proctor_tests::api::{
    ExecutionReceipt, ExecutionStatus, LogMatches, execution_receipt, log_matches, proc, secret, sh,
};
use proctor_tests::sinks::HttpSink;
use proctor_tests::{Stack, TestApp, proctord_command};
use sea_orm::ConnectionTrait as _;
use serde_json::Value;

on_both_stacks!(
    a_run_gets_an_identity_token_that_verifies_against_the_served_keys,
    the_audit_chain_verifies_and_names_an_edited_or_deleted_event,
    a_receipt_verifies_and_fails_once_a_stored_line_is_altered,
);

/// Runs `proctord <args>` against `app`'s database and data directory (key file).
fn proctord(app: &TestApp, args: &[&str]) -> Output {
    let directory = tempfile::tempdir().unwrap();
    let database = match &app.settings.storage.database {
        proctor_server::config::DatabaseTarget::Postgres { url } => url.to_string(),
        proctor_server::config::DatabaseTarget::Sqlite { path } => {
            format!("sqlite://{}", path.display())
        }
    };
    proctord_command(directory.path())
        .args(args)
        .arg(format!("--database-url={database}"))
        .arg(format!(
            "--data-dir={}",
            app.settings.storage.data_dir.display()
        ))
        .output()
        .expect("run proctord")
}

fn stdout(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn a_run_gets_an_identity_token_that_verifies_against_the_served_keys(stack: Stack) {
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&["--public-url=https://proctor.example.com/"])
        .try_spawn()
        .await
    else {
        return;
    };
    let api = app.api();
    // The run prints its token as is (masked) and with a space after each character (which
    // masking cannot know, so the test can read the token back).
    let mut input = proc(
        "deploy",
        &sh(
            r#"echo "token=$PROCTOR_ID_TOKEN"; printf '%s\n' "$PROCTOR_ID_TOKEN" | sed 's/./& /g'"#,
        ),
    );
    input.timeout_seconds = Some(600);
    input.identity = Some(IdentityInput {
        audience: vec!["sts.amazonaws.com".to_owned()],
    });
    api.define_proc(input).await;
    let started = chrono::Utc::now().timestamp();
    let (id, last) = api.run_to_end("deploy", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded, "{last:?}");
    let lines = api.stored_text(&id).await;
    assert_eq!(lines[0], "token=***", "the token is masked like a secret");
    let token: String = lines[1].split(' ').collect();
    assert_eq!(token.split('.').count(), 3, "a compact JWS: {token}");
    assert!(
        !lines.iter().any(|line| line.contains(&token)),
        "the token never appears unmasked in the stored output"
    );

    // Discovery, then the keys, as a cloud would fetch them.
    let discovery = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], "https://proctor.example.com");
    assert_eq!(
        discovery["jwks_uri"],
        "https://proctor.example.com/.well-known/jwks.json"
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"][0],
        "ES256"
    );
    let keys: JwkSet =
        serde_json::from_value(app.get_json("/.well-known/jwks.json").await).expect("a JWK set");
    let header = jsonwebtoken::decode_header(&token).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = keys
        .find(header.kid.as_deref().expect("a kid"))
        .expect("the signing key is published");
    let key = DecodingKey::from_jwk(jwk).expect("a usable key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["sts.amazonaws.com"]);
    validation.set_issuer(&["https://proctor.example.com"]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .expect("the token verifies")
        .claims;
    assert_eq!(claims["sub"], "proc:deploy");
    assert_eq!(claims["aud"], "sts.amazonaws.com");
    assert_eq!(claims["proc"], "deploy");
    assert_eq!(claims["proc_version"], 1);
    assert_eq!(claims["execution_id"], id.as_str());
    assert_eq!(claims["trigger"], "MANUAL");
    assert_eq!(claims["schedule_id"], Value::Null);
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() == 32));
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(iat >= started - 5 && iat <= chrono::Utc::now().timestamp() + 5);
    assert_eq!(exp - iat, 600 + 300, "the run's deadline plus five minutes");

    // Another audience, another key, or a changed claim: refused.
    let mut elsewhere = Validation::new(Algorithm::ES256);
    elsewhere.set_audience(&["vault.example.com"]);
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &elsewhere).is_err());
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged_claims = {
        use base64::Engine as _;
        let mut forged = claims.clone();
        forged["sub"] = "proc:admin".into();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string())
    };
    let forged = format!("{head}.{forged_claims}.{signature}");
    assert!(jsonwebtoken::decode::<Value>(&forged, &key, &validation).is_err());

    // A rotated key signs new runs; the old one stays published.
    let rotated = proctord(&app, &["signing", "rotate-key"]);
    assert!(rotated.status.success(), "{}", stdout(&rotated));
    // The served set is reused for a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let keys: JwkSet =
        serde_json::from_value(app.get_json("/.well-known/jwks.json").await).unwrap();
    assert!(keys.find(header.kid.as_deref().unwrap()).is_some());
    assert_eq!(keys.keys.len(), 2, "{keys:?}");
}

/// Waits until every audit event of `app` is chained.
async fn chained(app: &TestApp) -> u64 {
    for _ in 0..100 {
        let report = proctor_schema::auth::audit::verify(app.state.db(), None)
            .await
            .unwrap();
        if report.unsealed == 0 && report.verified > 0 {
            return report.verified;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the audit events were not chained within 10 s");
}

async fn the_audit_chain_verifies_and_names_an_edited_or_deleted_event(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    let mut input = proc("audited", &["true"]);
    input.secrets = Some(vec![secret("TOKEN")]);
    api.define_proc(input.clone()).await;
    api.set_secrets("audited", &[("TOKEN", "t0ken-value")])
        .await
        .unwrap();
    input.description = Some("changed".to_owned());
    api.define_proc(input).await;
    api.execute("audited", &[]).await;
    let events = chained(&app).await;
    assert!(events >= 4, "{events} events");

    let verified = proctord(&app, &["audit", "verify"]);
    let text = stdout(&verified);
    assert!(verified.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "audit chain intact: {events} event(s); head {events}:"
        )),
        "{text}"
    );
    let head: String = text
        .split("head ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(!text.contains("t0ken-value"));

    // Someone with database access rewrites who did the second event.
    let db = app.state.db();
    db.execute_unprepared(
        "UPDATE audit_events SET actor = 'nobody@example.com' WHERE chain_seq = 2",
    )
    .await
    .unwrap();
    let edited = proctord(&app, &["audit", "verify"]);
    let text = stdout(&edited);
    assert!(!edited.status.success(), "{text}");
    assert!(
        text.contains("audit chain BROKEN at event #2") && text.contains("was altered"),
        "{text}"
    );
    assert!(text.contains("1 event(s) before it verified"), "{text}");

    // Put it back: intact again. Then delete the third.
    db.execute_unprepared("UPDATE audit_events SET actor = NULL WHERE chain_seq = 2")
        .await
        .unwrap();
    let restored = proctord(&app, &["audit", "verify", "--expect-head", &head]);
    assert!(restored.status.success(), "{}", stdout(&restored));

    // Deleting the newest event leaves a shorter valid chain; the recorded head catches it.
    db.execute_unprepared(&format!(
        "DELETE FROM audit_events WHERE chain_seq = {events}"
    ))
    .await
    .unwrap();
    let shorter = proctord(&app, &["audit", "verify"]);
    assert!(shorter.status.success(), "{}", stdout(&shorter));
    let truncated = proctord(&app, &["audit", "verify", "--expect-head", &head]);
    let text = stdout(&truncated);
    assert!(!truncated.status.success(), "{text}");
    assert!(text.contains("deleted from the end"), "{text}");

    // An event in the middle goes.
    db.execute_unprepared("DELETE FROM audit_events WHERE chain_seq = 2")
        .await
        .unwrap();
    let deleted = proctord(&app, &["audit", "verify"]);
    let text = stdout(&deleted);
    assert!(!deleted.status.success(), "{text}");
    assert!(text.contains("event #2 is missing (deleted)"), "{text}");
}

async fn a_receipt_verifies_and_fails_once_a_stored_line_is_altered(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    let mut input = proc("billing", &sh("echo one; echo two; echo three"));
    input.secrets = Some(vec![secret("API_KEY")]);
    input.args = Some(vec![proctor_tests::api::arg("REGION")]);
    api.define_proc(input).await;
    api.set_secrets("billing", &[("API_KEY", "k3y-never-in-receipts")])
        .await
        .unwrap();
    let (id, _) = api.run_to_end("billing", &[("REGION", "eu")]).await;
    let execution = api
        .ok::<ExecutionReceipt>(execution_receipt::Variables { id: id.clone() })
        .await
        .execution
        .expect("the execution");
    let receipt = execution.receipt.expect("a finished run has a receipt");
    assert_eq!(receipt.algorithm, "ES256");
    assert!(!receipt.payload.contains("k3y-never-in-receipts"));
    let payload: Value = serde_json::from_str(&receipt.payload).unwrap();
    assert_eq!(payload["execution"], id.as_str());
    assert_eq!(payload["proc"], "billing");
    assert_eq!(payload["procVersion"], 1);
    assert_eq!(payload["args"]["REGION"], "eu");
    assert_eq!(payload["secrets"], serde_json::json!(["API_KEY"]));
    assert_eq!(payload["trigger"], "MANUAL");
    assert_eq!(payload["status"], "SUCCEEDED");
    assert_eq!(payload["exitCode"], 0);
    assert_eq!(payload["output"]["lines"], 3);
    assert_eq!(payload["definitionSha256"].as_str().map(str::len), Some(64));

    // Verified with a standard library against the served key, not with our own code.
    let keys: JwkSet =
        serde_json::from_value(app.get_json("/.well-known/jwks.json").await).unwrap();
    let key = DecodingKey::from_jwk(keys.find(&receipt.key_id).expect("published")).unwrap();
    assert!(
        jsonwebtoken::crypto::verify(
            &receipt.signature,
            receipt.payload.as_bytes(),
            &key,
            Algorithm::ES256
        )
        .unwrap()
    );
    assert!(
        !jsonwebtoken::crypto::verify(
            &receipt.signature,
            receipt.payload.replace("\"eu\"", "\"us\"").as_bytes(),
            &key,
            Algorithm::ES256
        )
        .unwrap_or(false)
    );

    let verified = proctord(&app, &["receipts", "verify", "--execution", &id]);
    assert!(verified.status.success(), "{}", stdout(&verified));
    assert!(stdout(&verified).contains(&format!("ok        execution {id}")));

    app.state
        .db()
        .execute_unprepared(&format!(
            "UPDATE execution_logs SET line = 'tw0' WHERE execution_id = {id} AND seq = 2"
        ))
        .await
        .unwrap();
    let altered = proctord(&app, &["receipts", "verify", "--execution", &id]);
    let text = stdout(&altered);
    assert!(!altered.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "FAILED    execution {id}: the stored output differs"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn an_alert_fires_while_the_run_is_still_going() {
    let mut hooks = HttpSink::start().await;
    let app = TestApp::spawn().await;
    let api = app.api();
    let mut input = proc(
        "backup",
        &sh("sleep 2; echo 'ERROR: disk full'; echo 'ERROR: still full'; sleep 8; echo done"),
    );
    input.notifications = Some(NotificationsInput {
        emails: None,
        slack_webhook_url: None,
        webhook_url: Some(hooks.url("/alerts")),
        on: None,
    });
    input.alerts = Some(vec![AlertInput {
        pattern: "^ERROR".to_owned(),
        notify: vec!["webhook".to_owned()],
        once: None,
    }]);
    api.define_proc(input).await;
    let id = api.execute("backup", &[]).await;
    let started = std::time::Instant::now();

    let alert = hooks.next_request(Duration::from_secs(9)).await;
    let body = alert.json();
    assert_eq!(body["event"], "execution.alert", "{body}");
    assert_eq!(alert.headers["x-proctor-event"], "execution.alert");
    assert_eq!(body["alert"]["line"], "ERROR: disk full");
    assert_eq!(body["alert"]["pattern"], "^ERROR");
    assert_eq!(body["execution"]["id"], id.as_str());
    assert_eq!(body["execution"]["status"], "RUNNING");
    assert!(
        !api.status(&id).await.is_final(),
        "the alert arrived {:?} after the start, before the run ended",
        started.elapsed()
    );

    // The run's end is the next (and last) request: the second ERROR line fired nothing.
    let finished = hooks.next_request(Duration::from_secs(20)).await;
    assert_eq!(finished.json()["event"], "execution.finished");
    assert!(api.status(&id).await.is_final());
}

#[tokio::test]
async fn bad_alert_rules_are_refused_with_the_field() {
    let app = TestApp::spawn().await;
    let api = app.api();
    for (pattern, notify, field, says) in [
        (
            "(unclosed",
            "webhook",
            "alerts[0].pattern",
            "not a valid regular expression",
        ),
        (
            "(?:a{1000}){1000}",
            "webhook",
            "alerts[0].pattern",
            "too big",
        ),
        (
            "ok",
            "pager",
            "alerts[0].notify[0]",
            "neither an e-mail address",
        ),
    ] {
        let mut input = proc("alerting", &["true"]);
        input.alerts = Some(vec![AlertInput {
            pattern: pattern.to_owned(),
            notify: vec![notify.to_owned()],
            once: None,
        }]);
        let failure = api.try_define_proc(input).await.unwrap_err();
        let text = format!("{failure:?}");
        assert!(text.contains(field) && text.contains(says), "{text}");
    }
    let mut input = proc("alerting", &["true"]);
    input.identity = Some(IdentityInput { audience: vec![] });
    let failure = api.try_define_proc(input).await.unwrap_err();
    assert!(format!("{failure:?}").contains("identity.audience"));
}

#[tokio::test]
async fn log_matches_streams_matching_lines_of_visible_runs_only() {
    let app = TestApp::builder()
        .with_args(&["--auth-enabled"])
        .spawn()
        .await;
    let admin = app.api_as(&app.issue_token("root@example.com", &[], true).await);
    let ada = app.api_as(&app.issue_token("ada@example.com", &["ops"], false).await);
    let script = "for i in 1 2 3; do echo \"hit $i from $0\"; echo noise; sleep 0.2; done";
    for (name, group) in [("visible", "ops"), ("hidden", "finance")] {
        let mut input = proc(name, &["sh", "-c", script, name]);
        input.authorized_groups = Some(vec![group.to_owned()]);
        admin.define_proc(input).await;
    }
    let mut live = ada
        .open::<LogMatches>(log_matches::Variables {
            proc: None,
            pattern: "^hit".to_owned(),
        })
        .await;
    // Let the subscription start before the runs do.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (first, second, hidden) = tokio::join!(
        admin.execute("visible", &[]),
        admin.execute("visible", &[]),
        admin.execute("hidden", &[]),
    );
    for id in [&first, &second, &hidden] {
        admin.poll_final(id, Duration::from_secs(30)).await;
    }
    // A last visible run marks the end: everything before it has been delivered.
    let mut sentinel = proc("sentinel", &sh("echo hit sentinel"));
    sentinel.authorized_groups = Some(vec!["ops".to_owned()]);
    admin.define_proc(sentinel).await;
    let last = admin.execute("sentinel", &[]).await;
    let mut seen = Vec::new();
    loop {
        let found = live
            .next()
            .await
            .expect("the subscription goes on")
            .expect("a match")
            .log_matches;
        if found.execution_id == last {
            assert_eq!(found.line.line, "hit sentinel");
            break;
        }
        seen.push((found.execution_id, found.proc, found.line.line));
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    for (execution, proc, line) in &seen {
        assert_eq!(proc, "visible");
        assert!(*execution == first || *execution == second, "{seen:?}");
        assert!(
            line.starts_with("hit ") && line.ends_with("from visible"),
            "{line}"
        );
    }
    for id in [&first, &second] {
        assert_eq!(seen.iter().filter(|(e, _, _)| e == id).count(), 3);
    }

    // A pattern that is not a valid regular expression is refused before anything streams.
    let refused = ada
        .subscribe::<LogMatches>(log_matches::Variables {
            proc: None,
            pattern: "(".to_owned(),
        })
        .await;
    assert!(format!("{refused:?}").contains("pattern"), "{refused:?}");
}
