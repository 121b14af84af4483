//! Splitting the raw request URL without a URL parser (the `url` crate would
//! add about 200 KB to the Wasm bundle for what is a few string searches here).

/// `("scheme://host:port", "/path", "query")` of an absolute URL; the fragment is dropped.
pub fn split_url(url: &str) -> (&str, &str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |i| after_scheme + i);
    let rest = &url[path_start..];
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    (&url[..path_start], if path.is_empty() { "/" } else { path }, query)
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn splits_origin_path_and_query() {
        assert_eq!(split_url("http://127.0.0.1:8787/api/v1/x?y=1"), ("http://127.0.0.1:8787", "/api/v1/x", "y=1"));
        assert_eq!(split_url("https://a.example"), ("https://a.example", "/", ""));
        assert_eq!(split_url("https://a.example/p#frag?x"), ("https://a.example", "/p", ""));
        assert_eq!(split_url("https://a.example?q=1"), ("https://a.example", "/", "q=1"));
    }
}
