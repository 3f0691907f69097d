//! The `Client-Version` check of the legacy routes: with `PROCTOR_MIN_CLIENT_VERSION` set, a
//! client that announces an older version gets the v2 "outdated version" answer (which the Go
//! CLI prints) instead of a call that might half work.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::LegacyError;

/// A client version as the Go server's hashicorp/go-version read it: an optional `v`, one to
/// three numeric segments (missing ones are zero), an optional `-prerelease` and `+build`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientVersion(semver::Version);

impl ClientVersion {
    /// Release order (build metadata is ignored; a prerelease sorts before its release).
    pub fn precedence(&self, other: &Self) -> Ordering {
        self.0.cmp_precedence(&other.0)
    }
}

impl FromStr for ClientVersion {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{raw:?} is not a version (expected e.g. v2.0.8)");
        let text = raw.trim();
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let (release, build) = match text.split_once('+') {
            Some((release, build)) => (release, Some(build)),
            None => (text, None),
        };
        let (core, prerelease) = match release.split_once('-') {
            Some((core, prerelease)) => (core, Some(prerelease)),
            None => (release, None),
        };
        let segments: Vec<&str> = core.split('.').collect();
        if segments.len() > 3
            || segments
                .iter()
                .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid());
        }
        let mut padded = segments.join(".");
        for _ in segments.len()..3 {
            padded.push_str(".0");
        }
        if let Some(prerelease) = prerelease {
            padded = format!("{padded}-{prerelease}");
        }
        if let Some(build) = build {
            padded = format!("{padded}+{build}");
        }
        semver::Version::parse(&padded)
            .map(Self)
            .map_err(|_| invalid())
    }
}

/// The canonical form the v2 messages show: no `v`, three segments.
impl fmt::Display for ClientVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Route middleware: passes requests without the header, and every request when no minimum is
/// configured (the v2 server answered 500 to every CLI call then); answers 400 to a version it
/// cannot read or one older than the minimum.
pub async fn check(
    State(minimum): State<Option<Arc<ClientVersion>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(minimum) = minimum else {
        return next.run(request).await;
    };
    let announced = request
        .headers()
        .get("client-version")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
        .filter(|value| !value.is_empty());
    let Some(announced) = announced else {
        return next.run(request).await;
    };
    match announced.parse::<ClientVersion>() {
        Err(problem) => LegacyError::bad_request(format!(
            "Your Proctor client config is Invalid. Please contact your Proctor Administrator. \
             Error: Client-Version {problem}"
        ))
        .into_response(),
        Ok(version) if version.precedence(&minimum) == Ordering::Less => {
            LegacyError::bad_request(format!(
                "Your Proctor client is using an outdated version: {version}. To continue using \
                 proctor, please upgrade to latest version."
            ))
            .into_response()
        }
        Ok(_) => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> ClientVersion {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn versions_read_like_go_version() {
        assert_eq!(version("v2.0.8").to_string(), "2.0.8");
        assert_eq!(version("0.1").to_string(), "0.1.0");
        assert_eq!(version("3").to_string(), "3.0.0");
        assert_eq!(
            version(" V1.2.3-beta.1+abc ").to_string(),
            "1.2.3-beta.1+abc"
        );
        for bad in ["", "v", "x.1", "1..2", "1.2.3.4", "1.2.x", "-1.0"] {
            assert!(bad.parse::<ClientVersion>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ordering_is_release_precedence() {
        assert_eq!(
            version("0.1.0").precedence(&version("0.3.0")),
            Ordering::Less
        );
        assert_eq!(
            version("v2.0.8").precedence(&version("2.0.8")),
            Ordering::Equal
        );
        assert_eq!(
            version("2.0.8+x").precedence(&version("2.0.8")),
            Ordering::Equal
        );
        assert_eq!(
            version("2.0.8-rc1").precedence(&version("2.0.8")),
            Ordering::Less
        );
        assert_eq!(
            version("2.1").precedence(&version("2.0.8")),
            Ordering::Greater
        );
        assert_eq!(
            version("10.0.0").precedence(&version("9.9.9")),
            Ordering::Greater
        );
    }
}
