//! The `Stripe-Signature` parser, verifier and signer (see `paybridge_fuzz_targets::stripe_signature`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| paybridge_fuzz_targets::stripe_signature(data));
