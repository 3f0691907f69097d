//! Listening, request limits and the browser defences (the book's security model, `docs/src/security.md`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use proctor_schema::SchemaLimits;

use super::{ConfigError, count, host_name, item, items, seconds, setting};
use crate::rest::version::ClientVersion;

/// How clients reach the server and what one request or connection may hold; used as given
/// once [`Http::validate`] has passed.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "HTTP and browsers")]
pub struct Http {
    /// TCP port to listen on (0 picks a free one).
    #[arg(long, env = "PROCTOR_APP_PORT", default_value = "5001", value_parser = port)]
    pub port: u16,
    /// IP address to listen on; anything but loopback requires auth or --allow-unauthenticated.
    #[arg(long, env = "PROCTOR_BIND_ADDRESS", default_value = "127.0.0.1", value_parser = ip)]
    pub bind_address: IpAddr,
    /// Largest request body (and websocket message) accepted, in bytes.
    #[arg(long, env = "PROCTOR_MAX_BODY_BYTES", default_value = "1048576", value_parser = count)]
    pub max_body_bytes: usize,
    /// Deepest GraphQL selection nesting accepted.
    #[arg(long, env = "PROCTOR_GRAPHQL_MAX_DEPTH", default_value = "16", value_parser = count)]
    pub graphql_max_depth: usize,
    /// Highest GraphQL complexity score accepted.
    #[arg(long, env = "PROCTOR_GRAPHQL_MAX_COMPLEXITY", default_value = "10000")]
    #[arg(value_parser = count)]
    pub graphql_max_complexity: usize,
    /// Seconds to let in-flight requests and local runs finish after SIGTERM/SIGINT; local
    /// runs still going then are stopped (SIGTERM, then SIGKILL after the cancel grace) and
    /// recorded as CANCELLED ("server shut down"). Kubernetes runs are left running for
    /// another replica (or this one, restarted) to re-attach.
    #[arg(long = "shutdown-grace-seconds", env = "PROCTOR_SHUTDOWN_GRACE_SECONDS")]
    #[arg(default_value = "10", value_parser = seconds)]
    pub shutdown_grace: Duration,
    /// Oldest `Client-Version` the legacy REST routes accept (e.g. v2.0.8); every version when
    /// unset.
    #[arg(long, env = "PROCTOR_MIN_CLIENT_VERSION", value_parser = client_version)]
    pub min_client_version: Option<ClientVersion>,
    /// Serve the playground from this directory of built assets instead of those embedded in
    /// the binary (developing the UI).
    #[arg(long, env = "PROCTOR_PLAYGROUND_DIR")]
    pub playground_dir: Option<PathBuf>,
    /// Browser origins besides the server's own that may call it (comma-separated
    /// `scheme://host[:port]`; `*` is not accepted).
    #[arg(long, env = "PROCTOR_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = origin)]
    pub allowed_origins: Vec<String>,
    /// Host names besides loopback that may reach a server with auth off (comma-separated).
    #[arg(long, env = "PROCTOR_ALLOWED_HOSTS", value_delimiter = ',', value_parser = host_name)]
    pub allowed_hosts: Vec<String>,
    /// Operations one websocket may have open at once.
    #[arg(long, env = "PROCTOR_MAX_SUBSCRIPTIONS_PER_CONNECTION", default_value = "100")]
    #[arg(value_parser = count)]
    pub max_subscriptions_per_connection: usize,
    /// Websocket operations the whole server may have open at once.
    #[arg(long, env = "PROCTOR_MAX_SUBSCRIPTIONS", default_value = "20000", value_parser = count)]
    pub max_subscriptions: usize,
    /// Seconds between re-checks of a websocket's credentials (1-30).
    #[arg(long = "ws-revalidate-seconds", env = "PROCTOR_WS_REVALIDATE_SECONDS")]
    #[arg(default_value = "30", value_parser = revalidate)]
    pub ws_revalidate: Duration,
    /// Seconds a websocket may stay open without `connection_init` (then closed with 4408).
    #[arg(long = "ws-init-timeout-seconds", env = "PROCTOR_WS_INIT_TIMEOUT_SECONDS")]
    #[arg(default_value = "10", value_parser = seconds)]
    pub ws_init_timeout: Duration,
    /// The URL clients reach this server at (`scheme://host[:port][/path]`): the issuer of
    /// per-run identity tokens, which clouds fetch `/.well-known/jwks.json` under. Default:
    /// `http://<bind address>:<port>`, right only for local use.
    #[arg(long, env = "PROCTOR_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,
}

/// An `http(s)` URL with a host and no query, user or fragment; the trailing `/` dropped.
fn public_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(
            "must be an http:// or https:// URL with a host, without a query, \
             fragment, user or password"
                .to_owned(),
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl Http {
    /// The configured public URL, or `http://<address>` of where the server listens.
    pub fn public_url(&self, bound: Option<SocketAddr>) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", bound.unwrap_or_else(|| self.listen())),
        }
    }

    /// Checks the playground directory (a directory given explicitly must hold a build; the
    /// default may be missing, and the page then says how to build it).
    pub fn validate(&self) -> Result<Self, ConfigError> {
        if let Some(dir) = &self.playground_dir
            && !dir.join("index.html").is_file()
        {
            let build = "npm --prefix playground ci && npm --prefix playground run build";
            let message = format!(
                "{} holds no built playground (index.html); build it with `{build}`",
                dir.display()
            );
            return Err(ConfigError::new(setting!(Self, playground_dir), message));
        }
        Ok(Self {
            allowed_origins: items(&self.allowed_origins),
            allowed_hosts: items(&self.allowed_hosts),
            ..self.clone()
        })
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.port)
    }

    /// GraphQL depth and complexity limits.
    pub fn graphql_limits(&self) -> SchemaLimits {
        SchemaLimits {
            max_depth: self.graphql_max_depth,
            max_complexity: self.graphql_max_complexity,
        }
    }
}

fn port(raw: &str) -> Result<u16, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not a port number (0-65535)"))
}

fn ip(raw: &str) -> Result<IpAddr, String> {
    let expected = "use e.g. 127.0.0.1, 0.0.0.0 or ::1";
    raw.trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not an IP address ({expected})"))
}

fn client_version(raw: &str) -> Result<ClientVersion, String> {
    raw.parse()
}

/// An origin as `scheme://host:port`; an empty item is dropped by `validate`.
fn origin(raw: &str) -> Result<String, String> {
    match item(raw)? {
        empty if empty.is_empty() => Ok(empty),
        origin => crate::guard::normalize_origin(&origin.to_ascii_lowercase()),
    }
}

fn revalidate(raw: &str) -> Result<Duration, String> {
    match seconds(raw)? {
        every if every > Duration::from_secs(30) => Err(format!(
            "{} is more than 30 seconds; a revoked token must not live longer",
            every.as_secs()
        )),
        every => Ok(every),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, settings};

    #[test]
    fn each_bad_value_names_its_setting() {
        assert_refused(
            "--port=http                   PROCTOR_APP_PORT
             --port=70000                  PROCTOR_APP_PORT
             --bind-address=localhost      PROCTOR_BIND_ADDRESS
             --graphql-max-depth=0         PROCTOR_GRAPHQL_MAX_DEPTH
             --max-body-bytes=1e6          PROCTOR_MAX_BODY_BYTES
             --min-client-version=2.x      PROCTOR_MIN_CLIENT_VERSION
             --allowed-origins=*           PROCTOR_ALLOWED_ORIGINS
             --allowed-hosts=a.example,*   PROCTOR_ALLOWED_HOSTS
             --ws-revalidate-seconds=31    PROCTOR_WS_REVALIDATE_SECONDS
             --playground-dir=/nonexistent PROCTOR_PLAYGROUND_DIR",
        );
    }

    #[test]
    fn lists_are_trimmed_lowercased_and_skip_empty_items() {
        let origins = "HTTPS://Console.example.com, ,http://x.example:8080,";
        let args = [
            "--allowed-origins",
            origins,
            "--allowed-hosts",
            " Proctor.Example.com",
        ];
        let http = settings(&[&args[..], &["--min-client-version", " v2.0 "]].concat())
            .unwrap()
            .http;
        let expected = ["https://console.example.com:443", "http://x.example:8080"];
        assert_eq!(http.allowed_origins, expected);
        assert_eq!(http.allowed_hosts, ["proctor.example.com"]);
        assert_eq!(http.min_client_version.unwrap().to_string(), "2.0.0");
    }
}
