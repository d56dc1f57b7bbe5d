//! Use cases shared by the HTTP API, the workers and the command line: each takes the
//! state it needs and returns domain rows or an `ApiError`.

pub mod apps;
pub mod authentication;
pub mod callback_target;
pub mod callbacks;
pub mod catalog;
pub mod config;
pub mod connect;
pub mod customer_sessions;
pub mod customers;
pub mod event_sync;
pub mod ledger;
pub mod orders;
pub mod payments;
pub mod portal;
pub mod provider;
pub mod reconcile;
pub mod refunds;
pub mod stripe_endpoint;
pub mod subscriptions;
pub mod verify_cache;
pub mod views;
pub mod webhooks;
