//! The worker's own paths, outside the APIs: no API key, errors worded as LoginWA's.

use super::{lookup, Entry, Method, RouteError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Health,
    /// The bridge's signed events.
    BridgeEvents,
    /// One static page for every device: the device id and token are read by its script.
    LinkPage,
}

type Build = for<'p> fn(&[&'p str]) -> Service;

static TABLE: &[Entry<Build, ()>] = &[
    Entry { path: "/healthz", methods: &[(Method::Get, |_| Service::Health)], access: () },
    Entry { path: "/bridge/v1/events", methods: &[(Method::Post, |_| Service::BridgeEvents)], access: () },
    Entry { path: "/link/{_device}", methods: &[(Method::Get, |_| Service::LinkPage)], access: () },
];

/// The route of a path outside the APIs (all its segments).
pub fn resolve(method: Method, segments: &[&str]) -> Result<Service, RouteError> {
    lookup(TABLE, method, segments)
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
    fn near_misses_are_not_found() {
        for path in
            ["/", "/healthz/x", "/HEALTHZ", "/bridge/v1/events/x", "/bridge/v1", "/link", "/link/a/b", "/nowhere"]
        {
            assert_eq!(resolve(Method::Get, &segments(path)), Err(RouteError::NotFound), "{path}");
        }
    }

    #[test]
    fn the_link_page_is_one_page_for_every_device() {
        assert_eq!(resolve(Method::Get, &segments("/link/dev_1")), Ok(Service::LinkPage));
        assert_eq!(resolve(Method::Get, &segments("/link/dev_2/")), Ok(Service::LinkPage));
        assert_eq!(
            resolve(Method::Post, &segments("/link/dev_1")),
            Err(RouteError::MethodNotAllowed { allow: "GET".into() })
        );
    }
}
