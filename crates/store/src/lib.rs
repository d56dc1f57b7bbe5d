//! paybridge's storage: repository functions over sqlx, the same SQL on SQLite and
//! PostgreSQL. Every function that touches an app's data takes the app's id, so no
//! query can forget the tenant. Secrets arrive here already sealed by the vault.

pub mod apps;
pub mod callbacks;
pub mod checkouts;
mod checkpoint;
pub mod config;
pub mod connect;
pub mod customer_sessions;
pub mod customers;
mod db;
pub mod event_sync;
pub mod events;
mod group;
pub mod idempotency;
mod inline;
pub mod keys;
pub mod orders;
mod page;
pub mod payments;
pub mod planner;
pub mod products;
pub mod provider_events;
mod read;
pub mod refunds;
pub mod sandbox;
pub mod settings;
pub mod stripe_endpoints;
pub mod subscriptions;

pub use db::{
    for_update, normalize_url, now, now_ms, sqlite_path, Backend, Conn, Db, DbOptions, Tx,
};
pub use group::{GroupCommits, MAX_AGE as GROUP_MAX_AGE, MAX_MEMBERS as GROUP_MAX_MEMBERS};
pub use inline::this_thread_may_wait_for_disk;
pub use page::{Created, ListParams, Page};
pub use read::{answer_durably, spawn_noted, Reader};

/// Installs the drivers of sqlx's `Any`: PostgreSQL's and SQLite's, and the SQLite
/// writer's own (`inline/`). Idempotent; sqlx lets them be installed once per
/// process, so nothing else may install them (`sqlx::any::install_default_drivers`
/// would panic after this, and this after it).
pub fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    static DRIVERS: [sqlx_core::any::driver::AnyDriver; 3] = [
        sqlx::postgres::any::DRIVER,
        sqlx::sqlite::any::DRIVER,
        inline::DRIVER,
    ];
    ONCE.call_once(|| {
        inline::configure_sqlite();
        sqlx::any::install_drivers(&DRIVERS).expect("sqlx's Any drivers were installed already")
    });
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Conflict(d.message().to_owned())
            }
            _ => StoreError::Db(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
