//! SPWP's paths (past `/api/v1/public`), each with the capability a device-scoped key needs.

use super::{find, Entry, Gate, Known, Method, RouteError};
use crate::domain::scope::Capability;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spwp<'p> {
    CheckPhone,
    /// `kind` is one of the pattern's words: text or location.
    Send {
        kind: &'p str,
    },
    /// The file travels in the body, which may be far larger than any other (`max_body`).
    SendMedia {
        kind: &'p str,
    },
    Status {
        id: &'p str,
    },
}

type Build = for<'p> fn(&[&'p str]) -> Spwp<'p>;

static TABLE: &[Entry<Build, Gate>] = &[
    Entry {
        path: "/messages/check-phone",
        methods: &[(Method::Post, |_| Spwp::CheckPhone)],
        access: Gate::each(Capability::CheckPhone),
    },
    Entry {
        path: "/messages/{kind:text|location}",
        methods: &[(Method::Post, |c| Spwp::Send { kind: c[0] })],
        access: Gate::each(Capability::Send),
    },
    Entry {
        path: "/messages/{kind:image|video|audio|document}",
        methods: &[(Method::Post, |c| Spwp::SendMedia { kind: c[0] })],
        access: Gate::each(Capability::Send),
    },
    Entry {
        path: "/messages/{id}",
        methods: &[(Method::Get, |c| Spwp::Status { id: c[0] })],
        access: Gate::each(Capability::MessageStatus),
    },
];

/// What an SPWP request (the segments past `/api/v1/public`) asks for and names.
pub fn resolve<'p>(method: Method, rest: &[&'p str]) -> Result<Known<Spwp<'p>>, RouteError> {
    find(TABLE, method, rest).map(|found| Known::of(found, method)).ok_or(RouteError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::super::{segments, testing};
    use super::*;

    fn route_of<'p>(method: Method, rest: &[&'p str]) -> Result<Spwp<'p>, RouteError> {
        resolve(method, rest).and_then(|known| known.route)
    }

    #[test]
    fn every_entry_resolves_and_its_other_methods_are_405() {
        testing::check_table(TABLE, |method, rest| testing::shown(route_of(method, rest)));
    }

    #[test]
    fn each_send_kind_is_a_send_and_any_other_word_a_message_id() {
        for (kind, media) in [
            ("text", false),
            ("image", true),
            ("video", true),
            ("audio", true),
            ("document", true),
            ("location", false),
        ] {
            let rest = ["messages", kind];
            let send = if media { Spwp::SendMedia { kind } } else { Spwp::Send { kind } };
            assert_eq!(route_of(Method::Post, &rest), Ok(send));
            let get = route_of(Method::Get, &rest);
            assert_eq!(get, Err(RouteError::MethodNotAllowed { allow: "POST".into() }), "{kind}");
        }
        assert_eq!(route_of(Method::Get, &["messages", "msg_1"]), Ok(Spwp::Status { id: "msg_1" }));
        assert_eq!(route_of(Method::Get, &["messages", "Text"]), Ok(Spwp::Status { id: "Text" }));
        let not_allowed = |allow: &str| Err(RouteError::MethodNotAllowed { allow: allow.into() });
        assert_eq!(route_of(Method::Post, &["messages", "msg_1"]), not_allowed("GET"));
        assert_eq!(route_of(Method::Delete, &["messages", "check-phone"]), not_allowed("POST"));
    }

    /// The capabilities as the router asked them before the table held them: by path alone.
    #[test]
    fn the_capability_of_every_path_is_todays() {
        let today = |rest: &[&str]| match rest {
            ["messages", "check-phone"] => Capability::CheckPhone,
            ["messages", kind] if ["text", "image", "video", "audio", "document", "location"].contains(kind) => {
                Capability::Send
            }
            _ => Capability::MessageStatus,
        };
        for entry in TABLE {
            let (path, _) = testing::sample(entry.path);
            for method in testing::EVERY_METHOD {
                let rest = segments(&path);
                assert_eq!(resolve(method, &rest).map(|k| k.access.capability), Ok(today(&rest)), "{method:?} {path}");
            }
        }
        let msg = segments("messages/msg_1");
        assert_eq!(resolve(Method::Get, &msg).map(|k| k.access.capability), Ok(today(&msg)));
    }

    #[test]
    fn no_spwp_path_skips_the_allow_list() {
        assert!(TABLE.iter().all(|entry| !entry.access.ip_exempt));
    }

    #[test]
    fn near_misses_are_not_found() {
        for path in ["", "messages", "messages/text/x", "Messages/text", "message/text", "messages/msg_1/status"] {
            assert_eq!(resolve(Method::Post, &segments(path)), Err(RouteError::NotFound), "{path}");
        }
        assert_eq!(resolve(Method::Get, &[]), Err(RouteError::NotFound));
    }
}
