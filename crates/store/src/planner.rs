//! PostgreSQL's planner statistics for a table that has never had any.
//!
//! sqlx prepares each statement once per pooled connection, and PostgreSQL keeps the
//! plan it made for it (a generic plan from the sixth run on) until the table's
//! statistics change. For a table never analyzed, the planner guesses its rows, and
//! while it is small an index that starts with `app_id` and holds the same value over
//! and over (a column still NULL, so the index is small) looks cheaper than the
//! primary key: a payment fetched by its id was read through `payments_card_last4`,
//! walking every payment of the app, and each checkout cost more than the last.
//! Autovacuum analyzes a table only at its next round (a minute apart by default), so
//! a fresh database that takes a burst meanwhile keeps those plans.
//!
//! So the leader analyzes, every few seconds (`workers/housekeeping.rs`), each table of
//! the current schema that has never been analyzed once [`MIN_CHANGES`] rows of it
//! have changed. Where autovacuum runs, it keeps the statistics fresh after that;
//! where it is off, they stay as first gathered, which is enough for the choice
//! between these indexes as the table grows (the planner scales the row counts by the
//! table's current size). SQLite's planner works
//! without statistics and the queries it needs a hint for are shaped for it, so this
//! does nothing there.

use std::collections::HashSet;

use crate::{Backend, Db, Result};

/// Rows changed (inserted, updated or deleted) in a table never analyzed before it is
/// analyzed. A wrong plan on fewer rows costs little.
pub const MIN_CHANGES: i64 = 500;

/// Analyzes the tables of the current schema that have never been analyzed and have
/// changed by at least [`MIN_CHANGES`] rows, and are not in `done`; returns those it
/// analyzed. Each table is tried once per process, whatever comes of it, and added to
/// `done`: were the role not allowed to analyze it (PostgreSQL then warns and skips
/// it), or were `ANALYZE` to fail (a statement timeout on a large restored table), it
/// would otherwise be run, and logged, every few seconds. PostgreSQL's activity
/// statistics lag its writes by up to a second or so.
pub async fn analyze_new_tables(db: &Db, done: &mut HashSet<String>) -> Result<Vec<String>> {
    if db.backend != Backend::Postgres {
        return Ok(Vec::new());
    }
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(relname AS TEXT) FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND last_analyze IS NULL \
         AND last_autoanalyze IS NULL AND n_mod_since_analyze >= $1 ORDER BY relname",
    )
    .bind(MIN_CHANGES)
    .fetch_all(&db.read)
    .await?;
    tables.retain(|t| !done.contains(t));
    let mut analyzed = Vec::new();
    for table in tables {
        done.insert(table.clone());
        // A name from the catalog, quoted as an identifier.
        let sql = format!("ANALYZE \"{}\"", table.replace('"', "\"\""));
        match sqlx::query(&sql).execute(&db.read).await {
            Ok(_) => analyzed.push(table),
            Err(e) => tracing::warn!(%table, error = %e, "ANALYZE failed; not tried again"),
        }
    }
    Ok(analyzed)
}
