//! A callback receiver's `Retry-After` and the retry policy (see `paybridge_fuzz_targets::retry_after`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| paybridge_fuzz_targets::retry_after(data));
