//! Stripe's webhook signature: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, where
//! each `v1` is HMAC-SHA256 keyed with the whole signing secret (`whsec_…`, its UTF-8
//! bytes) over `"<t>.<raw body>"`. Several `v1` values appear while Stripe rolls a
//! secret; any one matching any of our current secrets is enough. Comparison is in
//! constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Stripe's default: a signature older (or newer) than this is refused, so a captured
/// request cannot be replayed later.
pub const TOLERANCE_SECS: i64 = 300;

/// Headers longer than this are refused before parsing.
const MAX_HEADER: usize = 4096;
/// More candidate signatures than this are refused (each costs an HMAC check).
const MAX_SIGNATURES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoSignature,
    #[error("the signature's timestamp is outside the {TOLERANCE_SECS} s tolerance")]
    Stale,
    #[error("no signature matches a signing secret of this app")]
    Mismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    pub v1: Vec<[u8; 32]>,
}

/// Parses the header. Unknown schemes (`v0`, …) are ignored, as Stripe's libraries do;
/// a `v1` that is not 64 hex digits cannot match and is dropped.
pub fn parse(header: &str) -> Result<SignatureHeader, SignatureError> {
    if header.len() > MAX_HEADER {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed);
                }
                timestamp = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?);
            }
            "v1" => {
                let mut sig = [0u8; 32];
                if hex::decode_to_slice(v, &mut sig).is_ok() {
                    v1.push(sig);
                }
                if v1.len() > MAX_SIGNATURES {
                    return Err(SignatureError::Malformed);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    Ok(SignatureHeader { timestamp, v1 })
}

fn mac(secret: &[u8], timestamp: i64, payload: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(payload);
    m.finalize().into_bytes().into()
}

/// Verifies `payload` against the header with any of `secrets`, at time `now`.
pub fn verify(
    header: &str,
    payload: &[u8],
    secrets: &[&[u8]],
    now: i64,
) -> Result<(), SignatureError> {
    let h = parse(header)?;
    // abs_diff: the header's timestamp is any i64, so `now - t` could overflow.
    if now.abs_diff(h.timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let mut ok = subtle::Choice::from(0);
    for secret in secrets {
        let expected = mac(secret, h.timestamp, payload);
        for given in &h.v1 {
            ok |= expected.ct_eq(given);
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs a payload as Stripe does (the sandbox and tests use it).
pub fn sign(payload: &[u8], secret: &[u8], timestamp: i64) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, payload))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";

    #[test]
    fn signs_and_verifies_within_the_tolerance() {
        // Interop with Stripe's own libraries is tested end to end (tests/api/webhooks.rs).
        let payload = b"{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
        let header = sign(payload, SECRET, 1_600_000_000);
        assert!(header.starts_with("t=1600000000,v1="));
        assert_eq!(verify(&header, payload, &[SECRET], 1_600_000_100), Ok(()));
    }

    #[test]
    fn refuses_tampering_staleness_and_wrong_secrets() {
        let payload = b"{\"id\":\"evt_1\"}";
        let now = 1_700_000_000;
        let h = sign(payload, SECRET, now);
        assert_eq!(
            verify(&h, b"{\"id\":\"evt_2\"}", &[SECRET], now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&h, payload, &[b"whsec_other"], now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&h, payload, &[SECRET], now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&h, payload, &[SECRET], now - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&h, payload, &[b"whsec_old", SECRET], now + 300),
            Ok(())
        );
        assert_eq!(
            verify("garbage", payload, &[SECRET], now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("t=1", payload, &[SECRET], now),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            verify("v1=00", payload, &[SECRET], now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("t=x,v1=00", payload, &[SECRET], now),
            Err(SignatureError::Malformed)
        );
        // An edge seed of the fuzz target found it: `now - t` overflowed at i64's ends.
        for t in [i64::MIN, i64::MIN + now, i64::MAX] {
            let header = format!("t={t},v1={}", "0".repeat(64));
            assert_eq!(
                verify(&header, payload, &[SECRET], now),
                Err(SignatureError::Stale)
            );
        }
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let payload = b"body";
        let now = 1_700_000_000;
        let good = sign(payload, SECRET, now);
        let v1 = good.split("v1=").nth(1).unwrap();
        let header = format!("t={now},v1={},v0=abc,v1={v1}", "0".repeat(64));
        assert_eq!(verify(&header, payload, &[SECRET], now), Ok(()));
        let only_bad = format!("t={now},v1={}", "0".repeat(64));
        assert_eq!(
            verify(&only_bad, payload, &[SECRET], now),
            Err(SignatureError::Mismatch)
        );
    }
}
