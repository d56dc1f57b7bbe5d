//! Our own events (`payment.succeeded`, `order.paid`, …): written in the same
//! transaction as the change that causes them, so there is one per real change and
//! none without one. This table is the outbox callbacks and streams read from.

use crate::page::{Arg, Params};
use crate::{Conn, Db, Result};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub app_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub object_id: String,
    pub order_id: Option<String>,
    pub payment_id: Option<String>,
    pub customer_id: Option<String>,
    /// JSON of the object as it was after the change.
    pub data: String,
    pub created: i64,
}

const COLUMNS: &str =
    "seq, id, app_id, type, object_id, order_id, payment_id, customer_id, data, created";

/// Appends an event (and its deliveries); its `seq` is assigned by the database.
pub async fn append(conn: &mut Conn, e: &EventRow) -> Result<()> {
    append_many(conn, std::slice::from_ref(e)).await
}

/// Appends events in one statement per hundred, in their order, with their deliveries
/// to the apps' callback endpoints; on PostgreSQL other nodes are told at commit.
pub async fn append_many(conn: &mut Conn, rows: &[EventRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    claim_xid_and_notify(conn).await?;
    for chunk in rows.chunks(100) {
        let mut p = Params::on(conn);
        let values: Vec<String> = (0..chunk.len())
            .map(|_| format!("({})", p.list(9)))
            .collect();
        let sql = format!(
            "INSERT INTO events (id, app_id, type, object_id, order_id, payment_id, customer_id, data, created) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.id)
                .bind(&e.app_id)
                .bind(&e.kind)
                .bind(&e.object_id)
                .bind(&e.order_id)
                .bind(&e.payment_id)
                .bind(&e.customer_id)
                .bind(&e.data)
                .bind(e.created);
        }
        q.execute(&mut *conn).await?;
    }
    crate::callbacks::fan_out(conn, rows).await?;
    Ok(())
}

/// The channel other nodes listen on for new events and deliveries (PostgreSQL).
pub const CHANNEL: &str = "paybridge_events";

/// On PostgreSQL, before a transaction takes its first `seq`: makes sure it holds a
/// transaction id (so [`horizon`] can tell when it has ended) and tells the other nodes
/// at commit (`NOTIFY` is delivered only then, so it may come first).
async fn claim_xid_and_notify(conn: &mut Conn) -> Result<()> {
    if crate::db::backend_of(conn) == crate::Backend::Postgres {
        sqlx::query("SELECT pg_current_xact_id()::text, pg_notify('paybridge_events', '')")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// How far the events table goes, and which transactions could still add to it below.
///
/// On PostgreSQL a `seq` is taken at insert and becomes visible at commit, so a smaller
/// `seq` may appear after a larger one. Every transaction that appends events holds a
/// transaction id before it takes a `seq` ([`append_many`]). So the transactions that
/// could still commit a `seq` up to `max_seq` are among those running in this database
/// just after `max_seq` was read (`running`); once none of them runs any more, every
/// `seq` up to `max_seq` is committed or never will be. Only this database's sessions
/// count (`pg_stat_activity`, which shows the sessions of paybridge's own database
/// role): another database's long transaction on the same server does not hold events
/// back. On SQLite transactions commit one after another in `seq` order: `running` is
/// empty and each horizon is settled at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizon {
    /// The highest `seq` visible.
    pub max_seq: i64,
    /// Transaction ids running in this database just after (PostgreSQL).
    pub running: Vec<i64>,
}

pub async fn horizon(db: &Db) -> Result<Horizon> {
    let max_seq: i64 =
        sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM events")
            .fetch_one(db.reader())
            .await?;
    // Read after `max_seq`, in a statement of its own: a transaction that took a `seq`
    // below it and has not ended is running now, and so listed.
    let running = match db.backend {
        crate::Backend::Postgres => {
            sqlx::query_scalar(
                "SELECT CAST(backend_xid::text AS BIGINT) FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_xid IS NOT NULL",
            )
            .fetch_all(db.reader())
            .await?
        }
        _ => Vec::new(),
    };
    Ok(Horizon { max_seq, running })
}

/// Events of every app with `after < seq <= upto`, oldest first.
pub async fn tail(db: &Db, after: i64, upto: i64, limit: i64) -> Result<Vec<EventRow>> {
    Ok(sqlx::query_as::<_, EventRow>(&format!(
        "SELECT {COLUMNS} FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
    ))
    .bind(after)
    .bind(upto)
    .bind(limit)
    .fetch_all(db.reader())
    .await?)
}

/// The `seq` of one of an app's events (where a stream resumes).
pub async fn seq_of(db: &Db, app: &str, id: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM events WHERE app_id = $1 AND id = $2")
            .bind(app)
            .bind(id)
            .fetch_optional(db.reader())
            .await?,
    )
}

/// An app's events with `after < seq <= upto` (optionally of one order), oldest first.
pub async fn between(
    db: &Db,
    app: &str,
    order: Option<&str>,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let base = format!("SELECT {COLUMNS} FROM events WHERE app_id = $1 AND seq > $2 AND seq <= $3");
    let sql = match order {
        Some(_) => format!("{base} AND order_id = $5 ORDER BY seq LIMIT $4"),
        None => format!("{base} ORDER BY seq LIMIT $4"),
    };
    let mut q = sqlx::query_as::<_, EventRow>(&sql)
        .bind(app)
        .bind(after)
        .bind(upto)
        .bind(limit);
    if let Some(o) = order {
        q = q.bind(o);
    }
    Ok(q.fetch_all(db.reader()).await?)
}

#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub kind: Option<&'a str>,
    pub customer: Option<&'a str>,
    pub order: Option<&'a str>,
    pub payment: Option<&'a str>,
}

/// Newest first; `starting_after` is an event id of the previous page.
pub async fn list(
    db: &Db,
    app: &str,
    f: &Filter<'_>,
    limit: i64,
    starting_after: Option<&str>,
) -> Result<(Vec<EventRow>, bool)> {
    let mut args = vec![Arg::Text(app.to_owned())];
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE app_id = $1");
    for (col, v) in [
        ("type", f.kind),
        ("customer_id", f.customer),
        ("order_id", f.order),
        ("payment_id", f.payment),
    ] {
        if let Some(v) = v {
            args.push(Arg::Text(v.to_owned()));
            sql.push_str(&format!(" AND {col} = ${}", args.len()));
        }
    }
    if let Some(s) = starting_after {
        args.push(Arg::Text(s.to_owned()));
        sql.push_str(&format!(
            " AND seq < (SELECT seq FROM events WHERE app_id = $1 AND id = ${})",
            args.len()
        ));
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", limit + 1));
    let mut q = sqlx::query_as::<_, EventRow>(&sql);
    for a in args {
        q = match a {
            Arg::Int(i) => q.bind(i),
            Arg::Text(t) => q.bind(t),
        };
    }
    let mut rows = q.fetch_all(db.reader()).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

pub async fn count_of(db: &Db, app: &str, kind: &str, object_id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE app_id = $1 AND type = $2 AND object_id = $3",
    )
    .bind(app)
    .bind(kind)
    .bind(object_id)
    .fetch_one(db.reader())
    .await?)
}
