//! Where webhooks may go: http(s) URLs of public addresses only, unless the operator
//! allows private ones. The check is made when an endpoint is registered and again at
//! each delivery, on the addresses the connection will use (a name that resolves to a
//! private address later is refused then), and no redirect is followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::CatalogError;

/// Whether a delivery to `ip` could reach this machine, its network or a cloud's
/// metadata service rather than the public Internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private_v4(v4),
            None => private_v6(v6),
        },
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 0/8 "this network", 100.64/10 shared (carrier NAT), 192.0.0/24 protocol
        // assignments, 198.18/15 benchmarking, 240/4 reserved.
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // 64:ff9b::/96 NAT64 and 2001:db8::/32 documentation.
        || (first == 0x64 && ip.segments()[1] == 0xff9b)
        || (first == 0x2001 && ip.segments()[1] == 0xdb8)
}

/// An endpoint URL as it may be stored: http or https, a host, no credentials, and
/// (unless `allow_private`) only public addresses behind its host today.
pub async fn check_url(text: &str, allow_private: bool) -> Result<Url, CatalogError> {
    let bad = |why: &str| CatalogError::Invalid(format!("url {why}"));
    if text.len() > 2000 {
        return Err(bad("must be at most 2000 characters"));
    }
    let url = Url::parse(text.trim()).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad("must name a host"))?
        .to_string();
    if !allow_private {
        let port = url.port_or_known_default().unwrap_or(443);
        public_addrs(&host, port)
            .await
            .map_err(|e| CatalogError::Invalid(format!("url: {e}")))?;
    }
    Ok(url)
}

/// The addresses of `host`, if every one is public.
pub async fn public_addrs(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if let Some(private) = addrs.iter().find(|a| is_private(a.ip())) {
        return Err(format!(
            "{host} is a private, loopback or reserved address ({}); webhooks go to public addresses only",
            private.ip()
        ));
    }
    Ok(addrs)
}

/// reqwest's resolver for deliveries: names resolve as usual, but only to public
/// addresses (unless allowed), so what was checked is what is connected to.
pub struct PublicResolver {
    pub allow_private: bool,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = if allow_private {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            } else {
                public_addrs(&host, 0).await?
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_reserved_addresses_are_told_apart() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_before_they_are_kept() {
        assert!(check_url("ftp://example.org/", true).await.is_err());
        assert!(
            check_url("https://user:pw@example.org/", true)
                .await
                .is_err()
        );
        assert!(check_url("not a url", true).await.is_err());
        for private in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "http://localhost/",
            "http://169.254.169.254/latest",
        ] {
            let e = check_url(private, false).await.unwrap_err().to_string();
            assert!(e.contains("public addresses only"), "{private}: {e}");
        }
        assert!(check_url("http://127.0.0.1:8080/hook", true).await.is_ok());
    }
}
