//! Pairing codes: the alternative to a QR scan, typed on the phone under
//! "Link with phone number instead".

use std::fmt;

/// WhatsApp's alphabet for linking codes: base32 without the look-alikes 0, I, O and U,
/// so that whatever a person reads off a screen can be typed back.
const ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";
const LEN: usize = 8;

/// Eight characters from [`ALPHABET`]; shown (and serialized) as `XXXX-XXXX`, as WhatsApp shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCode([u8; LEN]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pair code must be 8 characters of 1-9 and A-Z without I, O and U, optionally as XXXX-XXXX")]
pub struct InvalidPairCode;

impl PairCode {
    pub fn generate() -> Self {
        Self(std::array::from_fn(|_| ALPHABET[rand::random_range(0..ALPHABET.len())]))
    }

    /// Accepts what a person might type: either case, with or without the dash.
    pub fn parse(s: &str) -> Result<Self, InvalidPairCode> {
        let trimmed = s.trim();
        let compact = match trimmed.split_once('-') {
            Some((head, tail)) if head.len() == LEN / 2 => format!("{head}{tail}"),
            Some(_) => return Err(InvalidPairCode),
            None => trimmed.to_owned(),
        };
        let code: [u8; LEN] = compact.to_ascii_uppercase().into_bytes().try_into().map_err(|_| InvalidPairCode)?;
        if code.iter().all(|b| ALPHABET.contains(b)) {
            Ok(Self(code))
        } else {
            Err(InvalidPairCode)
        }
    }
}

impl fmt::Display for PairCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, tail) = self.0.split_at(LEN / 2);
        // Every byte came from ALPHABET, which is ASCII.
        write!(f, "{}-{}", String::from_utf8_lossy(head), String::from_utf8_lossy(tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_shown_as_whatsapp_shows_them_and_parse_back() {
        for _ in 0..100 {
            let code = PairCode::generate();
            let shown = code.to_string();
            assert_eq!(shown.len(), 9, "{shown}");
            assert_eq!(&shown[4..5], "-");
            assert!(shown.bytes().filter(|b| *b != b'-').all(|b| ALPHABET.contains(&b)), "{shown}");
            assert_eq!(PairCode::parse(&shown), Ok(code.clone()));
            assert_eq!(PairCode::parse(&shown.replace('-', "").to_lowercase()), Ok(code));
        }
        let codes: std::collections::HashSet<String> = (0..50).map(|_| PairCode::generate().to_string()).collect();
        assert!(codes.len() > 45, "codes repeat: {codes:?}");
    }

    #[test]
    fn anything_else_is_rejected() {
        for bad in
            ["", "ABCD-EFG", "ABCDEFGHJ", "ABC-DEFGH", "ABCD-EFGH-", "ABCD-EFG0", "ABCDEFGI", "ABCD EFGH", "ÄBCDEFGH"]
        {
            assert_eq!(PairCode::parse(bad), Err(InvalidPairCode), "{bad:?} accepted");
        }
        assert_eq!(PairCode::parse(" abcd-efgh ").unwrap().to_string(), "ABCD-EFGH");
    }
}
