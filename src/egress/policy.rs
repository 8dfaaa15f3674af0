//! The address policy: which IP addresses outbound checks may reach. Pure (no I/O); the
//! client applies it to every resolved address and again to every connected peer.
//!
//! Denied by default: loopback, unspecified, RFC 1918, link-local, CGNAT, ULA, multicast,
//! broadcast, reserved and documentation ranges, and the cloud metadata addresses — also when
//! embedded in IPv6 (IPv4-mapped, IPv4-compatible, SIIT, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16`), where the embedded IPv4 address is checked too. `egress.allow_private` opens
//! the private ranges (loopback, RFC 1918, link-local, CGNAT, ULA); `egress.allow` opens what
//! it lists, except that a metadata address opens only when listed as that exact address;
//! `egress.deny` always wins.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::IpNet;

use crate::config::EgressConfig;

/// Why an address is denied. A bounded set of fixed names, safe to show to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    Loopback,
    Private,
    LinkLocal,
    SharedAddressSpace,
    UniqueLocal,
    Unspecified,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
    Metadata,
    DenyList,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Loopback => "loopback address",
            DenyReason::Private => "private network address",
            DenyReason::LinkLocal => "link-local address",
            DenyReason::SharedAddressSpace => "shared address space (CGNAT)",
            DenyReason::UniqueLocal => "unique local address",
            DenyReason::Unspecified => "unspecified address",
            DenyReason::Multicast => "multicast address",
            DenyReason::Broadcast => "broadcast address",
            DenyReason::Documentation => "documentation range",
            DenyReason::Reserved => "reserved address",
            DenyReason::Metadata => "cloud metadata address",
            DenyReason::DenyList => "listed in egress.deny",
        }
    }

    /// The ranges `egress.allow_private` opens.
    fn is_private(self) -> bool {
        matches!(
            self,
            DenyReason::Loopback
                | DenyReason::Private
                | DenyReason::LinkLocal
                | DenyReason::SharedAddressSpace
                | DenyReason::UniqueLocal
        )
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cloud metadata and credential endpoints: AWS/GCP/Azure/OpenStack IMDS, AWS ECS task
/// credentials and EKS pod identity, Azure WireServer, Alibaba, Oracle, AWS IMDS over IPv6,
/// and GCP's IPv6 metadata server. Denied even with `allow_private`.
const METADATA: &[&str] = &[
    "169.254.169.254/32",
    "169.254.170.2/32",
    "169.254.170.23/32",
    "168.63.129.16/32",
    "100.100.100.200/32",
    "192.0.0.192/32",
    "fd00:ec2::254/128",
    "fd00:ec2::23/128",
    "fd20:ce::254/128",
];

/// Special-purpose ranges (IANA registries), most specific first.
const SPECIAL: &[(&str, DenyReason)] = &[
    ("0.0.0.0/8", DenyReason::Unspecified),
    ("127.0.0.0/8", DenyReason::Loopback),
    ("10.0.0.0/8", DenyReason::Private),
    ("172.16.0.0/12", DenyReason::Private),
    ("192.168.0.0/16", DenyReason::Private),
    ("169.254.0.0/16", DenyReason::LinkLocal),
    ("100.64.0.0/10", DenyReason::SharedAddressSpace),
    ("192.0.0.0/24", DenyReason::Reserved),
    ("192.0.2.0/24", DenyReason::Documentation),
    ("198.51.100.0/24", DenyReason::Documentation),
    ("203.0.113.0/24", DenyReason::Documentation),
    ("198.18.0.0/15", DenyReason::Reserved),
    ("192.88.99.0/24", DenyReason::Reserved),
    ("224.0.0.0/4", DenyReason::Multicast),
    ("255.255.255.255/32", DenyReason::Broadcast),
    ("240.0.0.0/4", DenyReason::Reserved),
    ("::/128", DenyReason::Unspecified),
    ("::1/128", DenyReason::Loopback),
    ("fe80::/10", DenyReason::LinkLocal),
    ("fec0::/10", DenyReason::UniqueLocal),
    ("fc00::/7", DenyReason::UniqueLocal),
    ("ff00::/8", DenyReason::Multicast),
    ("2001:db8::/32", DenyReason::Documentation),
    ("3fff::/20", DenyReason::Documentation),
    ("100::/64", DenyReason::Reserved),
    ("2001::/23", DenyReason::Reserved),
    ("64:ff9b:1::/48", DenyReason::Reserved),
    ("5f00::/16", DenyReason::Reserved),
];

struct Tables {
    metadata: Vec<IpNet>,
    special: Vec<(IpNet, DenyReason)>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| Tables {
    metadata: METADATA
        .iter()
        .map(|net| net.parse().expect("valid built-in CIDR"))
        .collect(),
    special: SPECIAL
        .iter()
        .map(|(net, reason)| (net.parse().expect("valid built-in CIDR"), *reason))
        .collect(),
});

/// Which addresses outbound checks may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    allow_private: bool,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl EgressPolicy {
    pub fn new(config: &EgressConfig) -> EgressPolicy {
        EgressPolicy {
            allow_private: config.allow_private,
            allow: config.allow.iter().map(IpNet::trunc).collect(),
            deny: config.deny.iter().map(IpNet::trunc).collect(),
        }
    }

    /// Whether `ip` may be connected to. An IPv6 address that embeds an IPv4 address is
    /// allowed only if the embedded address is allowed as well.
    pub fn check(&self, ip: IpAddr) -> Result<(), DenyReason> {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let forms = [Some(ip), embedded];
        let mut forms = forms.iter().flatten();
        if forms
            .clone()
            .any(|form| self.deny.iter().any(|net| net.contains(form)))
        {
            return Err(DenyReason::DenyList);
        }
        forms.try_for_each(|form| self.check_one(*form))
    }

    fn check_one(&self, ip: IpAddr) -> Result<(), DenyReason> {
        let Some(reason) = classify(ip) else {
            return Ok(());
        };
        let allowed = match reason {
            DenyReason::Metadata => self
                .allow
                .iter()
                .any(|net| net.prefix_len() == net.max_prefix_len() && net.addr() == ip),
            reason => {
                (self.allow_private && reason.is_private())
                    || self.allow.iter().any(|net| net.contains(&ip))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(reason)
        }
    }
}

/// The special-purpose category of `ip`, or `None` for an ordinary global address. IPv6
/// prefixes that embed an IPv4 address are `None` here: the embedded address decides.
fn classify(ip: IpAddr) -> Option<DenyReason> {
    let tables = &*TABLES;
    if tables.metadata.iter().any(|net| net.contains(&ip)) {
        return Some(DenyReason::Metadata);
    }
    if let Some((_, reason)) = tables.special.iter().find(|(net, _)| net.contains(&ip)) {
        return Some(*reason);
    }
    match ip {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) if embedded_ipv4(v6).is_some() => None,
        // Outside 2000::/3 nothing is global unicast.
        IpAddr::V6(v6) if v6.segments()[0] & 0xe000 != 0x2000 => Some(DenyReason::Reserved),
        IpAddr::V6(_) => None,
    }
}

/// The IPv4 address embedded in an IPv4-mapped (`::ffff:a.b.c.d`), SIIT-translated
/// (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:aabb:ccdd::`) address.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // `::` and `::1` are themselves, not embeddings.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_private: bool, allow: &[&str], deny: &[&str]) -> EgressPolicy {
        EgressPolicy::new(&EgressConfig {
            allow_private,
            allow: allow.iter().map(|n| n.parse().unwrap()).collect(),
            deny: deny.iter().map(|n| n.parse().unwrap()).collect(),
            ..EgressConfig::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_denies_special_ranges_and_their_embeddings() {
        let p = policy(false, &[], &[]);
        for (address, reason) in [
            ("127.0.0.1", DenyReason::Loopback),
            ("127.255.0.9", DenyReason::Loopback),
            ("0.0.0.0", DenyReason::Unspecified),
            ("10.1.2.3", DenyReason::Private),
            ("172.31.255.255", DenyReason::Private),
            ("192.168.0.1", DenyReason::Private),
            ("169.254.1.1", DenyReason::LinkLocal),
            ("100.64.0.1", DenyReason::SharedAddressSpace),
            ("224.0.0.251", DenyReason::Multicast),
            ("255.255.255.255", DenyReason::Broadcast),
            ("240.0.0.1", DenyReason::Reserved),
            ("192.0.2.1", DenyReason::Documentation),
            ("169.254.169.254", DenyReason::Metadata),
            ("100.100.100.200", DenyReason::Metadata),
            ("192.0.0.192", DenyReason::Metadata),
            ("::1", DenyReason::Loopback),
            ("::", DenyReason::Unspecified),
            ("fe80::1", DenyReason::LinkLocal),
            ("fd12::1", DenyReason::UniqueLocal),
            ("fd00:ec2::254", DenyReason::Metadata),
            ("ff02::1", DenyReason::Multicast),
            ("2001:db8::1", DenyReason::Documentation),
            ("::ffff:127.0.0.1", DenyReason::Loopback),
            ("::ffff:0:a00:1", DenyReason::Private),
            ("::127.0.0.1", DenyReason::Loopback),
            ("::ffff:169.254.169.254", DenyReason::Metadata),
            ("64:ff9b::a9fe:a9fe", DenyReason::Metadata),
            ("64:ff9b::7f00:1", DenyReason::Loopback),
            ("2002:7f00:1::1", DenyReason::Loopback),
            ("2002:c0a8:101::", DenyReason::Private),
            ("2001::1", DenyReason::Reserved),
            ("4000::1", DenyReason::Reserved),
        ] {
            assert_eq!(p.check(ip(address)), Err(reason), "{address}");
        }
        for address in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(p.check(ip(address)), Ok(()), "{address}");
        }
    }

    #[test]
    fn allow_private_opens_private_ranges_but_not_metadata() {
        let p = policy(true, &[], &[]);
        for address in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "fd12::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(p.check(ip(address)), Ok(()), "{address}");
        }
        for address in ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            assert_eq!(p.check(ip(address)), Err(DenyReason::Metadata), "{address}");
        }
        assert_eq!(p.check(ip("0.0.0.0")), Err(DenyReason::Unspecified));
        assert_eq!(p.check(ip("224.0.0.1")), Err(DenyReason::Multicast));
    }

    #[test]
    fn allow_lists_open_what_they_name_and_deny_lists_win() {
        let p = policy(false, &["127.0.0.2/32", "0.0.0.0/0"], &[]);
        assert_eq!(p.check(ip("127.0.0.2")), Ok(()));
        assert_eq!(p.check(ip("10.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("169.254.169.254")), Err(DenyReason::Metadata));
        let p = policy(false, &["169.254.169.254/32"], &[]);
        assert_eq!(p.check(ip("169.254.169.254")), Ok(()));
        let p = policy(true, &[], &["127.0.0.0/8", "203.0.114.0/24"]);
        assert_eq!(p.check(ip("127.0.0.1")), Err(DenyReason::DenyList));
        assert_eq!(p.check(ip("::ffff:127.0.0.1")), Err(DenyReason::DenyList));
        assert_eq!(p.check(ip("203.0.114.7")), Err(DenyReason::DenyList));
    }
}
