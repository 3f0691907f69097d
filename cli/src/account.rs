//! `config`, `config show`, `whoami` and `version`.

use std::collections::BTreeMap;

use crate::api::{Api, ServerInfo, Whoami, server_info, whoami};
use crate::config;
use crate::error::CliError;
use crate::output::{self, Format, green, pair, red};
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
pub async fn whoami(api: &Api, format: Format) -> Result<(), CliError> {
    let me = api.run::<Whoami>(whoami::Variables {}).await?.me;
    if output::structured(format, &me)? {
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
pub async fn version(host: Option<&str>) -> Result<(), CliError> {
    println!("{BANNER} v{}", env!("CARGO_PKG_VERSION"));
    let configured = host.is_some() || config::read_file()?.contains_key("PROCTOR_HOST");
    if !configured {
        return Ok(());
    }
    let answer = match config::load(host).and_then(Api::new) {
        Ok(api) => api.run::<ServerInfo>(server_info::Variables {}).await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(data) => {
            let info = data.server_info;
            println!(
                "Server: proctord v{} (storage {}, event bus {}, executor {}, auth {})",
                info.version,
                enum_name(&info.storage).to_lowercase(),
                enum_name(&info.event_bus).to_lowercase(),
                enum_name(&info.executor).to_lowercase(),
                if info.auth_enabled { "on" } else { "off" }
            );
        }
        Err(error) => eprintln!("Server: {error}"),
    }
    Ok(())
}
