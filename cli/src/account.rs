//! Who and where: `login`, `context add|use|list|delete`, `whoami`, `version`, the v2
//! `config` and `config show`; and the administrators' `tokens` and `audit`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::api::{
    Api, AuditEvents, CreateToken, ListUsers, RevokeToken, ServerInfo, Whoami, audit_events,
    create_token, list_users, revoke_token, server_info, whoami,
};
use crate::config::{self, Context, Contexts, Selection};
use crate::error::CliError;
use crate::output::{Out, age, col, green, pair, red, strip_controls, wide};
use crate::procs::enum_name;

/// The first line of `proctor version`, kept from the Go CLI.
const BANNER: &str = "Proctor: A Developer Friendly Automation Orchestrator";

/// `proctor config KEY=VALUE…`: checks every pair, then merges them into the file (other keys
/// stay), which only its owner can read.
pub fn config_set(pairs: &[String]) -> Result<(), CliError> {
    let mut updates = BTreeMap::new();
    for item in pairs {
        let Some((key, value)) = item.split_once('=') else {
            return Err(CliError::Usage(format!(
                "Incorrect config key-value pair format: {item}. Correct format: CONFIG_KEY=VALUE"
            )));
        };
        let key = key.trim().to_uppercase();
        config::check_value(&key, value)?;
        updates.insert(key, value.trim().to_owned());
    }
    let mut values = config::read_file()?;
    values.extend(updates);
    let path = config::write_file(&values)?;
    anstream::println!("{}", green("Proctor client configured successfully"));
    anstream::println!("{}", pair("Config file", path.display()));
    Ok(())
}

/// `proctor config show`: the file, with the access token hidden.
pub fn config_show() -> Result<(), CliError> {
    let path = config::path();
    if !path.exists() {
        anstream::println!(
            "{}",
            red(&format!("Client Config is absent: {}", path.display()))
        );
        anstream::println!(
            "{}",
            red("Setup config using `proctor config PROCTOR_HOST=some.host ...`")
        );
        return Ok(());
    }
    for (key, value) in config::read_file()? {
        let shown = if key == "ACCESS_TOKEN" {
            "******".to_owned()
        } else {
            value
        };
        println!("{key}: {shown}");
    }
    Ok(())
}

/// `proctor whoami`.
pub async fn whoami(api: &Api, out: &Out) -> Result<(), CliError> {
    let me = api.run::<Whoami>(whoami::Variables {}).await?.me;
    let named = |me: &Option<_>| {
        me.iter()
            .map(|m: &whoami::WhoamiMe| format!("user/{}", m.email.clone().unwrap_or_default()))
            .collect()
    };
    if out.shown(&me, named)? {
        return Ok(());
    }
    let Some(me) = me else {
        anstream::println!(
            "Not signed in: no credentials were sent (set EMAIL_ID and ACCESS_TOKEN)."
        );
        return Ok(());
    };
    anstream::println!("{}", pair("Email", me.email.as_deref().unwrap_or("-")));
    if let Some(name) = &me.name {
        anstream::println!("{}", pair("Name", name));
    }
    anstream::println!("{}", pair("Groups", me.groups.join(", ")));
    anstream::println!(
        "{}",
        pair("Administrator", if me.admin { "yes" } else { "no" })
    );
    Ok(())
}

/// `proctor version`: this client, and the server when one is configured (advisory: an
/// unreachable server is reported on stderr, the command still succeeds).
pub async fn version(selection: &Selection) -> Result<(), CliError> {
    println!("{BANNER} v{}", env!("CARGO_PKG_VERSION"));
    let config = config::load(selection)?;
    if !config.host_configured {
        return Ok(());
    }
    let answer = match Api::new(config) {
        Ok(api) => api.run::<ServerInfo>(server_info::Variables {}).await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(data) => {
            let info = data.server_info;
            let line = format!(
                "Server: proctord v{} (storage {}, event bus {}, executor {}, auth {})",
                info.version,
                enum_name(&info.storage).to_lowercase(),
                enum_name(&info.event_bus).to_lowercase(),
                enum_name(&info.executor).to_lowercase(),
                if info.auth_enabled { "on" } else { "off" }
            );
            println!("{}", strip_controls(&line));
        }
        Err(error) => eprintln!(
            "{}",
            crate::output::strip_controls_keep_lines(&format!("Server: {error}"))
        ),
    }
    Ok(())
}

/// `proctor context …`.
#[derive(Subcommand, Debug)]
pub enum ContextAction {
    /// Add or change a context (a token is read from stdin with --token-stdin)
    Add {
        /// Its name.
        name: String,
        /// host:port or an http(s) URL.
        #[arg(long = "server", value_name = "HOST")]
        server: String,
        /// The e-mail sent with the token.
        #[arg(long)]
        email: Option<String>,
        /// Read the token from stdin.
        #[arg(long)]
        token_stdin: bool,
        /// The limit on each HTTP call, in seconds.
        #[arg(long)]
        timeout_secs: Option<u64>,
        /// Make it the current context.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Make a context the current one
    Use {
        /// Its name.
        #[arg(add = crate::complete::contexts())]
        name: String,
    },
    /// List the contexts (tokens are never shown)
    List,
    /// Remove a context
    Delete {
        /// Its name.
        #[arg(add = crate::complete::contexts())]
        name: String,
    },
}

/// `proctor login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The server: host:port or an http(s) URL (default: the current context's, else
    /// 127.0.0.1:5001).
    #[arg(long = "server", value_name = "HOST")]
    server: Option<String>,
    /// The e-mail the token was issued to.
    #[arg(long)]
    email: Option<String>,
    /// The context to store it in (default: the current one, else "default").
    #[arg(long = "name", value_name = "CONTEXT")]
    name: Option<String>,
}

/// A context as `context list` shows it: never the token.
#[derive(Debug, Serialize)]
struct ContextRow {
    name: String,
    current: bool,
    host: String,
    email: Option<String>,
    token: bool,
}

/// Reads a token: all of stdin (trimmed), or a hidden prompt on a terminal.
fn read_token() -> Result<String, CliError> {
    let token = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("API token (input hidden): ")
            .map_err(|e| CliError::Io(format!("cannot read the token: {e}")))?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Io(format!("cannot read the token from stdin: {e}")))?;
        text
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(CliError::Usage(
            "no token given (pipe it in or type it at the prompt; `proctord users add` issues \
             one)"
                .into(),
        ));
    }
    Ok(token)
}

/// `proctor login`: checks the token against the server, then stores it in a context (file
/// mode 0600) and makes that context current.
pub async fn login(selection: &Selection, out: &Out, args: LoginArgs) -> Result<(), CliError> {
    let mut contexts = Contexts::load()?;
    let name = args
        .name
        .or_else(|| selection.context.clone())
        .or_else(|| contexts.current_context.clone())
        .unwrap_or_else(|| "default".to_owned());
    config::check_context_name(&name)?;
    let existing = contexts.contexts.get(&name).cloned().unwrap_or_default();
    let host = args
        .server
        .or_else(|| selection.host.clone())
        .or_else(|| (!existing.host.is_empty()).then(|| existing.host.clone()))
        .unwrap_or_else(|| config::DEFAULT_HOST.to_owned());
    let base_url = config::base_url(&host)?;
    let email = args.email.or(existing.email.clone());
    let token = read_token()?;
    let api = Api::new(config::Config {
        base_url: base_url.clone(),
        email: email.clone(),
        access_token: Some(token.clone()),
        timeout: std::time::Duration::from_secs(existing.timeout_secs.unwrap_or(10)),
        host_configured: true,
        withheld: None,
    })?;
    let me = api.run::<Whoami>(whoami::Variables {}).await?.me;
    let info = api
        .run::<ServerInfo>(server_info::Variables {})
        .await?
        .server_info;
    let who = match (&me, info.auth_enabled) {
        (Some(me), _) => me.email.clone().unwrap_or_else(|| "?".into()),
        (None, false) => "nobody (the server does not check tokens)".to_owned(),
        (None, true) => {
            return Err(CliError::Server {
                code: Some("UNAUTHENTICATED".into()),
                message: "the server did not accept this token".into(),
                field: None,
            });
        }
    };
    contexts.contexts.insert(
        name.clone(),
        Context {
            host,
            email,
            token: Some(token),
            timeout_secs: existing.timeout_secs,
        },
    );
    contexts.current_context = Some(name.clone());
    let path = contexts.save()?;
    out.one(
        &serde_json::json!({ "context": name, "server": base_url, "user": who }),
        |_| format!("context/{name}"),
        |_| {
            anstream::println!(
                "{}",
                green(&strip_controls(&format!(
                    "Logged in to {base_url} as {who}; context {name:?} is current."
                )))
            );
            anstream::println!("{}", pair("Config file", path.display()));
        },
    )
}

/// `proctor context …`.
pub fn context(out: &Out, action: ContextAction) -> Result<(), CliError> {
    let mut contexts = Contexts::load()?;
    match action {
        ContextAction::Add {
            name,
            server,
            email,
            token_stdin,
            timeout_secs,
            make_current,
        } => {
            config::check_context_name(&name)?;
            config::base_url(&server)?;
            if timeout_secs == Some(0) {
                return Err(CliError::Usage("--timeout-secs must be positive".into()));
            }
            let token = if token_stdin {
                Some(read_token()?)
            } else {
                contexts.contexts.get(&name).and_then(|c| c.token.clone())
            };
            contexts.contexts.insert(
                name.clone(),
                Context {
                    host: server,
                    email,
                    token,
                    timeout_secs,
                },
            );
            if make_current || contexts.current_context.is_none() {
                contexts.current_context = Some(name.clone());
            }
            contexts.save()?;
            context_done(out, &name, "saved")
        }
        ContextAction::Use { name } => {
            contexts.get(&name)?;
            contexts.current_context = Some(name.clone());
            contexts.save()?;
            context_done(out, &name, "current")
        }
        ContextAction::Delete { name } => {
            contexts.get(&name)?;
            contexts.contexts.remove(&name);
            if contexts.current_context.as_deref() == Some(name.as_str()) {
                contexts.current_context = None;
            }
            contexts.save()?;
            context_done(out, &name, "deleted")
        }
        ContextAction::List => {
            let rows: Vec<ContextRow> = contexts
                .contexts
                .iter()
                .map(|(name, c)| ContextRow {
                    name: name.clone(),
                    current: contexts.current_context.as_deref() == Some(name.as_str()),
                    host: c.host.clone(),
                    email: c.email.clone(),
                    token: c.token.is_some(),
                })
                .collect();
            let columns: Vec<crate::output::Column<ContextRow>> = vec![
                col("CURRENT", |c: &ContextRow| {
                    if c.current { "*" } else { "" }.to_owned()
                }),
                col("NAME", |c: &ContextRow| c.name.clone()),
                col("SERVER", |c: &ContextRow| c.host.clone()),
                col("EMAIL", |c: &ContextRow| {
                    c.email.clone().unwrap_or_default()
                }),
                col("TOKEN", |c: &ContextRow| {
                    if c.token { "stored" } else { "none" }.to_owned()
                }),
            ];
            out.list(
                &rows,
                &columns,
                |c| format!("context/{}", c.name),
                &format!(
                    "No contexts in {}; add one with `proctor login`",
                    config::contexts_path().display()
                ),
            )
        }
    }
}

/// `proctor tokens …` (administrators).
#[derive(Subcommand, Debug)]
pub enum TokensAction {
    /// Issue a token for a user (created if new); it is printed once, on stdout
    Create {
        /// The user's e-mail.
        email: String,
        /// The user's groups (repeat or separate with commas); replaces the current ones.
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Revoke every token of a user
    Revoke {
        /// The user's e-mail.
        email: String,
    },
    /// Users with their groups and how many active tokens each has
    List {
        /// How many to show (at most 100).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Continue after this cursor.
        #[arg(long)]
        after: Option<String>,
    },
}

/// Reports a change to context `name` (`saved`, `current`, `deleted`) in the chosen format.
fn context_done(out: &Out, name: &str, what: &str) -> Result<(), CliError> {
    out.one(
        &serde_json::json!({ "context": name, "result": what }),
        |_| format!("context/{name}"),
        |_| {
            let text = match what {
                "current" => format!("Context {name:?} is current."),
                other => format!("Context {name:?} {other}."),
            };
            anstream::println!("{}", green(&text));
        },
    )
}

/// `proctor tokens …`.
pub async fn tokens(api: &Api, out: &Out, action: TokensAction) -> Result<(), CliError> {
    match action {
        TokensAction::Create {
            email,
            groups,
            admin,
        } => {
            // Checked before the token exists: it is shown only once.
            if out.format == crate::output::Format::Name {
                return Err(CliError::Usage(
                    "tokens create prints the new token once: use the default output (the token \
                     alone on stdout) or -o json"
                        .into(),
                ));
            }
            let token = api
                .run::<CreateToken>(create_token::Variables {
                    email: email.clone(),
                    groups: (!groups.is_empty()).then_some(groups),
                    admin: admin.then_some(true),
                })
                .await?
                .create_api_token;
            let created = serde_json::json!({ "email": email, "token": token });
            if out.structured(&created)? {
                return Ok(());
            }
            // Only the token on stdout, so it can be piped; the advice goes to stderr.
            println!("{token}");
            if std::io::stdout().is_terminal() {
                anstream::eprintln!(
                    "Token for {email}; it is shown only now. They sign in with `proctor login \
                     --email {email}`."
                );
            }
            Ok(())
        }
        TokensAction::Revoke { email } => {
            let revoked = api
                .run::<RevokeToken>(revoke_token::Variables {
                    email: email.clone(),
                })
                .await?
                .revoke_api_token;
            let message = if revoked {
                format!("Revoked the tokens of {email}.")
            } else {
                format!("{email} had no active token.")
            };
            out.one(
                &serde_json::json!({ "email": email, "revoked": revoked }),
                |_| format!("user/{email}"),
                |_| anstream::println!("{}", green(&message)),
            )
        }
        TokensAction::List { limit, after } => {
            if !(1..=100).contains(&limit) {
                return Err(CliError::Usage("--limit must be between 1 and 100".into()));
            }
            let page = api
                .run::<ListUsers>(list_users::Variables {
                    first: Some(limit),
                    after,
                })
                .await?
                .users;
            type Row = list_users::ListUsersUsersNodes;
            let columns: Vec<crate::output::Column<Row>> = vec![
                col("EMAIL", |u: &Row| u.email.clone()),
                col("GROUPS", |u: &Row| u.groups.join(",")),
                col("ADMIN", |u: &Row| {
                    if u.admin { "yes" } else { "" }.to_owned()
                }),
                col("TOKENS", |u: &Row| u.active_tokens.to_string()),
                col("LAST USED", |u: &Row| {
                    u.last_used_at.as_deref().map(age).unwrap_or_default()
                }),
                col("AGE", |u: &Row| age(&u.created_at)),
            ];
            out.list(
                &page.nodes,
                &columns,
                |u| format!("user/{}", u.email),
                "No users",
            )?;
            more(
                out,
                &page.page_info.end_cursor,
                page.page_info.has_next_page,
                "tokens list",
            );
            Ok(())
        }
    }
}

fn more(out: &Out, cursor: &Option<String>, has_next: bool, command: &str) {
    if let Some(cursor) = cursor.as_ref().filter(|_| has_next && out.human()) {
        anstream::eprintln!(
            "{}",
            strip_controls(&format!("more: proctor {command} --after {cursor}"))
        );
    }
}

/// `proctor audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// How many events to show (at most 100).
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// Continue after this cursor.
    #[arg(long)]
    after: Option<String>,
}

/// `proctor audit`: the audit log, newest first (administrators).
pub async fn audit(api: &Api, out: &Out, args: AuditArgs) -> Result<(), CliError> {
    if !(1..=100).contains(&args.limit) {
        return Err(CliError::Usage("--limit must be between 1 and 100".into()));
    }
    let page = api
        .run::<AuditEvents>(audit_events::Variables {
            first: Some(args.limit),
            after: args.after,
        })
        .await?
        .audit_events;
    type Row = audit_events::AuditEventsAuditEventsNodes;
    let columns: Vec<crate::output::Column<Row>> = vec![
        col("AGE", |e: &Row| age(&e.created_at)),
        col("ACTOR", |e: &Row| e.actor.clone().unwrap_or_default()),
        col("ACTION", |e: &Row| e.action.clone()),
        col("OBJECT", |e: &Row| {
            format!("{}/{}", e.object_kind, e.object_id)
        }),
        wide("TIME", |e: &Row| e.created_at.clone()),
        wide("DETAIL", |e: &Row| {
            e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default()
        }),
    ];
    out.list(
        &page.nodes,
        &columns,
        |e| format!("{}/{}", e.object_kind, e.object_id),
        "No audit events",
    )?;
    more(
        out,
        &page.page_info.end_cursor,
        page.page_info.has_next_page,
        "audit",
    );
    Ok(())
}
