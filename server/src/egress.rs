//! Where outbound notification requests (Slack, webhooks) may go.
//!
//! A schedule's owner chooses its webhook URL, so without a rule a user could make the server
//! call its own loopback services, the cloud metadata endpoint (169.254.169.254) or anything
//! on the private network, and read the answer back through the notification result. So:
//! - a URL must be http(s), name a host and carry no user:password;
//! - the address actually connected to must be public: loopback, link-local, private,
//!   shared (CGNAT), multicast, broadcast, unspecified and documentation ranges are refused
//!   (IPv6 forms that carry an IPv4 address, mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96` and
//!   6to4 `2002::/16`, are judged as that IPv4 address; Teredo is refused). Names are resolved by
//!   [`GuardedResolver`], which hands the HTTP client only the permitted addresses, so a DNS
//!   answer cannot change between the check and the connection; IP literals (including the
//!   decimal and hex forms URL parsing normalizes, e.g. `http://2130706433/`) are checked
//!   before the request;
//! - redirects are never followed;
//! - hosts listed in `PROCTOR_NOTIFY_ALLOWED_HOSTS` skip the address check (a relay on the
//!   private network), and only them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The hosts exempt from the address rule, lower case.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allowed_hosts: Arc<Vec<String>>,
}

impl EgressPolicy {
    /// A policy exempting `allowed_hosts`.
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self {
            allowed_hosts: Arc::new(
                allowed_hosts
                    .iter()
                    .map(|host| host.trim().to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed.trim_start_matches('[').trim_end_matches(']') == host)
    }

    /// Checks `raw` before a request: scheme, credentials, and the address when the host is an
    /// IP literal (names are checked when they resolve).
    pub fn check_url(&self, raw: &str) -> Result<url::Url, Refused> {
        let url = url::Url::parse(raw).map_err(|_| Refused("the URL is not valid".to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused("only http and https URLs are called".to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused(
                "URLs with a user name or password are refused".to_owned(),
            ));
        }
        let host = url
            .host()
            .ok_or_else(|| Refused("the URL names no host".to_owned()))?;
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal
            && !self.allows_host(&host.to_string())
            && let Some(kind) = forbidden(ip)
        {
            return Err(Refused(format!(
                "the address is {kind}; notifications only reach public addresses \
                 (or hosts in PROCTOR_NOTIFY_ALLOWED_HOSTS)"
            )));
        }
        Ok(url)
    }

    /// A resolver for the HTTP client that applies this policy to every name it resolves.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            policy: self.clone(),
        })
    }
}

/// What kind of non-public address `ip` is, if it is one.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared address space (CGNAT)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0)
    {
        Some("reserved for documentation or testing")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("reserved for documentation")
    } else if first == 0x2001 && ip.segments()[1] == 0 {
        Some("Teredo (tunnels to an IPv4 address)")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        let segments = ip.segments();
        if segments[2..6].iter().all(|segment| *segment == 0) {
            // NAT64 well-known prefix: the last 32 bits are the IPv4 address reached.
            let [.., a, b, c, d] = ip.octets();
            forbidden_v4(Ipv4Addr::new(a, b, c, d))
        } else {
            // Local-use NAT64 (64:ff9b:1::/48): where the IPv4 address sits is the
            // operator's choice, so it cannot be judged.
            Some("local-use NAT64")
        }
    } else if first == 0x2002 {
        // 6to4: bits 16..48 are the IPv4 address reached.
        let octets = ip.octets();
        forbidden_v4(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]))
    } else if ip.to_ipv4().is_some() && first == 0 {
        // IPv4-compatible (deprecated) addresses: judged as public only if the v4 part is.
        ip.to_ipv4().and_then(forbidden_v4)
    } else {
        None
    }
}

/// Resolves names like the system does, then keeps only the addresses the policy permits.
#[derive(Debug)]
pub struct GuardedResolver {
    policy: EgressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|error| -> Box<dyn std::error::Error + Send + Sync> {
                    Box::new(Refused(format!("cannot resolve the host: {error}")))
                })?
                .collect();
            if policy.allows_host(&host) {
                let addrs: Addrs = Box::new(found.into_iter());
                return Ok(addrs);
            }
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|address| forbidden(address.ip()).is_none())
                .collect();
            if permitted.is_empty() {
                let kind = found
                    .first()
                    .and_then(|address| forbidden(address.ip()))
                    .unwrap_or("not public");
                return Err(Box::new(Refused(format!(
                    "the host resolves to an address that is {kind}; notifications only reach \
                     public addresses (or hosts in PROCTOR_NOTIFY_ALLOWED_HOSTS)"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_named() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.1", "loopback"),
            ("169.254.169.254", "link-local (cloud metadata lives here)"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "private (unique local)"),
            ("::ffff:127.0.0.1", "loopback"),
            (
                "::ffff:169.254.169.254",
                "link-local (cloud metadata lives here)",
            ),
        ] {
            assert_eq!(forbidden(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert_eq!(forbidden(public.parse().unwrap()), None, "{public}");
        }
    }

    #[test]
    fn literal_urls_are_checked_in_every_spelling() {
        let policy = EgressPolicy::default();
        for url in [
            "http://127.0.0.1:9/hook",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:80/",
        ] {
            assert!(policy.check_url(url).is_err(), "{url}");
        }
        assert!(
            policy
                .check_url("https://user:pw@hooks.example.com/")
                .is_err()
        );
        assert!(policy.check_url("ftp://hooks.example.com/").is_err());
        assert!(policy.check_url("https://hooks.example.com/x").is_ok());
        let relay = EgressPolicy::new(&["127.0.0.1".to_owned()]);
        assert!(relay.check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(relay.check_url("http://[::1]:9/hook").is_err());
    }
}
