//! The Stripe event parser and reader (see `paybridge_fuzz_targets::stripe_event`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| paybridge_fuzz_targets::stripe_event(data));
