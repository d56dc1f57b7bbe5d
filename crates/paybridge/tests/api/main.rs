//! Integration tests: the real `paybridge` binary on a random port, driven over HTTP,
//! each test on SQLite and on PostgreSQL.

mod common;

mod apps;
mod attacks;
mod attacks_app;
mod authentication;
mod backoffice;
mod browser;
mod browser_checkout;
mod callbacks;
mod checkout;
mod checkout_truth;
mod cluster;
mod config;
mod crash;
mod demo_shop;
mod errors;
mod faults;
mod idempotency;
mod isolation;
mod locks;
mod logs;
mod money;
mod ops;
mod products;
mod refunds;
mod roles;
mod schemathesis;
mod search;
mod streams;
mod stripe;
mod stub;
mod subscriptions;
mod webhooks;
mod zero_touch;
