//! LoginWA's paths (past `/api`), wagate's additions included: the two a link is the
//! credential for (inbound media, the device-linking page's API), then the ones an API key
//! opens, each with the capability a device-scoped key needs.

use super::{find, route, Entry, Gate, Known, Method, Needs, RouteError};
use crate::domain::scope::Capability;

#[derive(Debug, PartialEq, Eq)]
pub enum LoginWa<'p> {
    /// Webhook receivers fetch inbound media without an API key.
    Media {
        sha256: &'p str,
    },
    /// The device-linking page's API: its token is checked before its method.
    Link {
        device: &'p str,
        action: Result<LinkAction, RouteError>,
    },
    Keyed(Known<Keyed<'p>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Page,
    Qr,
    PairCode,
}

/// The routes an API key opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed<'p> {
    ListDevices,
    CreateDevice,
    GetDevice {
        id: &'p str,
    },
    DeleteDevice {
        id: &'p str,
    },
    LinkToken {
        id: &'p str,
    },
    RefreshQr {
        id: &'p str,
    },
    /// `picture` is `qr.svg` or `qr.png`.
    DeviceQr {
        id: &'p str,
        picture: &'p str,
    },
    SendMessage,
    AuthStart,
    AuthVerify,
    Webhooks(Webhooks<'p>),
    AutoReplies(AutoReplies<'p>),
    Campaigns(Campaigns<'p>),
    OptOuts(OptOuts<'p>),
    IpWhitelist(IpWhitelist<'p>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhooks<'p> {
    List,
    Create,
    Get { id: &'p str },
    Update { id: &'p str },
    Delete { id: &'p str },
    Test { id: &'p str },
    RegenerateSecret { id: &'p str },
    Deliveries { id: &'p str },
    ReplayDelivery { id: &'p str, delivery: &'p str },
    Replay { id: &'p str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoReplies<'p> {
    List,
    Create,
    Get { id: &'p str },
    Update { id: &'p str },
    Delete { id: &'p str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Campaigns<'p> {
    List,
    Create,
    Get { id: &'p str },
    Delete { id: &'p str },
    Send { id: &'p str },
    Pause { id: &'p str },
    Resume { id: &'p str },
    Contacts { id: &'p str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOuts<'p> {
    List,
    Add,
    Remove { phone: &'p str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpWhitelist<'p> {
    List,
    Add,
    Restrict,
    Remove { id: &'p str },
}

/// The one capture of the media path.
type Sha256 = for<'p> fn(&[&'p str]) -> &'p str;
type Link = fn(&[&str]) -> LinkAction;

static MEDIA: &[Entry<Sha256, ()>] =
    &[Entry { path: "/v1/media/{sha256}", methods: &[(Method::Get, |c| c[0])], access: () }];

/// Each pattern's first capture is the device.
static LINK: &[Entry<Link, ()>] = &[
    Entry { path: "/v1/link/{device}", methods: &[(Method::Get, |_| LinkAction::Page)], access: () },
    Entry { path: "/v1/link/{device}/qr.svg", methods: &[(Method::Get, |_| LinkAction::Qr)], access: () },
    Entry { path: "/v1/link/{device}/pair-code", methods: &[(Method::Post, |_| LinkAction::PairCode)], access: () },
];

type Build = for<'p> fn(&[&'p str]) -> Keyed<'p>;

const DEVICES: Gate =
    Gate { needs: Needs::Split(Method::Post, Capability::CreateDevice, Capability::ListDevices), ..SEND };
const DEVICE: Gate = Gate::each(Capability::Device);
const SEND: Gate = Gate::each(Capability::Send);
const WEBHOOKS: Gate = Gate::each(Capability::Webhooks);
const AUTO_REPLIES: Gate = Gate::each(Capability::AutoReplies);
const CAMPAIGNS: Gate = Gate::each(Capability::Campaigns);
const OPT_OUTS: Gate = Gate::each(Capability::OptOuts);
/// Reading the allow-list is open to a scoped key; changing it is app-wide.
const IP_WHITELIST: Gate = Gate {
    needs: Needs::Split(Method::Get, Capability::ReadIpWhitelist, Capability::ChangeIpWhitelist),
    ip_exempt: true,
};

static KEYED: &[Entry<Build, Gate>] = &[
    Entry {
        path: "/v1/devices",
        methods: &[(Method::Get, |_| Keyed::ListDevices), (Method::Post, |_| Keyed::CreateDevice)],
        access: DEVICES,
    },
    Entry {
        path: "/v1/devices/{id}",
        methods: &[
            (Method::Get, |c| Keyed::GetDevice { id: c[0] }),
            (Method::Delete, |c| Keyed::DeleteDevice { id: c[0] }),
        ],
        access: DEVICE,
    },
    Entry {
        path: "/v1/devices/{id}/link-token",
        methods: &[(Method::Post, |c| Keyed::LinkToken { id: c[0] })],
        access: DEVICE,
    },
    Entry {
        path: "/v1/devices/{id}/refresh-qr",
        methods: &[(Method::Post, |c| Keyed::RefreshQr { id: c[0] })],
        access: DEVICE,
    },
    Entry {
        path: "/v1/devices/{id}/{picture:qr.svg|qr.png}",
        methods: &[(Method::Get, |c| Keyed::DeviceQr { id: c[0], picture: c[1] })],
        access: DEVICE,
    },
    Entry { path: "/v1/messages/send", methods: &[(Method::Post, |_| Keyed::SendMessage)], access: SEND },
    Entry { path: "/auth/start", methods: &[(Method::Post, |_| Keyed::AuthStart)], access: SEND },
    Entry { path: "/auth/verify", methods: &[(Method::Post, |_| Keyed::AuthVerify)], access: SEND },
    Entry {
        path: "/v1/webhooks",
        methods: &[
            (Method::Get, |_| Keyed::Webhooks(Webhooks::List)),
            (Method::Post, |_| Keyed::Webhooks(Webhooks::Create)),
        ],
        access: WEBHOOKS,
    },
    Entry {
        path: "/v1/webhooks/{id}",
        methods: &[
            (Method::Get, |c| Keyed::Webhooks(Webhooks::Get { id: c[0] })),
            // The reference says only "Update"; clients send either verb, and both patch.
            (Method::Put, |c| Keyed::Webhooks(Webhooks::Update { id: c[0] })),
            (Method::Patch, |c| Keyed::Webhooks(Webhooks::Update { id: c[0] })),
            (Method::Delete, |c| Keyed::Webhooks(Webhooks::Delete { id: c[0] })),
        ],
        access: WEBHOOKS,
    },
    Entry {
        path: "/v1/webhooks/{id}/test",
        methods: &[(Method::Post, |c| Keyed::Webhooks(Webhooks::Test { id: c[0] }))],
        access: WEBHOOKS,
    },
    Entry {
        path: "/v1/webhooks/{id}/regenerate-secret",
        methods: &[(Method::Post, |c| Keyed::Webhooks(Webhooks::RegenerateSecret { id: c[0] }))],
        access: WEBHOOKS,
    },
    Entry {
        path: "/v1/webhooks/{id}/deliveries",
        methods: &[(Method::Get, |c| Keyed::Webhooks(Webhooks::Deliveries { id: c[0] }))],
        access: WEBHOOKS,
    },
    Entry {
        path: "/v1/webhooks/{id}/deliveries/{delivery}/replay",
        methods: &[(Method::Post, |c| Keyed::Webhooks(Webhooks::ReplayDelivery { id: c[0], delivery: c[1] }))],
        access: WEBHOOKS,
    },
    Entry {
        path: "/v1/webhooks/{id}/replay",
        methods: &[(Method::Post, |c| Keyed::Webhooks(Webhooks::Replay { id: c[0] }))],
        access: WEBHOOKS,
    },
    Entry {
        path: "/v1/auto-replies",
        methods: &[
            (Method::Get, |_| Keyed::AutoReplies(AutoReplies::List)),
            (Method::Post, |_| Keyed::AutoReplies(AutoReplies::Create)),
        ],
        access: AUTO_REPLIES,
    },
    Entry {
        path: "/v1/auto-replies/{id}",
        methods: &[
            (Method::Get, |c| Keyed::AutoReplies(AutoReplies::Get { id: c[0] })),
            (Method::Patch, |c| Keyed::AutoReplies(AutoReplies::Update { id: c[0] })),
            (Method::Delete, |c| Keyed::AutoReplies(AutoReplies::Delete { id: c[0] })),
        ],
        access: AUTO_REPLIES,
    },
    Entry {
        path: "/v1/broadcast/campaigns",
        methods: &[
            (Method::Get, |_| Keyed::Campaigns(Campaigns::List)),
            (Method::Post, |_| Keyed::Campaigns(Campaigns::Create)),
        ],
        access: CAMPAIGNS,
    },
    Entry {
        path: "/v1/broadcast/campaigns/{id}",
        methods: &[
            (Method::Get, |c| Keyed::Campaigns(Campaigns::Get { id: c[0] })),
            (Method::Delete, |c| Keyed::Campaigns(Campaigns::Delete { id: c[0] })),
        ],
        access: CAMPAIGNS,
    },
    Entry {
        path: "/v1/broadcast/campaigns/{id}/send",
        methods: &[(Method::Post, |c| Keyed::Campaigns(Campaigns::Send { id: c[0] }))],
        access: CAMPAIGNS,
    },
    Entry {
        path: "/v1/broadcast/campaigns/{id}/pause",
        methods: &[(Method::Post, |c| Keyed::Campaigns(Campaigns::Pause { id: c[0] }))],
        access: CAMPAIGNS,
    },
    Entry {
        path: "/v1/broadcast/campaigns/{id}/resume",
        methods: &[(Method::Post, |c| Keyed::Campaigns(Campaigns::Resume { id: c[0] }))],
        access: CAMPAIGNS,
    },
    Entry {
        path: "/v1/broadcast/campaigns/{id}/contacts",
        methods: &[(Method::Get, |c| Keyed::Campaigns(Campaigns::Contacts { id: c[0] }))],
        access: CAMPAIGNS,
    },
    Entry {
        path: "/v1/opt-outs",
        methods: &[(Method::Get, |_| Keyed::OptOuts(OptOuts::List)), (Method::Post, |_| Keyed::OptOuts(OptOuts::Add))],
        access: OPT_OUTS,
    },
    Entry {
        path: "/v1/opt-outs/{phone}",
        methods: &[(Method::Delete, |c| Keyed::OptOuts(OptOuts::Remove { phone: c[0] }))],
        access: OPT_OUTS,
    },
    Entry {
        path: "/v1/ip-whitelist",
        methods: &[
            (Method::Get, |_| Keyed::IpWhitelist(IpWhitelist::List)),
            (Method::Post, |_| Keyed::IpWhitelist(IpWhitelist::Add)),
        ],
        access: IP_WHITELIST,
    },
    // Before `{id}`, which it would otherwise fall under: `DELETE …/restriction` is a 405.
    Entry {
        path: "/v1/ip-whitelist/restriction",
        methods: &[(Method::Put, |_| Keyed::IpWhitelist(IpWhitelist::Restrict))],
        access: IP_WHITELIST,
    },
    Entry {
        path: "/v1/ip-whitelist/{id}",
        methods: &[(Method::Delete, |c| Keyed::IpWhitelist(IpWhitelist::Remove { id: c[0] }))],
        access: IP_WHITELIST,
    },
];

/// What a LoginWA request (the segments past `/api`) names, and what it must pass first.
pub fn resolve<'p>(method: Method, rest: &[&'p str]) -> Result<LoginWa<'p>, RouteError> {
    if let Some(found) = find(MEDIA, method, rest) {
        return route(found).map(|sha256| LoginWa::Media { sha256 });
    }
    if let Some(found) = find(LINK, method, rest) {
        return Ok(LoginWa::Link { device: found.captures[0], action: route(found) });
    }
    find(KEYED, method, rest).map(|found| LoginWa::Keyed(Known::of(found, method))).ok_or(RouteError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::super::{segments, testing};
    use super::*;

    fn keyed<'p>(method: Method, rest: &[&'p str]) -> Result<Known<Keyed<'p>>, RouteError> {
        match resolve(method, rest)? {
            LoginWa::Keyed(known) => Ok(known),
            other => panic!("{rest:?} is not keyed: {other:?}"),
        }
    }

    #[test]
    fn every_entry_resolves_and_its_other_methods_are_405() {
        testing::check_table(KEYED, |method, rest| testing::shown(keyed(method, rest)?.route));
        testing::check_table(MEDIA, |method, rest| match resolve(method, rest)? {
            LoginWa::Media { sha256 } => Ok(format!("{sha256:?}")),
            other => panic!("{other:?}"),
        });
        testing::check_table(LINK, |method, rest| match resolve(method, rest)? {
            LoginWa::Link { device, action } => action.map(|action| format!("{device:?} {action:?}")),
            other => panic!("{other:?}"),
        });
    }

    #[test]
    fn the_link_pages_token_is_checked_before_its_method() {
        let rest = segments("v1/link/dev_1/pair-code");
        let expected =
            LoginWa::Link { device: "dev_1", action: Err(RouteError::MethodNotAllowed { allow: "POST".into() }) };
        assert_eq!(resolve(Method::Get, &rest), Ok(expected));
        let rest = segments("v1/link/dev_1");
        assert_eq!(resolve(Method::Get, &rest), Ok(LoginWa::Link { device: "dev_1", action: Ok(LinkAction::Page) }));
    }

    #[test]
    fn media_answers_405_before_anything_else() {
        let rest = segments("v1/media/abc");
        assert_eq!(resolve(Method::Post, &rest), Err(RouteError::MethodNotAllowed { allow: "GET".into() }));
        assert_eq!(resolve(Method::Get, &rest), Ok(LoginWa::Media { sha256: "abc" }));
    }

    #[test]
    fn allow_lists_what_today_answers() {
        let allow = |method, path: &str| match keyed(method, &segments(path)).map(|known| known.route) {
            Ok(Err(RouteError::MethodNotAllowed { allow })) => allow,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(allow(Method::Delete, "v1/devices"), "GET, POST");
        assert_eq!(allow(Method::Post, "v1/devices/dev_1"), "GET, DELETE");
        assert_eq!(allow(Method::Post, "v1/devices/dev_1/qr.png"), "GET");
        assert_eq!(allow(Method::Get, "v1/devices/dev_1/refresh-qr"), "POST");
        assert_eq!(allow(Method::Get, "v1/devices/dev_1/link-token"), "POST");
        assert_eq!(allow(Method::Delete, "v1/messages/send"), "POST");
        assert_eq!(allow(Method::Get, "auth/start"), "POST");
        assert_eq!(allow(Method::Other, "auth/verify"), "POST");
        assert_eq!(allow(Method::Put, "v1/webhooks"), "GET, POST");
        assert_eq!(allow(Method::Post, "v1/webhooks/wh_1"), "GET, PUT, PATCH, DELETE");
        assert_eq!(allow(Method::Post, "v1/webhooks/wh_1/deliveries"), "GET");
        for action in ["test", "regenerate-secret", "replay", "deliveries/d_1/replay"] {
            assert_eq!(allow(Method::Get, &format!("v1/webhooks/wh_1/{action}")), "POST", "{action}");
        }
        assert_eq!(allow(Method::Put, "v1/auto-replies"), "GET, POST");
        assert_eq!(allow(Method::Put, "v1/auto-replies/ar_1"), "GET, PATCH, DELETE");
        assert_eq!(allow(Method::Put, "v1/broadcast/campaigns"), "GET, POST");
        assert_eq!(allow(Method::Patch, "v1/broadcast/campaigns/camp_1"), "GET, DELETE");
        for action in ["send", "pause", "resume"] {
            assert_eq!(allow(Method::Get, &format!("v1/broadcast/campaigns/camp_1/{action}")), "POST", "{action}");
        }
        assert_eq!(allow(Method::Post, "v1/broadcast/campaigns/camp_1/contacts"), "GET");
        assert_eq!(allow(Method::Delete, "v1/opt-outs"), "GET, POST");
        assert_eq!(allow(Method::Get, "v1/opt-outs/628123"), "DELETE");
        assert_eq!(allow(Method::Delete, "v1/ip-whitelist"), "GET, POST");
        assert_eq!(allow(Method::Delete, "v1/ip-whitelist/restriction"), "PUT");
        assert_eq!(allow(Method::Put, "v1/ip-whitelist/ip_1"), "DELETE");
    }

    #[test]
    fn near_misses_are_not_found() {
        for path in [
            "",
            "v1",
            "v1/Devices",
            "V1/devices",
            "v1/devices/dev_1/qr.jpg",
            "v1/devices/dev_1/QR.svg",
            "v1/devices/dev_1/link-token/x",
            "v1/messages",
            "v1/messages/send/x",
            "auth",
            "auth/start/x",
            "v1/webhooks/wh_1/deliveries/d_1",
            "v1/webhooks/wh_1/replay/x",
            "v1/auto-replies/ar_1/x",
            "v1/broadcast",
            "v1/broadcast/campaigns/camp_1/stop",
            "v1/opt-outs/628123/x",
            "v1/ip-whitelist/restriction/x",
            "v1/media",
            "v1/media/abc/x",
            "v1/link",
            "v1/link/dev_1/qr.png",
            "v1/public/messages/text",
            "v1/nothing-here",
        ] {
            for method in testing::EVERY_METHOD {
                assert_eq!(resolve(method, &segments(path)), Err(RouteError::NotFound), "{method:?} {path}");
            }
        }
    }

    /// The device-scope matrix as the router asked it before the table held it (a path family
    /// and, for two of them, the method), kept to check the table against.
    fn capability_before_the_table(rest: &[&str], method: Method) -> Capability {
        match (rest, method) {
            (["v1", "webhooks", ..], _) => Capability::Webhooks,
            (["v1", "auto-replies", ..], _) => Capability::AutoReplies,
            (["v1", "broadcast", ..], _) => Capability::Campaigns,
            (["v1", "ip-whitelist", ..], Method::Get) => Capability::ReadIpWhitelist,
            (["v1", "ip-whitelist", ..], _) => Capability::ChangeIpWhitelist,
            (["v1", "opt-outs", ..], _) => Capability::OptOuts,
            (["v1", "devices"], Method::Post) => Capability::CreateDevice,
            (["v1", "devices"], _) => Capability::ListDevices,
            (["v1", "devices", ..], _) => Capability::Device,
            _ => Capability::Send,
        }
    }

    #[test]
    fn every_path_and_method_asks_the_capability_it_asked_before() {
        for entry in KEYED {
            let (path, _) = testing::sample(entry.path);
            let rest = segments(&path);
            for method in testing::EVERY_METHOD {
                let access = keyed(method, &rest).map(|known| known.access);
                assert_eq!(
                    access.map(|a| a.capability),
                    Ok(capability_before_the_table(&rest, method)),
                    "{method:?} {path}"
                );
            }
        }
        let picture = segments("v1/devices/dev_1/qr.png");
        assert_eq!(keyed(Method::Get, &picture).map(|k| k.access.capability), Ok(Capability::Device));
    }

    #[test]
    fn only_the_allow_lists_own_paths_skip_it() {
        for entry in KEYED {
            assert_eq!(entry.access.ip_exempt, entry.path.starts_with("/v1/ip-whitelist"), "{}", entry.path);
        }
    }
}
