//! The IP allow-list: entries are single addresses or CIDR ranges, IPv4 or IPv6, parsed and
//! matched by `ipnet`. The client's address is what `CF-Connecting-IP` says (see the README for
//! how far that header is trusted).

use std::net::IpAddr;

use ipnet::IpNet;

/// An entry as stored: a network in canonical form (`203.0.113.7/32`, `2001:db8::/32`).
pub fn parse_entry(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| "must be an IPv4 or IPv6 address, or a CIDR range such as 203.0.113.0/24".to_owned())?,
    };
    let canonical = net.trunc();
    if canonical != net {
        return Err(format!("has host bits set; the range is {canonical}"));
    }
    Ok(canonical)
}

/// An entry as clients see it: what they added, so a single address (stored `/32` or `/128`
/// so that `203.0.113.5` and `203.0.113.5/32` are one entry) shows bare, a range as a range.
/// An entry that no longer parses shows as stored.
pub fn shown(stored: &str) -> String {
    match parse_entry(stored) {
        Ok(net) if net.prefix_len() == net.max_prefix_len() => net.addr().to_string(),
        _ => stored.to_owned(),
    }
}

/// The client's address from the header, IPv4-mapped IPv6 seen as the IPv4 address it maps.
pub fn client_ip(header: Option<&str>) -> Option<IpAddr> {
    let ip: IpAddr = header?.trim().parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// Whose failed-authentication budget an address spends: its own for IPv4, its /64 for IPv6
/// (one subscriber's allocation, so hopping between a network's 2^64 addresses gains nothing).
pub fn budget_subject(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => {
            let net = ipnet::Ipv6Net::new(v6, 64).map(|n| n.trunc()).unwrap_or_else(|_| v6.into());
            format!("net:{net}")
        }
        None => "ip:unknown".to_owned(),
    }
}

pub fn allows<'a>(entries: impl IntoIterator<Item = &'a IpNet>, ip: IpAddr) -> bool {
    entries.into_iter().any(|net| net.contains(&ip))
}

/// Whether a request whose `CF-Connecting-IP` is `header` may go on: always while the list is
/// not enforced; once it is, only from an address a stored entry covers (a missing or garbled
/// header never passes, and an entry that no longer parses covers nothing).
pub fn admits<'a>(restricted: bool, stored: impl IntoIterator<Item = &'a str>, header: Option<&str>) -> bool {
    if !restricted {
        return true;
    }
    let nets: Vec<IpNet> = stored.into_iter().filter_map(|e| parse_entry(e).ok()).collect();
    client_ip(header).is_some_and(|addr| allows(&nets, addr))
}

/// Enforcement cannot start over an empty list: it would lock every key out but the list's own
/// endpoints.
pub fn may_restrict(enabled: bool, has_entries: bool) -> Result<(), String> {
    match enabled && !has_entries {
        true => Err("cannot be enabled while the whitelist is empty: add an IP first".into()),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        client_ip(Some(s)).unwrap()
    }

    #[test]
    fn an_enforced_list_admits_only_what_its_entries_cover() {
        assert!(admits(false, [], None), "not enforced: anyone");
        assert!(admits(true, ["203.0.113.0/24"], Some("203.0.113.9")));
        assert!(admits(true, ["203.0.113.0/24"], Some(" ::ffff:203.0.113.9 ")), "mapped IPv4 is the IPv4");
        assert!(!admits(true, ["203.0.113.0/24"], Some("198.51.100.1")));
        assert!(!admits(true, ["203.0.113.0/24"], None), "no header, no entry");
        assert!(!admits(true, ["203.0.113.0/24"], Some("203.0.113.9, 10.0.0.1")), "a list is not an address");
        assert!(!admits(true, ["garbage", "10.0.0.1/8"], Some("10.0.0.1")), "unparsable entries cover nothing");
        assert!(!admits(true, [], Some("10.0.0.1")));
    }

    #[test]
    fn enforcement_needs_an_entry_but_can_always_be_lifted() {
        assert!(may_restrict(true, false).is_err());
        assert!(may_restrict(true, true).is_ok());
        assert!(may_restrict(false, false).is_ok());
    }

    #[test]
    fn single_addresses_and_ranges_in_both_families() {
        let list: Vec<IpNet> = ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32", "2001:db8:ffff::1"]
            .map(|e| parse_entry(e).unwrap())
            .into();
        assert_eq!(list[0].to_string(), "203.0.113.7/32");
        for inside in ["203.0.113.7", "198.51.100.1", "198.51.100.255", "2001:db8:1::5", "::ffff:198.51.100.9"] {
            assert!(allows(&list, ip(inside)), "{inside}");
        }
        for outside in ["203.0.113.8", "198.51.101.1", "2001:db9::1", "10.0.0.1", "::1"] {
            assert!(!allows(&list, ip(outside)), "{outside}");
        }
    }

    #[test]
    fn single_addresses_show_bare_and_ranges_as_ranges() {
        for (stored, seen) in [
            ("203.0.113.5/32", "203.0.113.5"),
            ("203.0.113.0/24", "203.0.113.0/24"),
            ("2001:db8::1/128", "2001:db8::1"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("garbage", "garbage"),
        ] {
            assert_eq!(shown(stored), seen, "{stored}");
        }
        assert_eq!(shown(&parse_entry("203.0.113.5").unwrap().to_string()), "203.0.113.5", "added bare, shown bare");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        assert!(parse_entry("10.0.0.300").unwrap_err().contains("CIDR"));
        assert!(parse_entry("10.0.0.0/33").is_err());
        assert_eq!(parse_entry("10.1.2.3/8").unwrap_err(), "has host bits set; the range is 10.0.0.0/8");
        assert_eq!(parse_entry(" 10.0.0.0/8 ").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64_and_ipv4_per_address() {
        let subject = |s: &str| budget_subject(client_ip(Some(s)));
        assert_eq!(subject("2001:db8:1:2::1"), "net:2001:db8:1:2::/64");
        assert_eq!(subject("2001:db8:1:2:ffff:ffff:ffff:ffff"), subject("2001:db8:1:2::1"));
        assert_ne!(subject("2001:db8:1:3::1"), subject("2001:db8:1:2::1"), "the next /64 is another subscriber");
        assert_eq!(subject("203.0.113.7"), "ip:203.0.113.7");
        assert_ne!(subject("203.0.113.8"), subject("203.0.113.7"));
        assert_eq!(subject("::ffff:203.0.113.7"), "ip:203.0.113.7", "IPv4-mapped is the IPv4 address");
        assert_eq!(budget_subject(None), "ip:unknown");
    }

    #[test]
    fn an_unreadable_client_address_is_none() {
        assert_eq!(client_ip(None), None);
        assert_eq!(client_ip(Some("not an ip")), None);
        assert_eq!(client_ip(Some("1.2.3.4, 5.6.7.8")), None);
    }
}
