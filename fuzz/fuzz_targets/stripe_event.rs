//! The event envelope parser and the reading of an event's object never panic, and
//! reading is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paybridge_core::stripe::event;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = event::parse(data) {
        let a = event::read(&ev).map(|r| (r.refs, r.payment, r.checkout, r.amount));
        let b = event::read(&ev).map(|r| (r.refs, r.payment, r.checkout, r.amount));
        assert_eq!(a, b);
    }
});
