//! How large a request body each route accepts, decided from its path alone
//! (`dialect::routes::max_body`) so that a body is refused by its `Content-Length` before a
//! byte of it is read (and, without one, as soon as the bytes read pass the cap).

/// SPWP media sends carry the file as a `data:` URL: a 16 MB file is about 22.4 million
/// characters of base64 (`spwp::SOURCE_MAX_CHARS` allows 23 million), plus caption and names.
pub const MEDIA_MAX_BYTES: u64 = 24 * 1024 * 1024;
/// A campaign lists up to 10,000 contacts, each a phone, a name of up to 100 characters and
/// its variables: 10 MiB leaves about 1 KB a contact.
pub const CAMPAIGN_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// The bridge's events carry message texts, captions and media metadata, never media bytes.
pub const EVENT_MAX_BYTES: u64 = 1024 * 1024;
/// Everything else: a message of 4,096 characters, a webhook, a rule, a key, with room for
/// client `meta` and JSON escapes.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024;

// The largest data URL SPWP accepts (`SOURCE_MAX_CHARS`) fits, with room for the fields around it.
const _: () = assert!(MEDIA_MAX_BYTES > 23_000_000 + 64 * 1024);

/// A declared `Content-Length` over the route's cap (digits too many for a number included);
/// anything else that is not a length is left to the runtime, which frames the body by it.
pub fn declared_too_large(content_length: Option<&str>, max: u64) -> bool {
    let Some(digits) = content_length.map(str::trim).filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    else {
        return false;
    };
    digits.parse::<u64>().map_or(true, |n| n > max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_over_the_cap_is_refused() {
        assert!(declared_too_large(Some("1025"), 1024));
        assert!(!declared_too_large(Some("1024"), 1024));
        assert!(!declared_too_large(Some(" 10 "), 1024));
        assert!(!declared_too_large(None, 1024), "no length: capped while reading");
        assert!(!declared_too_large(Some("lots"), 1024));
        assert!(declared_too_large(Some("99999999999999999999"), 1024), "more than a u64 holds");
    }
}
