//! The address classes amosync tells apart: the networks its own neighbours live on.

use std::net::IpAddr;

/// Loopback, private (RFC 1918, RFC 4193) and link-local addresses: the networks a
/// service's own scrapers and neighbours live on.
pub fn is_internal(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal(&IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_networks_are_loopback_private_and_link_local() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(&internal.parse().expect("ip")), "{internal}");
        }
        for public in [
            "203.0.113.7",
            "172.32.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            assert!(!is_internal(&public.parse().expect("ip")), "{public}");
        }
    }
}
