//! Payments: one attempt to take money for an order. The money state (lifecycle and
//! amounts) is written only through `save_state`, after the domain's forward-only
//! machine (`paybridge_core::payment::apply`) has computed it.

use sqlx::{Any, Executor};

use crate::db::lock_clause;
use crate::page::{Arg, Params, Select};
use crate::Created;
use crate::{now, Conn, Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: String,
    pub app_id: String,
    pub order_id: String,
    pub customer_id: Option<String>,
    pub method: String,
    pub capture_method: String,
    pub provider: String,
    pub lifecycle: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub amount_capturable: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    /// What pending and succeeded refunds add up to (admitted by `reserve_refund`).
    pub amount_refunding: i64,
    pub dispute: String,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub failure_at: Option<i64>,
    pub save_card: i64,
    pub payment_method_id: Option<String>,
    pub provider_payment_intent: Option<String>,
    pub provider_checkout_session: Option<String>,
    pub provider_charge: Option<String>,
    pub client_secret_sealed: Option<String>,
    pub payment_url: Option<String>,
    pub application_fee_amount: Option<i64>,
    pub transfer_destination: Option<String>,
    pub metadata: String,
    /// The card's brand (`visa`) and last 4 digits, as the provider reported them.
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub created: i64,
    pub updated: i64,
}

impl PaymentRow {
    /// A payment as it starts: `initiated`, nothing capturable, captured or refunded, no
    /// dispute or failure, no provider object yet, a `payment_intent` on automatic
    /// capture at the sandbox, no saved card, empty metadata. Each flow sets what it
    /// knows on top: `PaymentRow { method, provider, ..PaymentRow::initiated(…) }`.
    pub fn initiated(
        id: String,
        app_id: String,
        order_id: String,
        amount: i64,
        currency: String,
        at: i64,
    ) -> PaymentRow {
        PaymentRow {
            id,
            app_id,
            order_id,
            customer_id: None,
            method: "payment_intent".into(),
            capture_method: "automatic".into(),
            provider: "sandbox".into(),
            lifecycle: "initiated".into(),
            status: "initiated".into(),
            amount,
            currency,
            amount_capturable: 0,
            amount_captured: 0,
            amount_refunded: 0,
            amount_refunding: 0,
            dispute: "none".into(),
            failure_code: None,
            decline_code: None,
            failure_message: None,
            failure_at: None,
            save_card: 0,
            payment_method_id: None,
            provider_payment_intent: None,
            provider_checkout_session: None,
            provider_charge: None,
            client_secret_sealed: None,
            payment_url: None,
            application_fee_amount: None,
            transfer_destination: None,
            metadata: "{}".into(),
            card_brand: None,
            card_last4: None,
            created: at,
            updated: at,
        }
    }
}

const COLUMNS: &str = "id, app_id, order_id, customer_id, method, capture_method, provider, lifecycle, status, \
    amount, currency, amount_capturable, amount_captured, amount_refunded, amount_refunding, dispute, failure_code, \
    decline_code, failure_message, failure_at, save_card, payment_method_id, provider_payment_intent, provider_checkout_session, \
    provider_charge, client_secret_sealed, payment_url, application_fee_amount, transfer_destination, metadata, \
    card_brand, card_last4, created, updated";

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, p: &PaymentRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO payments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34)"
    ))
    .bind(&p.id)
    .bind(&p.app_id)
    .bind(&p.order_id)
    .bind(&p.customer_id)
    .bind(&p.method)
    .bind(&p.capture_method)
    .bind(&p.provider)
    .bind(&p.lifecycle)
    .bind(&p.status)
    .bind(p.amount)
    .bind(&p.currency)
    .bind(p.amount_capturable)
    .bind(p.amount_captured)
    .bind(p.amount_refunded)
    .bind(p.amount_refunding)
    .bind(&p.dispute)
    .bind(&p.failure_code)
    .bind(&p.decline_code)
    .bind(&p.failure_message)
    .bind(p.failure_at)
    .bind(p.save_card)
    .bind(&p.payment_method_id)
    .bind(&p.provider_payment_intent)
    .bind(&p.provider_checkout_session)
    .bind(&p.provider_charge)
    .bind(&p.client_secret_sealed)
    .bind(&p.payment_url)
    .bind(p.application_fee_amount)
    .bind(&p.transfer_destination)
    .bind(&p.metadata)
    .bind(&p.card_brand)
    .bind(&p.card_last4)
    .bind(p.created)
    .bind(p.updated)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<PaymentRow> {
    sqlx::query_as::<_, PaymentRow>(&format!(
        "SELECT {COLUMNS} FROM payments WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Finds and locks the payment an event is about: by our id (from the provider
/// object's metadata), else by the provider's intent or checkout session id. On
/// PostgreSQL every payment of its order is locked with it (see [`lock_many`]).
pub async fn lock_by_refs(
    conn: &mut Conn,
    app: &str,
    id: Option<&str>,
    intent: Option<&str>,
    session: Option<&str>,
) -> Result<Option<PaymentRow>> {
    for (column, value) in [
        ("id", id),
        ("provider_payment_intent", intent),
        ("provider_checkout_session", session),
    ] {
        let Some(value) = value else { continue };
        // Which payment (and order) it is, unlocked: a payment's order never changes.
        let found: Option<(String, String)> = sqlx::query_as(&format!(
            "SELECT id, order_id FROM payments WHERE app_id = $1 AND {column} = $2"
        ))
        .bind(app)
        .bind(value)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((id, order)) = found else { continue };
        return match lock_in_order(conn, app, &id, &order).await {
            Err(StoreError::NotFound) => Ok(None),
            locked => locked.map(Some),
        };
    }
    Ok(None)
}

/// Locks every payment of an order, in id order, and returns them.
///
/// The lock order of money rows on PostgreSQL: checkouts, payments, refunds, orders.
/// A transaction that locks one payment locks all of its order's payments at once, in
/// id order ([`lock_by_refs`], [`lock_many`]), because re-totalling the order
/// (`ledger::refresh_order`) may reserve a surplus refund on any of them once the
/// order is locked: had it locked only the one it is about, it could hold the order
/// and wait for a sibling that another transaction holds while it waits for the
/// order.
pub async fn lock_of_order(conn: &mut Conn, app: &str, order: &str) -> Result<Vec<PaymentRow>> {
    Ok(sqlx::query_as::<_, PaymentRow>(&format!(
        "SELECT {COLUMNS} FROM payments {OF_ORDER_SQL}{}",
        lock_clause(conn)
    ))
    .bind(app)
    .bind(order)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn lock(conn: &mut Conn, app: &str, id: &str) -> Result<PaymentRow> {
    lock_by_refs(conn, app, Some(id), None, None)
        .await?
        .ok_or(StoreError::NotFound)
}

/// [`lock`] for a payment whose order the caller knows (a payment's order never
/// changes): its order's payments are locked in one statement, without first looking
/// up which order it is.
pub async fn lock_in_order(
    conn: &mut Conn,
    app: &str,
    id: &str,
    order: &str,
) -> Result<PaymentRow> {
    lock_of_order(conn, app, order)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or(StoreError::NotFound)
}

/// Writes the money state and the provider references of a payment.
pub async fn save_state(conn: &mut Conn, p: &PaymentRow) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET lifecycle = $3, status = $4, amount_capturable = $5, amount_captured = $6, \
             amount_refunded = $7, dispute = $8, failure_code = $9, decline_code = $10, failure_message = $11, \
             failure_at = $12, provider_payment_intent = $13, provider_checkout_session = $14, provider_charge = $15, \
             payment_method_id = $16, client_secret_sealed = $17, payment_url = $18, customer_id = $19, updated = $20, \
             card_brand = $21, card_last4 = $22 \
         WHERE app_id = $1 AND id = $2",
    )
    .bind(&p.app_id)
    .bind(&p.id)
    .bind(&p.lifecycle)
    .bind(&p.status)
    .bind(p.amount_capturable)
    .bind(p.amount_captured)
    .bind(p.amount_refunded)
    .bind(&p.dispute)
    .bind(&p.failure_code)
    .bind(&p.decline_code)
    .bind(&p.failure_message)
    .bind(p.failure_at)
    .bind(&p.provider_payment_intent)
    .bind(&p.provider_checkout_session)
    .bind(&p.provider_charge)
    .bind(&p.payment_method_id)
    .bind(&p.client_secret_sealed)
    .bind(&p.payment_url)
    .bind(&p.customer_id)
    .bind(now())
    .bind(&p.card_brand)
    .bind(&p.card_last4)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `of_order`'s and `lock_of_order`'s statement. The app is compared as `app_id || ''` so that SQLite's
/// planner takes the order's index (`payments_order`) and sorts its few payments: with
/// a plain `app_id = $1` it chose `payments_app (app_id, id)`, which yields the order
/// by `id` for free but reads every payment of the app, so each checkout cost more the
/// more payments the app had (half of a checkout's CPU at 10,000 payments; BENCHMARKS.md).
pub(crate) const OF_ORDER_SQL: &str = "WHERE app_id || '' = $1 AND order_id = $2 ORDER BY id";

/// The payments of one order (to total what it has been paid).
pub async fn of_order<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    order: &str,
) -> Result<Vec<PaymentRow>> {
    Ok(
        sqlx::query_as::<_, PaymentRow>(&format!("SELECT {COLUMNS} FROM payments {OF_ORDER_SQL}"))
            .bind(app)
            .bind(order)
            .fetch_all(e)
            .await?,
    )
}

#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub order: Option<&'a str>,
    pub customer: Option<&'a str>,
    pub status: Option<&'a str>,
    pub created: Created,
    /// At least this amount (minor units, any currency).
    pub amount_gte: Option<i64>,
    /// At most this amount (minor units, any currency).
    pub amount_lte: Option<i64>,
    /// The customer's email, any case.
    pub email: Option<&'a str>,
    /// A product on the payment's order (`product_…`; the caller checks its shape).
    pub product: Option<&'a str>,
    /// The last 4 digits of the card (the caller checks they are 4 digits).
    pub last4: Option<&'a str>,
    /// The payment's currency (lowercase).
    pub currency: Option<&'a str>,
}

pub async fn list(
    db: &Db,
    app: &str,
    f: &Filter<'_>,
    params: &ListParams,
) -> Result<Page<PaymentRow>> {
    let text = |v: Option<&str>| v.map(|s| Arg::Text(s.to_owned()));
    Select::new(&format!("SELECT {COLUMNS} FROM payments WHERE 1 = 1"))
        .and("app_id = ?", Arg::Text(app.to_owned()))
        .and_opt("order_id = ?", text(f.order))
        .and_opt("customer_id = ?", text(f.customer))
        .and_opt("status = ?", text(f.status))
        .created(&f.created)
        .and_opt("amount >= ?", f.amount_gte.map(Arg::Int))
        .and_opt("amount <= ?", f.amount_lte.map(Arg::Int))
        .and_opt("card_last4 = ?", text(f.last4))
        .and_opt("currency = ?", text(f.currency))
        .and_each(
            &format!(
                "customer_id IN (SELECT id FROM customers WHERE app_id = ? AND {} = lower(?))",
                crate::customers::email_key(db.backend)
            ),
            f.email
                .map(|e| vec![Arg::Text(app.to_owned()), Arg::Text(e.to_owned())]),
        )
        // Line items are stored as JSON (`[{"product":"product_…",…}]`): ids are
        // `[a-z0-9_]`, so the pattern matches that product's lines and nothing else.
        .and_opt(
            "order_id IN (SELECT id FROM orders WHERE line_items LIKE ?)",
            f.product
                .map(|p| Arg::Text(format!("%\"product\":\"{p}\"%"))),
        )
        .page(db.reader(), params)
        .await
}

/// One cell of the daily report: payments of one day, status and currency.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DailyRow {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub status: String,
    pub currency: String,
    pub count: i64,
    pub captured: i64,
    pub refunded: i64,
}

/// An app's payments created since `since` (unix seconds), counted per day, status
/// and currency.
pub async fn daily(db: &Db, app: &str, since: i64) -> Result<Vec<DailyRow>> {
    Ok(sqlx::query_as::<_, DailyRow>(
        "SELECT CAST(created / 86400 AS BIGINT) AS day, status, currency, CAST(COUNT(*) AS BIGINT) AS count, \
             CAST(COALESCE(SUM(amount_captured), 0) AS BIGINT) AS captured, \
             CAST(COALESCE(SUM(amount_refunded), 0) AS BIGINT) AS refunded \
         FROM payments WHERE app_id = $1 AND created >= $2 \
         GROUP BY CAST(created / 86400 AS BIGINT), status, currency ORDER BY 1",
    )
    .bind(app)
    .bind(since)
    .fetch_all(db.reader())
    .await?)
}

/// Payments of any app left in `lifecycles` since before `updated_before`, oldest
/// first: what the reconciler asks the provider about.
pub async fn stuck(
    db: &Db,
    lifecycles: &[&str],
    updated_before: i64,
    limit: i64,
) -> Result<Vec<PaymentRow>> {
    let list = lifecycles
        .iter()
        .map(|l| format!("'{l}'"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(sqlx::query_as::<_, PaymentRow>(&format!(
        "SELECT {COLUMNS} FROM payments WHERE lifecycle IN ({list}) AND updated < $1 ORDER BY updated LIMIT $2"
    ))
    .bind(updated_before)
    .bind(limit)
    .fetch_all(db.reader())
    .await?)
}

/// Loads and locks an app's payments named by our ids or by the provider's intent or
/// session ids, in id order (the order every transaction locks them in). On
/// PostgreSQL the other payments of their orders are locked (and returned) with them,
/// in the same id order (see [`lock_of_order`]); SQLite has one writer, so nothing
/// there waits for a lock and only the named ones are read.
pub async fn lock_many(
    conn: &mut Conn,
    app: &str,
    ids: &[String],
    intents: &[String],
    sessions: &[String],
) -> Result<Vec<PaymentRow>> {
    if ids.is_empty() && intents.is_empty() && sessions.is_empty() {
        return Ok(Vec::new());
    }
    let named = [
        ("id", ids),
        ("provider_payment_intent", intents),
        ("provider_checkout_session", sessions),
    ];
    if crate::db::backend_of(conn) == crate::Backend::Postgres {
        let sql = postgres_by_refs(&named);
        let mut q = sqlx::query_as::<_, PaymentRow>(&sql).bind(app);
        for v in ids.iter().chain(intents).chain(sessions) {
            q = q.bind(v);
        }
        return Ok(q.fetch_all(&mut *conn).await?);
    }
    let sql = sqlite_by_refs(&named);
    let q = crate::page::bind_app_any_in(sqlx::query_as::<_, PaymentRow>(&sql), app, &named);
    Ok(q.fetch_all(&mut *conn).await?)
}

/// PostgreSQL's statement for [`lock_many`]: the payments of every order one of the
/// lists names, locked in the order of their ids. Planned as index probes and a nested
/// loop only with `random_page_cost` near 1 (see `db::POSTGRES_SESSION`;
/// `tests/planner.rs` checks that it reads no table through on a small one).
fn postgres_by_refs(named: &[(&str, &[String])]) -> String {
    let mut p = Params::new(crate::Backend::Postgres);
    let app_param = p.one();
    let any = p.any_in(named);
    format!(
        "SELECT {COLUMNS} FROM payments WHERE app_id = {app_param} AND order_id IN \
         (SELECT order_id FROM payments WHERE app_id = {app_param} AND ({any})) \
         ORDER BY id FOR UPDATE"
    )
}

/// SQLite's statement for [`lock_many`] (see [`Params::app_any_in`]: each list is
/// searched through its own index, not by reading the app's every payment; a test
/// asserts the plan).
fn sqlite_by_refs(named: &[(&str, &[String])]) -> String {
    format!(
        "SELECT {COLUMNS} FROM payments WHERE {} ORDER BY +id",
        Params::app_any_in(named)
    )
}

/// Admits a refund of `amount`: raises `amount_refunding` only if the payment has
/// succeeded and the total stays within what was captured. One conditional update, so
/// concurrent refunds (on one node or many) can never sum past the capture. Returns
/// the payment as it now is, or `None` if the refund does not fit.
pub async fn reserve_refund(
    conn: &mut Conn,
    app: &str,
    id: &str,
    amount: i64,
) -> Result<Option<PaymentRow>> {
    Ok(sqlx::query_as::<_, PaymentRow>(&format!(
        "UPDATE payments SET amount_refunding = amount_refunding + $3 \
         WHERE app_id = $1 AND id = $2 AND lifecycle = 'succeeded' AND $3 > 0 \
             AND dispute NOT IN ('open', 'lost') AND amount_refunding + $3 <= amount_captured \
         RETURNING {COLUMNS}"
    ))
    .bind(app)
    .bind(id)
    .bind(amount)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Takes back what a failed (or canceled) refund had reserved.
pub async fn release_refund(conn: &mut Conn, app: &str, id: &str, amount: i64) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET amount_refunding = CASE WHEN amount_refunding >= $3 THEN amount_refunding - $3 ELSE 0 END \
         WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(amount)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Counts a refund made outside paybridge (seen in the provider's events): it is the
/// provider's truth, so it is recorded whatever the reservation.
pub async fn add_refunding(conn: &mut Conn, app: &str, id: &str, amount: i64) -> Result<()> {
    sqlx::query("UPDATE payments SET amount_refunding = amount_refunding + $3 WHERE app_id = $1 AND id = $2")
        .bind(app)
        .bind(id)
        .bind(amount)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::db::assert_plan;

    /// A webhook batch's payments are found through their own indexes on SQLite, one
    /// search per list, not by reading every payment of the app (see `sqlite_by_refs`).
    #[tokio::test]
    async fn payments_named_by_refs_are_searched_by_their_indexes_on_sqlite() {
        let (ids, intents, sessions) = (
            vec!["pay_1".to_owned(), "pay_2".to_owned()],
            vec!["pi_1".to_owned()],
            vec!["cs_1".to_owned()],
        );
        let all = [
            ("id", &ids[..]),
            ("provider_payment_intent", &intents[..]),
            ("provider_checkout_session", &sessions[..]),
        ];
        let intents_only = [
            ("id", &[][..]),
            ("provider_payment_intent", &intents[..]),
            ("provider_checkout_session", &[][..]),
        ];
        for named in [&all[..], &intents_only[..]] {
            let uses: Vec<&str> = named
                .iter()
                .filter(|(_, values)| !values.is_empty())
                .map(|(column, _)| match *column {
                    "id" => "payments_app (app_id=? AND id=?)",
                    "provider_payment_intent" => {
                        "payments_intent (app_id=? AND provider_payment_intent=?)"
                    }
                    _ => "payments_session (app_id=? AND provider_checkout_session=?)",
                })
                .collect();
            // Not the app's every payment.
            assert_plan(&super::sqlite_by_refs(named), &uses, &["(app_id=?)"]).await;
        }
    }

    /// The payments of an order are found through the order's index on SQLite, not by
    /// reading every payment of the app (see `OF_ORDER_SQL`).
    #[tokio::test]
    async fn an_orders_payments_are_found_by_the_order_index_on_sqlite() {
        assert_plan(
            &format!("SELECT id FROM payments {}", super::OF_ORDER_SQL),
            &["payments_order"],
            &["payments_app"],
        )
        .await;
    }
}
