//! Callbacks to the app: its endpoints, one delivery per (event, endpoint) — created
//! in the same transaction as the event — and every attempt at delivering it.
//!
//! Deliveries are claimed by leasing them: one statement sets `leased_until_ms` on the
//! due rows and returns them (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so nodes never
//! claim the same row; SQLite's single writer serializes it). A node that dies with a
//! lease leaves the delivery to be claimed again when the lease runs out.

mod deliveries;
mod endpoints;

pub use deliveries::*;
pub use endpoints::*;
