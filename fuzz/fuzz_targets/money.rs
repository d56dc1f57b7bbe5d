//! Currency codes, `Money` and the amount rules (see `paybridge_fuzz_targets::money`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| paybridge_fuzz_targets::money(data));
