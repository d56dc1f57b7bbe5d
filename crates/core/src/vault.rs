//! Secrets at rest: AES-256-GCM under the operator's master key. Each sealed value is
//! bound to where it belongs (its app and field, as associated data), so a ciphertext
//! copied into another app's row does not open there.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};

const VERSION: &str = "v1:";

/// The 32-byte key that encrypts every secret paybridge stores. Its `Debug` says nothing.
pub struct MasterKey(SecretBox<[u8; 32]>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("the master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    #[error(
        "a stored secret could not be decrypted (wrong master key, or the value was tampered with)"
    )]
    Undecryptable,
}

impl MasterKey {
    pub fn from_base64(b64: &str) -> Result<MasterKey, VaultError> {
        let bytes = B64
            .decode(b64.trim())
            .map_err(|_| VaultError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| VaultError::BadMasterKey)?;
        Ok(MasterKey(SecretBox::new(Box::new(key))))
    }

    pub fn generate() -> (MasterKey, SecretString) {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let b64 = B64.encode(key);
        (
            MasterKey(SecretBox::new(Box::new(key))),
            SecretString::from(b64),
        )
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.expose_secret().into())
    }

    /// Encrypts `plaintext` for the place named by `context` (e.g. `app_…/signing_secret`).
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short secret cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{VERSION}{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, VaultError> {
        let raw = sealed
            .strip_prefix(VERSION)
            .and_then(|b| B64.decode(b).ok())
            .filter(|r| r.len() > 12)
            .ok_or(VaultError::Undecryptable)?;
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Undecryptable)?;
        String::from_utf8(pt)
            .map(SecretString::from)
            .map_err(|_| VaultError::Undecryptable)
    }
}

impl MasterKey {
    /// A token derived from the master key for `context` (HMAC-SHA256 under a subkey of
    /// the master key, 128 bits, lowercase hex). The same on every node and at every
    /// call, so it need not be stored: an order's client secret is one, and the database
    /// holds nothing that opens the order.
    pub fn derive(&self, context: &str) -> String {
        use hmac::{Hmac, Mac};
        type Hs = Hmac<sha2::Sha256>;
        let mut sub = <Hs as Mac>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes a key of any length");
        sub.update(b"paybridge/derive/v1");
        let subkey = sub.finalize().into_bytes();
        let mut mac = <Hs as Mac>::new_from_slice(&subkey).expect("HMAC takes a key of any length");
        mac.update(context.as_bytes());
        let tag = mac.finalize().into_bytes();
        tag[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_tokens_are_stable_per_context_and_key() {
        let (key, b64) = MasterKey::generate();
        let again = MasterKey::from_base64(b64.expose_secret()).unwrap();
        let t = key.derive("app_1/order_1/client_secret");
        assert_eq!(t.len(), 32);
        assert_eq!(t, again.derive("app_1/order_1/client_secret"));
        assert_ne!(t, key.derive("app_1/order_2/client_secret"));
        assert_ne!(
            t,
            MasterKey::generate()
                .0
                .derive("app_1/order_1/client_secret")
        );
    }

    #[test]
    fn seal_and_open_round_trip_bound_to_context() {
        let (key, b64) = MasterKey::generate();
        let sealed = key.seal("sk_test_123", "app_1/provider_secret_key");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("sk_test_123"));
        assert_eq!(
            key.open(&sealed, "app_1/provider_secret_key")
                .unwrap()
                .expose_secret(),
            "sk_test_123"
        );
        assert_eq!(
            key.open(&sealed, "app_2/provider_secret_key").unwrap_err(),
            VaultError::Undecryptable
        );
        let again = MasterKey::from_base64(b64.expose_secret()).unwrap();
        assert!(again.open(&sealed, "app_1/provider_secret_key").is_ok());
        let (other, _) = MasterKey::generate();
        assert!(other.open(&sealed, "app_1/provider_secret_key").is_err());
        assert_ne!(sealed, key.seal("sk_test_123", "app_1/provider_secret_key"));
        assert!(key.open("v1:AAAA", "x").is_err());
        assert!(key.open("garbage", "x").is_err());
    }

    #[test]
    fn master_key_must_be_32_bytes_and_never_prints() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
        let (key, _) = MasterKey::generate();
        assert_eq!(format!("{key:?}"), "MasterKey([REDACTED])");
    }
}
