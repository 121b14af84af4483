//! The operator API (`/admin/v1/…`): apps, plans and keys, and the bridge's dead letters.

use super::{lookup, Entry, Method, RouteError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin<'p> {
    CreateApp,
    ListApps,
    ViewApp { app: &'p str },
    UpdateApp { app: &'p str },
    CreateKey { app: &'p str },
    ListKeys { app: &'p str },
    RevokeKey { app: &'p str, key: &'p str },
    Audit { app: &'p str },
    Events { app: &'p str },
    DeadLetters,
    ReplayDeadLetter { id: &'p str },
}

type Build = for<'p> fn(&[&'p str]) -> Admin<'p>;

static TABLE: &[Entry<Build, ()>] = &[
    Entry {
        path: "/apps",
        methods: &[(Method::Get, |_| Admin::ListApps), (Method::Post, |_| Admin::CreateApp)],
        access: (),
    },
    Entry {
        path: "/apps/{app}",
        methods: &[
            (Method::Get, |c| Admin::ViewApp { app: c[0] }),
            (Method::Patch, |c| Admin::UpdateApp { app: c[0] }),
        ],
        access: (),
    },
    Entry {
        path: "/apps/{app}/keys",
        methods: &[
            (Method::Get, |c| Admin::ListKeys { app: c[0] }),
            (Method::Post, |c| Admin::CreateKey { app: c[0] }),
        ],
        access: (),
    },
    Entry {
        path: "/apps/{app}/keys/{key}",
        methods: &[(Method::Delete, |c| Admin::RevokeKey { app: c[0], key: c[1] })],
        access: (),
    },
    Entry { path: "/apps/{app}/audit", methods: &[(Method::Get, |c| Admin::Audit { app: c[0] })], access: () },
    Entry { path: "/apps/{app}/events", methods: &[(Method::Get, |c| Admin::Events { app: c[0] })], access: () },
    Entry { path: "/bridge/dead-letters", methods: &[(Method::Get, |_| Admin::DeadLetters)], access: () },
    Entry {
        path: "/bridge/dead-letters/{id}/replay",
        methods: &[(Method::Post, |c| Admin::ReplayDeadLetter { id: c[0] })],
        access: (),
    },
];

/// The route of an operator request (the segments past `/admin/v1`).
pub fn resolve<'p>(method: Method, rest: &[&'p str]) -> Result<Admin<'p>, RouteError> {
    lookup(TABLE, method, rest)
}

#[cfg(test)]
mod tests {
    use super::super::{segments, testing};
    use super::*;

    #[test]
    fn every_entry_resolves_and_its_other_methods_are_405() {
        testing::check_table(TABLE, |method, rest| testing::shown(resolve(method, rest)));
    }

    #[test]
    fn captures_land_where_they_belong() {
        assert_eq!(
            resolve(Method::Delete, &segments("apps/app_1/keys/key_2")),
            Ok(Admin::RevokeKey { app: "app_1", key: "key_2" })
        );
        assert_eq!(resolve(Method::Patch, &segments("apps/app_1")), Ok(Admin::UpdateApp { app: "app_1" }));
    }

    #[test]
    fn allow_lists_what_today_answers() {
        let allow = |method, path| match resolve(method, &segments(path)) {
            Err(RouteError::MethodNotAllowed { allow }) => allow,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(allow(Method::Delete, "apps"), "GET, POST");
        assert_eq!(allow(Method::Delete, "apps/app_1"), "GET, PATCH");
        assert_eq!(allow(Method::Put, "apps/app_1/keys"), "GET, POST");
        assert_eq!(allow(Method::Get, "apps/app_1/keys/key_1"), "DELETE");
        assert_eq!(allow(Method::Post, "apps/app_1/audit"), "GET");
        assert_eq!(allow(Method::Other, "apps/app_1/events"), "GET");
        assert_eq!(allow(Method::Post, "bridge/dead-letters"), "GET");
        assert_eq!(allow(Method::Get, "bridge/dead-letters/dl_1/replay"), "POST");
    }

    #[test]
    fn near_misses_are_not_found() {
        for path in ["", "apps/app_1/keys/key_1/x", "apps/app_1/other", "Apps", "bridge", "bridge/dead-letters/dl_1"] {
            assert_eq!(resolve(Method::Get, &segments(path)), Err(RouteError::NotFound), "{path}");
        }
    }
}
