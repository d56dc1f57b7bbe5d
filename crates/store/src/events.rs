//! Our own events (`payment.succeeded`, `order.paid`, …): written in the same
//! transaction as the change that causes them, so there is one per real change and
//! none without one. This table is the outbox callbacks and streams read from.

use crate::page::Arg;
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

/// Appends an event; its `seq` is assigned by the database.
pub async fn append(conn: &mut Conn, e: &EventRow) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO events (id, app_id, type, object_id, order_id, payment_id, customer_id, data, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
    )
    .bind(&e.id)
    .bind(&e.app_id)
    .bind(&e.kind)
    .bind(&e.object_id)
    .bind(&e.order_id)
    .bind(&e.payment_id)
    .bind(&e.customer_id)
    .bind(&e.data)
    .bind(e.created)
    .fetch_one(&mut *conn)
    .await?)
}

/// Appends several events in one statement per hundred, in their order.
pub async fn append_many(conn: &mut Conn, rows: &[EventRow]) -> Result<()> {
    for chunk in rows.chunks(100) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", crate::page::placeholders(1 + i * 9, 9)))
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
    Ok(())
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
    let mut rows = q.fetch_all(&db.read).await?;
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
    .fetch_one(&db.read)
    .await?)
}
