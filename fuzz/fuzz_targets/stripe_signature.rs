//! The `Stripe-Signature` parser and verifier never panic, whatever the header, body,
//! secret or clock; and a signature made by `sign` always verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paybridge_core::stripe::signature;

fuzz_target!(|data: &[u8]| {
    let (header, rest) = data.split_at(data.len().min(data.first().copied().unwrap_or(0) as usize));
    let header = String::from_utf8_lossy(header);
    let _ = signature::parse(&header);
    let now = 1_700_000_000;
    let _ = signature::verify(&header, rest, &[b"whsec_fuzz", rest], now);
    let good = signature::sign(rest, b"whsec_fuzz", now);
    assert_eq!(signature::verify(&good, rest, &[b"whsec_fuzz"], now), Ok(()));
});
