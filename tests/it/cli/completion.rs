//! Shell completion through `clap_complete`'s dynamic engine: `proctor completions bash` is
//! sourced into a real bash, and its completion function is called as bash would call it on
//! <TAB>; the candidates come from the running server.

use proctor_tests::api::{proc, sh};
use tokio::process::Command;

use super::auth_app;

/// The candidates bash would offer for `line` (words, the last one being completed).
async fn complete(words: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let binary = proctor_tests::workspace_binary("proctor");
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    let current = words.last().copied().unwrap_or_default();
    let script = format!(
        "source <('{binary}' completions bash)\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD={index}\n\
         COMP_TYPE=9\n\
         _clap_complete_proctor proctor '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        binary = binary.display(),
        words = quoted.join(" "),
        index = words.len() - 1,
        previous = words[words.len() - 2],
    );
    let mut command = Command::new("bash");
    command.arg("-c").arg(script).env_remove("PROCTOR_CONTEXT");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), command.output())
        .await
        .expect("completion answers promptly")
        .expect("bash runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test]
async fn tab_completes_real_execution_ids_proc_names_and_enum_values() {
    let (app, admin) = auth_app().await;
    app.api_as(&admin)
        .define_proc(proc("greet", &sh("echo hi")))
        .await;
    app.api_as(&admin)
        .define_proc(proc("grumble", &sh("echo no")))
        .await;
    let first = app.api_as(&admin).execute("greet", &[]).await;
    let second = app.api_as(&admin).execute("grumble", &[]).await;
    let config = tempfile::tempdir().unwrap();
    let dir = config.path().to_str().unwrap();
    let host = app.address.to_string();
    let env = [
        ("PROCTOR_HOST", host.as_str()),
        ("PROCTOR_EMAIL", "admin@example.com"),
        ("PROCTOR_TOKEN", admin.as_str()),
        ("XDG_CONFIG_HOME", dir),
        ("LOCAL_CONFIG_DIR", dir),
    ];

    let ids = complete(&["proctor", "runs", "logs", ""], &env).await;
    assert!(
        ids.iter()
            .any(|c| c == &second || c.starts_with(&format!("{second}\t")))
            && ids
                .iter()
                .any(|c| c == &first || c.starts_with(&format!("{first}\t"))),
        "the server's execution ids: {ids:?}"
    );
    let procs = complete(&["proctor", "runs", "start", "gr"], &env).await;
    let names: Vec<&str> = procs
        .iter()
        .map(|c| c.split('\t').next().unwrap_or_default())
        .collect();
    assert_eq!(names, ["greet", "grumble"], "{procs:?}");
    let statuses = complete(&["proctor", "runs", "list", "--status", "t"], &env).await;
    assert_eq!(statuses, ["timed-out"], "{statuses:?}");
    let commands = complete(&["proctor", "ru"], &env).await;
    assert_eq!(commands, ["runs"], "{commands:?}");

    // Without a reachable server completion offers nothing rather than an error.
    let nowhere = format!("127.0.0.1:{}", proctor_tests::free_port());
    let mut offline = env;
    offline[0] = ("PROCTOR_HOST", nowhere.as_str());
    let none = complete(&["proctor", "runs", "logs", ""], &offline).await;
    // With no values to offer, clap offers the flags instead; nothing else (no error text).
    assert!(
        !none.is_empty() && none.iter().all(|c| c.starts_with("--")),
        "no ids without a server: {none:?}"
    );
}
