//! Where a webhook may point: `https://` on the public internet only,
//! unless the operator allows local endpoints
//! (`DISPATCH_WEBHOOKS_ALLOW_LOCAL=true`: then `http://` and any address).
//!
//! Checked when an endpoint is registered (the URL, and every address its
//! host resolves to) and again at every delivery, since DNS can change: an
//! IP literal is checked before each attempt, and a host name is resolved by
//! [`PublicResolver`], reqwest's resolver for the webhook client, which
//! refuses a name with any non-public address — so the connection can only
//! go to the addresses that were checked (no second lookup to rebind).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The longest URL accepted.
pub const MAX_URL_BYTES: usize = 2000;

/// How long a registration waits for the host's addresses.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What endpoints may be registered and reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `http://` and loopback, private and other non-public addresses
    /// accepted (tests, a receiver beside the service).
    pub allow_local: bool,
}

/// Why a URL is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL this service can send to (400).
    #[error("{0}")]
    Malformed(String),
    /// A URL the policy refuses: not https, or a non-public address (422).
    #[error("{0}")]
    Refused(String),
}

/// Parses `raw` and checks everything that does not need DNS: scheme, no
/// credentials or fragment, a host, and an IP literal's range. Answers the
/// normalised URL (lower-case scheme and host, default port dropped).
pub fn check(raw: &str, policy: UrlPolicy) -> Result<Url, UrlError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(UrlError::Malformed(format!(
            "the url is longer than {MAX_URL_BYTES} bytes"
        )));
    }
    let url = Url::parse(raw.trim())
        .map_err(|e| UrlError::Malformed(format!("the url does not parse: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_local => {}
        "http" => {
            return Err(UrlError::Refused(
                "only https:// endpoints are accepted (an operator can allow local http ones with DISPATCH_WEBHOOKS_ALLOW_LOCAL)".into(),
            ))
        }
        other => {
            return Err(UrlError::Malformed(format!(
                "the url's scheme is `{}`: give an https:// url",
                other.chars().take(20).collect::<String>()
            )))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Malformed(
            "the url must not carry credentials: deliveries are signed instead".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(UrlError::Malformed(
            "the url must not have a #fragment (it is never sent)".into(),
        ));
    }
    match url.host() {
        None => return Err(UrlError::Malformed("the url has no host".into())),
        Some(Host::Ipv4(ip)) => refuse_unless_public(IpAddr::V4(ip), policy)?,
        Some(Host::Ipv6(ip)) => refuse_unless_public(IpAddr::V6(ip), policy)?,
        Some(Host::Domain(_)) => {}
    }
    Ok(url)
}

fn refuse_unless_public(ip: IpAddr, policy: UrlPolicy) -> Result<(), UrlError> {
    if policy.allow_local || is_public(ip) {
        Ok(())
    } else {
        Err(UrlError::Refused(format!(
            "{ip} is not a public internet address (loopback, private, link-local, unique-local, shared, multicast or reserved)"
        )))
    }
}

/// [`check`], then the host's addresses: a name that does not resolve, or
/// resolves to any non-public address, is refused (unless local endpoints
/// are allowed).
pub async fn check_resolved(raw: &str, policy: UrlPolicy) -> Result<Url, UrlError> {
    let url = check(raw, policy)?;
    if policy.allow_local {
        return Ok(url);
    }
    if let Some(Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, resolve(name, port))
            .await
            .map_err(|_| UrlError::Refused(format!("the host `{name}` did not resolve in time")))?
            .map_err(UrlError::Refused)?;
        for a in addrs {
            refuse_unless_public(a.ip(), policy).map_err(|_| {
                UrlError::Refused(format!(
                    "the host `{name}` resolves to {}, which is not a public internet address",
                    a.ip()
                ))
            })?;
        }
    }
    Ok(url)
}

/// Every address of `name` (none is an error).
async fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| format!("the host `{name}` does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("the host `{name}` has no address"));
    }
    Ok(addrs)
}

/// Whether an address is on the public internet: not unspecified,
/// loopback, private (RFC 1918), shared (CGNAT, 100.64/10), link-local,
/// multicast, broadcast, documentation, benchmarking or reserved; for IPv6
/// also not unique-local (fc00::/7), site-local, discard-only, and not an
/// IPv4 address of those kinds inside IPv6 (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network", unspecified
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)              // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast
        || (a == 192 && b == 168)              // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // `::`, `::1` and the deprecated IPv4-compatible `::a.b.c.d`.
    if s[..6].iter().all(|x| *x == 0) {
        return false;
    }
    // NAT64 (64:ff9b::/96): the IPv4 address in the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0) {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4 (2002::/16): the IPv4 address in bits 16 to 48.
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    !((s[0] & 0xfe00) == 0xfc00          // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80     // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0     // site-local (deprecated) fec0::/10
        || (s[0] & 0xff00) == 0xff00     // multicast ff00::/8
        || (s[0] == 0x100 && s[1..4].iter().all(|x| *x == 0)) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] < 0x200)) // IETF protocol assignments (Teredo, ORCHID…)
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// The webhook client's resolver: the system's lookup, refusing a name
/// with any non-public address unless local endpoints are allowed (the
/// connection is then refused before it is made, and the attempt fails).
#[derive(Debug, Clone, Copy)]
pub struct PublicResolver {
    /// The policy.
    pub policy: UrlPolicy,
}

/// A resolver's refusal (told apart from other connection errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AddressRefused(pub String);

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve(&name, 0).await.map_err(AddressRefused)?;
            if !policy.allow_local {
                if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                    return Err(Box::new(AddressRefused(format!(
                        "the host `{name}` resolves to {}, which is not a public internet address",
                        bad.ip()
                    )))
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy { allow_local: false };
    const LOCAL: UrlPolicy = UrlPolicy { allow_local: true };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.1.2",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "192.0.2.7",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.0.1",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn urls_are_https_to_public_hosts_unless_local_is_allowed() {
        assert_eq!(
            check("HTTPS://Example.COM:443/hook?a=1", STRICT)
                .unwrap()
                .as_str(),
            "https://example.com/hook?a=1"
        );
        for (raw, refused) in [
            ("http://example.com/hook", true),
            ("https://10.0.0.1/", true),
            ("https://[::1]/", true),
            ("https://[::ffff:127.0.0.1]/", true),
            ("https://127.1/", true),
            ("https://0x7f.0.0.1/", true),
            ("ftp://example.com/", false),
            ("https://user:pw@example.com/", false),
            ("https://example.com/#x", false),
            ("not a url", false),
            ("https://", false),
        ] {
            match check(raw, STRICT) {
                Err(UrlError::Refused(_)) if refused => {}
                Err(UrlError::Malformed(_)) if !refused => {}
                other => panic!("{raw}: {other:?}"),
            }
        }
        assert!(check("http://127.0.0.1:9/hook", LOCAL).is_ok());
        assert!(check("https://[::1]/", LOCAL).is_ok());
        assert!(check(&format!("https://example.com/{}", "a".repeat(2001)), LOCAL).is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_is_refused() {
        assert!(matches!(
            check_resolved("https://localhost/hook", STRICT).await,
            Err(UrlError::Refused(_))
        ));
        assert!(check_resolved("http://localhost/hook", LOCAL).await.is_ok());
        let refused = PublicResolver { policy: STRICT }
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(refused.is_err());
        let allowed = PublicResolver { policy: LOCAL }
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(allowed.unwrap().next().is_some());
    }
}
