//! Where the worker may send requests of its own: webhook receivers and media sources, one rule
//! for both (OWASP SSRF prevention). The rule judges the URL as the runtime's `fetch` will read
//! it: the caller hands in the WHATWG parser the fetch uses (the Workers runtime's `URL`; the
//! `url` crate, which implements the same standard, in native tests), so a spelling that a hand
//! split reads one way and the fetch another (`https://evil.example\.allowed.example/`,
//! `https://0x7f.1/`) is judged by what the fetch would connect to.

use std::net::{Ipv4Addr, Ipv6Addr};

/// What the WHATWG URL parser made of a URL: the parts the rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    /// Lower-case, without the `:`.
    pub scheme: String,
    pub username: String,
    pub password: String,
    /// The serialized host: a lower-case domain (punycode), a dotted-decimal IPv4 address, or an
    /// IPv6 address in brackets.
    pub host: String,
}

/// The deployment's egress policy for one purpose.
#[derive(Clone)]
pub struct Egress {
    /// The WHATWG parser the fetch itself uses; `None` when the runtime cannot parse the URL.
    pub parse: fn(&str) -> Option<ParsedUrl>,
    /// Development only: `http://127.0.0.1…` and other loopback receivers.
    pub allow_loopback: bool,
    /// Hosts (each with its subdomains) requests may go to; empty allows any public host.
    pub hosts: Vec<String>,
    /// The setting `hosts` comes from, named when a host is not on it.
    pub hosts_setting: &'static str,
}

impl Egress {
    /// Why the worker may not send a request to `raw`, if it may not.
    pub fn refusal(&self, raw: &str) -> Option<String> {
        self.check(raw).err()
    }

    fn check(&self, raw: &str) -> Result<(), String> {
        // The WHATWG parser reads `\` as `/` and drops tabs and newlines; a hand-written client
        // or proxy on the way may not. Neither belongs in a URL someone means honestly.
        if raw.contains('\\') {
            return Err("must not contain backslashes".into());
        }
        if raw.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err("must not contain spaces or control characters".into());
        }
        let url = (self.parse)(raw).ok_or("must be an absolute https:// URL")?;
        if !url.username.is_empty() || !url.password.is_empty() {
            return Err("must not carry credentials".into());
        }
        // `https:example.com` and `https:///example.com` parse as `https://example.com/`.
        let authority = after_scheme(raw, &url.scheme)
            .filter(|a| !a.is_empty() && !a.starts_with('/'))
            .ok_or("must name a host after <scheme>://")?;
        let host = Host::of(&url.host).ok_or("must name a host")?;
        if let Host::V4(ip) = host {
            // `127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.0.0.1.` all parse to 127.0.0.1;
            // only the plain spelling is accepted, so what a reader sees is what is called.
            if !spelled_as_parsed(authority, &ip.to_string()) {
                return Err("must write an IPv4 address as four decimal numbers (a.b.c.d)".into());
            }
        }
        let loopback = host.is_loopback();
        match url.scheme.as_str() {
            "http" | "https" if loopback && self.allow_loopback => {}
            "https" if loopback || host.is_non_public() => return Err("must be publicly reachable".into()),
            "https" => {}
            _ => return Err("must be an https:// URL".into()),
        }
        if !self.allowed(host.name(&url.host)) {
            return Err(format!("names a host this deployment does not send requests to ({})", self.hosts_setting));
        }
        Ok(())
    }

    /// Whether the egress list lets requests go to `host` (the parsed one): the host itself or a
    /// subdomain of a listed host; an empty list allows any host.
    fn allowed(&self, host: &str) -> bool {
        self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .map(|entry| entry.trim_start_matches('[').trim_end_matches(']'))
                .any(|entry| host == entry || host.strip_suffix(entry).is_some_and(|sub| sub.ends_with('.')))
    }
}

/// What `raw` has after `<scheme>://`, its scheme written as the parser read it (in any case).
fn after_scheme<'r>(raw: &'r str, scheme: &str) -> Option<&'r str> {
    let written = raw.get(..scheme.len()).filter(|written| written.eq_ignore_ascii_case(scheme))?;
    raw[written.len()..].strip_prefix("://")
}

/// Whether `authority` (what follows `scheme://`) writes its host exactly as the parser
/// serialized it.
fn spelled_as_parsed(authority: &str, host: &str) -> bool {
    let Some(after) =
        authority.get(..host.len()).filter(|h| h.eq_ignore_ascii_case(host)).map(|_| &authority[host.len()..])
    else {
        return false;
    };
    after.is_empty() || after.starts_with([':', '/', '?', '#'])
}

#[derive(Debug)]
enum Host<'a> {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// Without a trailing dot.
    Domain(&'a str),
}

impl<'a> Host<'a> {
    fn of(serialized: &'a str) -> Option<Self> {
        if let Some(v6) = serialized.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6.parse().ok().map(Self::V6);
        }
        match serialized.parse() {
            Ok(v4) => Some(Self::V4(v4)),
            Err(_) => Some(serialized.trim_end_matches('.')).filter(|name| !name.is_empty()).map(Self::Domain),
        }
    }

    /// The host as the egress list names it: IPv6 without brackets, names without a trailing dot.
    fn name(&self, serialized: &'a str) -> &'a str {
        match self {
            Self::Domain(name) => name,
            _ => serialized.trim_start_matches('[').trim_end_matches(']'),
        }
    }

    /// Where development receivers may be: plain loopback addresses and `localhost`.
    fn is_loopback(&self) -> bool {
        match self {
            Self::V4(ip) => ip.is_loopback(),
            Self::V6(ip) => ip.is_loopback(),
            Self::Domain(name) => *name == "localhost",
        }
    }

    /// Anything a request from the worker must not reach: loopback, private, link-local (the
    /// cloud metadata address among them), CGNAT, unspecified, multicast, reserved and
    /// documentation ranges, IPv6 forms that carry such an IPv4 address, and names only a local
    /// resolver answers, whatever DNS might say of them.
    fn is_non_public(&self) -> bool {
        match self {
            Self::V4(ip) => non_public_v4(*ip),
            Self::V6(ip) => {
                let [first, second, ..] = ip.segments();
                ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_multicast()
                    || (first & 0xfe00) == 0xfc00 // unique local
                    || (first & 0xffc0) == 0xfe80 // link-local
                    || (first == 0x2001 && second == 0x0db8) // documentation
                    || embedded_v4(*ip).is_some_and(non_public_v4)
            }
            Self::Domain(name) => {
                *name == "localhost"
                    || [".localhost", ".local", ".internal", ".localdomain", ".home.arpa"]
                        .iter()
                        .any(|s| name.ends_with(s))
            }
        }
    }
}

/// The IPv4 address an IPv6 one stands for, where a network may route it to IPv4: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:ab:cd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

fn non_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (b & 0xc0) == 64) // CGNAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // benchmarking
        || a >= 240 // reserved
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The `url` crate implements the WHATWG URL standard, as the Workers runtime's `URL` does.
    fn whatwg(raw: &str) -> Option<ParsedUrl> {
        let url = url::Url::parse(raw).ok()?;
        Some(ParsedUrl {
            scheme: url.scheme().to_owned(),
            username: url.username().to_owned(),
            password: url.password().unwrap_or_default().to_owned(),
            host: url.host_str().unwrap_or_default().to_owned(),
        })
    }

    fn egress(allow_loopback: bool, hosts: &[&str]) -> Egress {
        Egress {
            parse: whatwg,
            allow_loopback,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            hosts_setting: "WEBHOOK_HOSTS",
        }
    }

    #[test]
    fn public_https_urls_pass() {
        for ok in ["https://cdn.example.com/a.jpg", "https://hooks.example.com:8443/x?y#z", "https://93.184.216.34/"] {
            assert_eq!(egress(false, &[]).refusal(ok), None, "{ok}");
        }
        assert_eq!(egress(true, &[]).refusal("http://127.0.0.1:9000/hook"), None, "local development");
    }

    #[test]
    fn spellings_that_parse_to_another_host_are_refused() {
        let hosts = egress(false, &["allowed.example"]);
        assert_eq!(hosts.refusal("https://hooks.allowed.example/x"), None);
        for bad in [
            "https://evil.example\\.allowed.example/",
            "https://evil.example/.allowed.example/",
            "https://allowed.example@evil.example/",
            "https://evil.example#.allowed.example",
            "https://evil.example?.allowed.example",
            "https://allowed.example.evil.example/",
            "https://badallowed.example/",
        ] {
            assert!(hosts.refusal(bad).is_some(), "{bad} must be refused");
        }
        for bad in [
            "https://2130706433/",
            "https://0x7f.1/",
            "https://127.1/",
            "https://127.0.0.1./",
            "https://0177.0.0.1/",
            "https://%31%32%37.0.0.1/",
            "https://[::127.0.0.1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:c0a8:101::]/",
            "https://0x0a.0.0.1/",
            "https://3232235777/",
            "https://[fd00::1]/a",
            "https://[fe80::1]/a",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/a",
            "https://0.0.0.0/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
            "https://metadata.google.internal/",
            "http://cdn.example.com/a.jpg",
            "ftp://example.com/",
            "https://user:pw@cdn.example.com/",
            "https://user@cdn.example.com/",
            "https:///a",
            "not a url",
            "https://exa mple.com/",
            "https://example.com/\n",
        ] {
            assert!(egress(false, &[]).refusal(bad).is_some(), "{bad} must be refused");
        }
        assert!(egress(true, &[]).refusal("http://10.0.0.1/").is_some(), "only loopback, even in development");
        assert!(egress(true, &[]).refusal("http://127.1:9000/").is_some(), "loopback too is written plainly");
    }

    #[test]
    fn the_egress_list_admits_its_hosts_and_their_subdomains() {
        let list = egress(true, &["example.com", "127.0.0.1", "[2606:4700::1111]"]);
        assert_eq!(list.refusal("https://example.com/hook"), None);
        assert_eq!(list.refusal("https://Hooks.EXAMPLE.com:8443/x"), None);
        assert_eq!(list.refusal("http://127.0.0.1:9000/hook"), None);
        assert_eq!(list.refusal("https://[2606:4700::1111]/"), None);
        assert!(list.refusal("https://badexample.com/hook").unwrap().contains("WEBHOOK_HOSTS"));
        assert!(list.refusal("https://example.com.evil.net/").is_some());
    }

    /// An IPv4 address in each spelling the WHATWG parser accepts: dotted decimal, octal and hex
    /// parts, fewer parts (the last one filling the rest), a trailing dot, and IPv6 forms.
    fn spellings(ip: Ipv4Addr) -> Vec<String> {
        let [a, b, c, d] = ip.octets();
        let n = u32::from(ip);
        vec![
            format!("{n}"),
            format!("0x{n:x}"),
            format!("0{n:o}"),
            format!("{a}.{}", n & 0xff_ffff),
            format!("{a}.{b}.{}", n & 0xffff),
            format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
            format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
            format!("{a}.{b}.{c}.{d}."),
            format!("[::ffff:{a}.{b}.{c}.{d}]"),
            format!("[::{a}.{b}.{c}.{d}]"),
            format!("[64:ff9b::{a}.{b}.{c}.{d}]"),
        ]
    }

    fn non_public() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(127, b, c, d)),
            any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(10, b, c, d)),
            any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(192, 168, c, d)),
            (16u8..32, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(172, b, c, d)),
            any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(169, 254, c, d)),
            (64u8..128, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(100, b, c, d)),
            any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(0, b, c, d)),
        ]
    }

    proptest! {
        #[test]
        fn a_non_public_address_is_refused_in_every_spelling(ip in non_public(), path in "[a-z0-9/]{0,12}", dev: bool) {
            let plain = format!("https://{ip}/{path}");
            prop_assert!(egress(false, &[]).refusal(&plain).is_some(), "{}", plain);
            for spelled in spellings(ip) {
                let url = format!("https://{spelled}/{path}");
                if let Some(parsed) = whatwg(&url) {
                    // The parser reads every spelling as the same address the fetch would reach…
                    prop_assert!(parsed.host == ip.to_string() || parsed.host.starts_with('['), "{} -> {}", url, parsed.host);
                }
                // …and none of them is let through, not even to loopback in development.
                prop_assert!(egress(dev, &[]).refusal(&url).is_some(), "{}", url);
            }
        }

        #[test]
        fn a_public_address_passes_only_written_plainly(a in 1u8..=223, b: u8, c: u8, d in 1u8..=254) {
            let ip = Ipv4Addr::new(a, b, c, d);
            prop_assume!(!non_public_v4(ip));
            prop_assert_eq!(egress(false, &[]).refusal(&format!("https://{ip}/x")), None);
            for spelled in &spellings(ip)[..8] {
                prop_assert!(egress(false, &[]).refusal(&format!("https://{spelled}/x")).is_some(), "{}", spelled);
            }
        }

        #[test]
        fn the_list_matches_the_host_the_fetch_would_reach(
            label in "[a-z]{1,10}", other in "[a-z]{1,10}", junk in "[@\\\\/?#.:a-z]{0,12}",
        ) {
            let list = egress(false, &["allowed.example"]);
            let url = format!("https://{other}.test{junk}.allowed.example/");
            let reached = whatwg(&url).map(|p| p.host);
            let verdict = list.refusal(&url);
            // Whatever the spelling, a URL passes only if the parsed host is on the list.
            if verdict.is_none() {
                let host = reached.unwrap_or_default();
                prop_assert!(host == "allowed.example" || host.ends_with(".allowed.example"), "{} -> {}", url, host);
            }
            let subdomain = format!("https://{label}.allowed.example/{other}");
            prop_assert_eq!(list.refusal(&subdomain), None);
        }
    }
}
