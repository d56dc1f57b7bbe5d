//! Stripe's wire formats, pure: webhook signatures, event envelopes and what they
//! establish, and the objects both the API and the events carry.

pub mod event;
pub mod objects;
pub mod redact;
pub mod signature;
