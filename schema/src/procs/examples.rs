//! The example procs a newcomer finds on the first start of the embedded default, all runnable
//! by the local executor at once.

use serde_json::json;

use super::definition::ProcDefinition;
use super::service::upsert_proc;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::secrets::service::set_secrets;
use crate::state::AppState;

fn definition(value: serde_json::Value) -> ProcDefinition {
    serde_json::from_value(value).expect("example procs are valid definitions")
}

/// The example definitions: `say-hello`, `countdown` and `secret-demo`.
pub fn examples() -> Vec<ProcDefinition> {
    vec![
        definition(json!({
            "name": "say-hello",
            "description": "Greets NAME: the smallest possible proc.",
            "command": ["sh", "-c", "echo \"Hello, $NAME!\""],
            "args": [{ "name": "NAME", "description": "Who to greet", "required": true }],
            "author": "Proctor",
        })),
        definition(json!({
            "name": "countdown",
            "description": "Counts down from SECONDS, one line per second, then lifts off: \
                            watch its lines arrive live.",
            "command": ["sh", "-c",
                "i=$SECONDS; while [ \"$i\" -gt 0 ]; do echo \"$i\"; sleep 1; i=$((i-1)); done; echo liftoff"],
            "args": [{ "name": "SECONDS", "description": "Where to start", "type": "INT", "default": "5" }],
            "author": "Proctor",
        })),
        definition(json!({
            "name": "secret-demo",
            "description": "Prints its secret DEMO_TOKEN, which Proctor masks as *** in the logs.",
            "command": ["sh", "-c",
                "echo \"Calling the demo API with token $DEMO_TOKEN\"; echo \"(the token above is masked by Proctor)\""],
            "secrets": [{ "name": "DEMO_TOKEN", "description": "A random value set at first start" }],
            "author": "Proctor",
        })),
    ]
}

/// Registers the examples, and a random value for the demo secret.
pub async fn register_examples(state: &AppState) -> Result<(), ApiError> {
    let actor = Caller::system("proctord (example procs)");
    for example in examples() {
        upsert_proc(state, &actor, &example, "example: ").await?;
    }
    let mut token = [0_u8; 12];
    getrandom::fill(&mut token)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("system random generator: {e}")))?;
    set_secrets(
        state,
        &actor,
        "secret-demo",
        &[(
            "DEMO_TOKEN".to_owned(),
            format!("demo-{}", hex::encode(token)),
        )],
    )
    .await?;
    Ok(())
}
