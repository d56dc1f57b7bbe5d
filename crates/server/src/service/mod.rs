//! Use cases shared by the HTTP API and the command line: each takes the state it
//! needs and returns domain rows or an `ApiError`.

pub mod apps;
pub mod config;
