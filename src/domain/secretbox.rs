//! Webhook secrets at rest: AES-256-GCM under a key derived from a Worker secret, so the
//! stored form is useless without it. Each value gets a fresh random nonce.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

const NONCE_BYTES: usize = 12;

fn cipher(key_material: &str) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(&Sha256::digest(key_material.as_bytes())).expect("a SHA-256 is a 256-bit key")
}

/// `hex(nonce ‖ ciphertext)`.
pub fn seal(key_material: &str, plaintext: &str) -> String {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::getrandom(&mut nonce).expect("the platform CSPRNG is available");
    let sealed = cipher(key_material)
        .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
        .expect("encryption of a short secret cannot fail");
    hex::encode([nonce.as_slice(), &sealed].concat())
}

pub fn open(key_material: &str, sealed: &str) -> Option<String> {
    let bytes = hex::decode(sealed).ok()?;
    let (nonce, ciphertext) = bytes.split_at_checked(NONCE_BYTES)?;
    let plain = cipher(key_material).decrypt(Nonce::from_slice(nonce), ciphertext).ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_only_with_the_right_key() {
        let sealed = seal("worker-secret", "whsec_abc");
        assert!(!sealed.contains("whsec"));
        assert_eq!(open("worker-secret", &sealed).as_deref(), Some("whsec_abc"));
        assert_eq!(open("another-secret", &sealed), None);
        assert_ne!(seal("worker-secret", "whsec_abc"), sealed, "fresh nonce each time");
        let mut tampered = sealed.clone();
        tampered.replace_range(30..32, if &sealed[30..32] == "00" { "01" } else { "00" });
        assert_eq!(open("worker-secret", &tampered), None);
    }
}
