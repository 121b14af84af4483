//! Every path the worker answers, once: one table per area (the service's own paths, the
//! operator API, LoginWA, SPWP), each entry a path pattern with the methods it takes and the
//! route each method names. Looking a request up gives its route, or the 404 of an unknown
//! path, or the 405 of a known path's other methods with its `Allow` computed from the table.
//! Pure: the edge turns the request into a [`Method`] and path segments and `match`es on the
//! route it gets back.

pub mod admin;
pub mod loginwa;
pub mod service;
pub mod spwp;

use crate::domain::body::{CAMPAIGN_MAX_BYTES, DEFAULT_MAX_BYTES, EVENT_MAX_BYTES, MEDIA_MAX_BYTES};
use crate::domain::error::ApiError;
use crate::domain::scope::Capability;

/// A request's method, as far as routing tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    /// HEAD, OPTIONS, QUERY, PROPFIND, …: no path takes one, so each is a 405.
    Other,
}

impl Method {
    /// The methods a path may take, in the order `Allow` lists them.
    const ROUTED: [Self; 5] = [Self::Get, Self::Post, Self::Put, Self::Patch, Self::Delete];

    /// Methods compare without case, as the runtime's own reading of them does.
    pub fn parse(raw: &str) -> Self {
        Self::ROUTED.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(raw)).unwrap_or(Self::Other)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Other => "OTHER",
        }
    }
}

/// The part of the API a path lies in: each has its table, its authentication and its way
/// of wording errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The worker's own paths ([`service`]).
    Service,
    /// `/admin/v1/…`, the operator API.
    Admin,
    /// `/api/v1/public/…`.
    Spwp,
    /// Every other `/api/…` path.
    LoginWa,
}

/// The first prefix a path starts with names its area (SPWP's lies inside LoginWA's).
const MOUNTS: [(&[&str], Area); 3] =
    [(&["admin", "v1"], Area::Admin), (&["api", "v1", "public"], Area::Spwp), (&["api"], Area::LoginWa)];

/// The area of a path's `segments` and the segments past its prefix, which its table holds.
pub fn area<'s, 'p>(segments: &'s [&'p str]) -> (Area, &'s [&'p str]) {
    MOUNTS
        .iter()
        .find_map(|(prefix, area)| segments.strip_prefix(*prefix).map(|rest| (*area, rest)))
        .unwrap_or((Area::Service, segments))
}

/// The most bytes a request body to `path` may have, whatever its method: the paths that take
/// more than the default take only POST, so the route they name for POST says it.
pub fn max_body(path: &str) -> u64 {
    let segments = segments(path);
    let (area, rest) = area(&segments);
    match area {
        Area::Service if matches!(service::resolve(Method::Post, rest), Ok(service::Service::BridgeEvents)) => {
            EVENT_MAX_BYTES
        }
        Area::Spwp
            if matches!(
                spwp::resolve(Method::Post, rest),
                Ok(Known { route: Ok(spwp::Spwp::SendMedia { .. }), .. })
            ) =>
        {
            MEDIA_MAX_BYTES
        }
        Area::LoginWa
            if matches!(
                loginwa::resolve(Method::Post, rest),
                Ok(loginwa::LoginWa::Keyed(Known {
                    route: Ok(loginwa::Keyed::Campaigns(loginwa::Campaigns::Create)),
                    ..
                }))
            ) =>
        {
            CAMPAIGN_MAX_BYTES
        }
        _ => DEFAULT_MAX_BYTES,
    }
}

/// Why a request names no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path is known; `allow` lists its methods.
    MethodNotAllowed {
        allow: String,
    },
}

impl From<RouteError> for ApiError {
    fn from(err: RouteError) -> Self {
        match err {
            RouteError::NotFound => ApiError::RouteNotFound,
            RouteError::MethodNotAllowed { allow } => ApiError::MethodNotAllowed { allow },
        }
    }
}

/// One path of a table: its pattern, the constructor of the route each method names, and
/// what the area needs to know before answering it (`A`: who may, for the tenant APIs).
///
/// A pattern is `/`-separated segments, each a literal, a `{name}` capture of any one
/// segment, or a `{name:a|b}` capture of one of the listed words. Captures reach the
/// constructor in order; a `{_name}` is one the route does without. The first entry whose pattern matches the path is the path's
/// entry, so a literal is listed before a capture it would otherwise fall under.
pub struct Entry<C: 'static, A: 'static> {
    pub path: &'static str,
    pub methods: &'static [(Method, C)],
    pub access: A,
}

/// A known path: its entry, the segments its captures took, and the route constructor of
/// the request's method or the 405 naming the entry's methods.
pub struct Found<'p, C: 'static, A: 'static> {
    pub entry: &'static Entry<C, A>,
    pub captures: Vec<&'p str>,
    pub handler: Result<C, RouteError>,
}

/// A path as the router reads it: outer slashes do not count (`/api/v1/devices/` is
/// `/api/v1/devices`), inner ones do (an empty segment is a segment).
pub fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

/// The first entry of `table` whose pattern matches `segments`.
pub fn find<'p, C: Copy, A>(
    table: &'static [Entry<C, A>],
    method: Method,
    segments: &[&'p str],
) -> Option<Found<'p, C, A>> {
    let (entry, captures) =
        table.iter().find_map(|entry| captures(entry.path, segments).map(|captures| (entry, captures)))?;
    let handler = entry
        .methods
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, handler)| *handler)
        .ok_or_else(|| RouteError::MethodNotAllowed { allow: allow(entry.methods) });
    Some(Found { entry, captures, handler })
}

/// What a path of the tenant APIs asks of the API key, whatever the method: the key is
/// checked before it learns a path's methods, so a 405 needs it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub needs: Needs,
    /// The allow-list's own paths skip it, so a client it locks out can still fix it.
    pub ip_exempt: bool,
}

/// The device-scope capability a path's requests ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Every method asks the same.
    Each(Capability),
    /// `.0` asks `.1`; every other method (a 405 included) asks `.2`.
    Split(Method, Capability, Capability),
}

/// What one request asks of its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAccess {
    pub capability: Capability,
    pub ip_exempt: bool,
}

impl Gate {
    pub const fn each(capability: Capability) -> Self {
        Self { needs: Needs::Each(capability), ip_exempt: false }
    }

    fn access(&self, method: Method) -> KeyAccess {
        let capability = match self.needs {
            Needs::Each(capability) => capability,
            Needs::Split(on, then, _) if on == method => then,
            Needs::Split(_, _, otherwise) => otherwise,
        };
        KeyAccess { capability, ip_exempt: self.ip_exempt }
    }
}

/// A known path of a tenant API: what its key must be allowed, and its route or 405.
#[derive(Debug, PartialEq, Eq)]
pub struct Known<R> {
    pub access: KeyAccess,
    pub route: Result<R, RouteError>,
}

impl<R> Known<R> {
    fn of<'p, C: Copy + Fn(&[&'p str]) -> R>(found: Found<'p, C, Gate>, method: Method) -> Self {
        Self { access: found.entry.access.access(method), route: route(found) }
    }
}

/// The route `segments` name in `table` for `method`.
pub fn lookup<'p, C: Copy + Fn(&[&'p str]) -> R, R, A>(
    table: &'static [Entry<C, A>],
    method: Method,
    segments: &[&'p str],
) -> Result<R, RouteError> {
    find(table, method, segments).map_or(Err(RouteError::NotFound), route)
}

/// The route a found path names for its method.
pub fn route<'p, C: Copy + Fn(&[&'p str]) -> R, R, A>(found: Found<'p, C, A>) -> Result<R, RouteError> {
    found.handler.map(|build| build(&found.captures))
}

fn allow<C>(methods: &[(Method, C)]) -> String {
    Method::ROUTED
        .into_iter()
        .filter(|m| methods.iter().any(|(taken, _)| taken == m))
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The segments `pattern`'s captures take from `segments`, if it matches them.
fn captures<'p>(pattern: &str, segments: &[&'p str]) -> Option<Vec<&'p str>> {
    let pattern: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    if pattern.len() != segments.len() {
        return None;
    }
    let mut captured = Vec::new();
    for (want, got) in pattern.iter().zip(segments) {
        match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            None if want == got => {}
            None => return None,
            Some(capture) => match capture.split_once(':') {
                Some((_, words)) if !words.split('|').any(|w| w == *got) => return None,
                _ => captured.push(*got),
            },
        }
    }
    Some(captured)
}

/// What a table's tests check of each of its entries.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub const EVERY_METHOD: [Method; 6] =
        [Method::Get, Method::Post, Method::Put, Method::Patch, Method::Delete, Method::Other];

    /// A path `pattern` matches, each capture filled with a word of its own (the first listed
    /// word of a `{name:a|b}`), and the fillers its route must hold (not a `{_name}`'s).
    pub fn sample(pattern: &str) -> (String, Vec<String>) {
        let mut fillers = Vec::new();
        let path: Vec<String> = pattern
            .trim_start_matches('/')
            .split('/')
            .enumerate()
            .map(|(segment_at, segment)| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                None => segment.to_owned(),
                Some(capture) => {
                    let filler = match capture.split_once(':') {
                        Some((_, words)) => words.split('|').next().unwrap_or_default().to_owned(),
                        None => format!("x{segment_at}"),
                    };
                    if !capture.starts_with('_') {
                        fillers.push(filler.clone());
                    }
                    filler
                }
            })
            .collect();
        (format!("/{}", path.join("/")), fillers)
    }

    /// A route as [`check_table`] reads it.
    pub fn shown<R: std::fmt::Debug>(route: Result<R, RouteError>) -> Result<String, RouteError> {
        route.map(|route| format!("{route:?}"))
    }

    /// Every method of every entry names a route (`resolve` answers it as its `Debug` text)
    /// holding each of its captures, the other
    /// methods answer 405 with the entry's `Allow`, and the path with its first literal in
    /// upper case is not found.
    pub fn check_table<C: Copy, A>(
        table: &'static [Entry<C, A>],
        resolve: impl Fn(Method, &[&str]) -> Result<String, RouteError>,
    ) {
        for entry in table {
            let (path, fillers) = sample(entry.path);
            let segments = segments(&path);
            for method in EVERY_METHOD {
                let taken = entry.methods.iter().any(|(m, _)| *m == method);
                match resolve(method, &segments) {
                    Ok(shown) if taken => {
                        for filler in &fillers {
                            assert!(
                                shown.contains(&format!("{filler:?}")),
                                "{method:?} {path}: {shown} lacks {filler}"
                            );
                        }
                    }
                    Err(RouteError::MethodNotAllowed { allow: listed }) if !taken => {
                        assert_eq!(listed, allow(entry.methods), "{method:?} {path}")
                    }
                    other => panic!("{method:?} {path}: {other:?}"),
                }
            }
            let mut shouted = segments.clone();
            let first = segments.iter().position(|s| !fillers.iter().any(|f| f == s)).unwrap_or_default();
            let upper = segments[first].to_ascii_uppercase();
            shouted[first] = &upper;
            assert_eq!(resolve(entry.methods[0].0, &shouted).err(), Some(RouteError::NotFound), "{path} in upper case");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paths_prefix_names_its_area() {
        let area_of = |path: &str| {
            let segments = segments(path);
            let (area, rest) = area(&segments);
            (area, rest.join("/"))
        };
        assert_eq!(area_of("/admin/v1/apps/app_1"), (Area::Admin, "apps/app_1".into()));
        assert_eq!(area_of("/api/v1/public/messages/text"), (Area::Spwp, "messages/text".into()));
        assert_eq!(area_of("/api/v1/public"), (Area::Spwp, "".into()));
        assert_eq!(area_of("/api/v1/publications"), (Area::LoginWa, "v1/publications".into()));
        assert_eq!(area_of("/api/auth/start"), (Area::LoginWa, "auth/start".into()));
        assert_eq!(area_of("/admin/v2/apps"), (Area::Service, "admin/v2/apps".into()));
        assert_eq!(area_of("/healthz"), (Area::Service, "healthz".into()));
    }

    #[test]
    fn media_data_urls_fit_and_the_rest_is_capped_far_lower() {
        assert_eq!(max_body("/api/v1/public/messages/image"), MEDIA_MAX_BYTES);
        assert_eq!(max_body("/api/v1/public/messages/document/"), MEDIA_MAX_BYTES);
        assert_eq!(max_body("/api/v1/public/messages/text"), DEFAULT_MAX_BYTES);
        assert_eq!(max_body("/api/v1/public/messages/location"), DEFAULT_MAX_BYTES);
        assert_eq!(max_body("/api/v1/messages/send"), DEFAULT_MAX_BYTES);
        assert_eq!(max_body("/api/v1/broadcast/campaigns"), CAMPAIGN_MAX_BYTES);
        assert_eq!(max_body("/api/v1/broadcast/campaigns/camp_1/send"), DEFAULT_MAX_BYTES);
        assert_eq!(max_body("/bridge/v1/events"), EVENT_MAX_BYTES);
        assert_eq!(max_body("/admin/v1/apps"), DEFAULT_MAX_BYTES);
        assert_eq!(max_body("/api/v1/public/messages/image/x"), DEFAULT_MAX_BYTES);
        assert_eq!(max_body("/nowhere"), DEFAULT_MAX_BYTES);
    }

    #[test]
    fn methods_read_without_case_and_the_rest_are_other() {
        assert_eq!(Method::parse("GET"), Method::Get);
        assert_eq!(Method::parse("patch"), Method::Patch);
        assert_eq!(Method::parse("Delete"), Method::Delete);
        for raw in ["HEAD", "OPTIONS", "QUERY", "PROPFIND", "REPORT", "", "GETS"] {
            assert_eq!(Method::parse(raw), Method::Other, "{raw}");
        }
    }

    #[test]
    fn outer_slashes_do_not_count_and_inner_ones_do() {
        assert_eq!(segments("/api/v1/devices/"), ["api", "v1", "devices"]);
        assert_eq!(segments("//healthz"), ["healthz"]);
        assert_eq!(segments("/api/v1//devices"), ["api", "v1", "", "devices"]);
    }

    #[test]
    fn patterns_match_literals_exactly_and_capture_in_order() {
        assert_eq!(captures("/v1/devices/{id}/qr.svg", &["v1", "devices", "dev_1", "qr.svg"]), Some(vec!["dev_1"]));
        assert_eq!(captures("/a/{x}/b/{y}", &["a", "1", "b", "2"]), Some(vec!["1", "2"]));
        assert_eq!(captures("/a/{x}", &["a", ""]), Some(vec![""]), "a capture takes an empty segment too");
        assert_eq!(captures("/v1/devices", &["v1", "Devices"]), None);
        assert_eq!(captures("/v1/devices", &["v1", "devices", "x"]), None);
        assert_eq!(captures("/v1/devices/{id}", &["v1", "devices"]), None);
        assert_eq!(captures("/m/{kind:text|image}", &["m", "image"]), Some(vec!["image"]));
        assert_eq!(captures("/m/{kind:text|image}", &["m", "video"]), None);
    }

    #[test]
    fn allow_lists_the_methods_in_one_order_whatever_the_tables() {
        assert_eq!(allow(&[(Method::Delete, ()), (Method::Get, ()), (Method::Patch, ())]), "GET, PATCH, DELETE");
        assert_eq!(allow(&[(Method::Post, ()), (Method::Get, ())]), "GET, POST");
        assert_eq!(allow(&[(Method::Put, ())]), "PUT");
    }

    #[test]
    fn route_errors_are_the_api_errors_404_and_405() {
        assert_eq!(ApiError::from(RouteError::NotFound), ApiError::RouteNotFound);
        assert_eq!(
            ApiError::from(RouteError::MethodNotAllowed { allow: "GET".into() }),
            ApiError::method_not_allowed("GET")
        );
    }
}
