//! Which IP addresses are public: the targets a live app's callbacks may reach.
//!
//! A callback URL is the app's to choose, and paybridge POSTs to it from inside the
//! operator's network, so a URL aimed at `127.0.0.1`, `10.0.0.5` or the cloud's
//! metadata service (`169.254.169.254`) would turn paybridge into a way in. An address
//! is public when it is in none of the IANA special-purpose blocks that are not
//! globally reachable (the rules of the standard library's still-unstable
//! `IpAddr::is_global`), and an IPv6 address that carries an IPv4 one (mapped, NAT64,
//! 6to4) is judged by the IPv4 address it carries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a callback may be sent to this address from a live app.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network"
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_loopback() // 127/8
        || ip.is_link_local() // 169.254/16, the cloud metadata services
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT), 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0/24
        || ip.is_documentation() // 192.0.2/24, 198.51.100/24, 203.0.113/24
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18/15
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || a >= 224) // multicast 224/4, reserved 240/4, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d): the IPv4 address it is.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // ::/96: unspecified, loopback and the deprecated IPv4-compatible addresses.
    if s[0..6] == [0, 0, 0, 0, 0, 0] {
        return false;
    }
    // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48): the IPv4 address inside.
    if s[0] == 0x64 && s[1] == 0xff9b {
        if s[2..6] == [0, 0, 0, 0] {
            return is_public_v4(embedded_v4(s[6], s[7]));
        }
        if s[2] == 1 {
            return false;
        }
    }
    // 6to4 (2002::/16): the IPv4 address in the next 32 bits.
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    !((s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated), fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard only, 100::/64
        || (s[0] == 0x2001 && s[1] < 0x200) // IETF protocol assignments, 2001::/23 (Teredo, benchmarking, ORCHID; no web hosts)
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation, 3fff::/20
        || (s[0] == 0x5f00)) // segment routing SIDs, 5f00::/16
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn private_loopback_link_local_and_special_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.5",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "203.0.113.7",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
        ] {
            assert!(!public(s), "{s} is not public");
        }
    }

    #[test]
    fn ordinary_internet_addresses_are_public() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.0.1.1",
            "198.17.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
        ] {
            assert!(public(s), "{s} is public");
        }
    }
}
