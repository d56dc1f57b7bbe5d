//! The lock order of money rows on PostgreSQL (SQLite has one writer: its transactions
//! never interleave). Every transaction locks an order's payments, all of them and in
//! id order, before the order (`payments::lock_of_order`); re-totalling an overpaid
//! order reserves its surplus refund on one of them while the order is locked.

use std::time::Duration;

use paybridge_server::service::ledger;
use paybridge_store::apps::{self, AppRow};
use paybridge_store::orders::{self, OrderRow};
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::{refunds, Db, DbOptions};

use crate::common::{Backend, TestDb};

async fn open() -> Option<(TestDb, Db)> {
    let t = TestDb::new(Backend::Postgres).await?;
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    Some((t, db))
}

fn payment(id: &str, order: &str, created: i64) -> PaymentRow {
    PaymentRow {
        provider: "stripe".into(),
        lifecycle: "succeeded".into(),
        status: "succeeded".into(),
        amount_captured: 1000,
        provider_payment_intent: Some(format!("pi_{id}")),
        ..PaymentRow::initiated(
            id.into(),
            "app_l".into(),
            order.into(),
            1000,
            "usd".into(),
            created,
        )
    }
}

/// An order of 1000 paid twice: both payments succeeded, the order not re-totalled yet
/// (as when the two webhooks are in flight). `payment_b` is the later one, where the
/// surplus refund goes.
async fn paid_twice(db: &Db) {
    let app = AppRow {
        id: "app_l".into(),
        name: "locks".into(),
        environment: "test".into(),
        demo: 0,
        created: 1,
    };
    apps::create_app(db, &app, &[], &[]).await.expect("app");
    let mut tx = db.begin().await.expect("begin");
    orders::insert(
        &mut *tx,
        &OrderRow {
            id: "order_l".into(),
            app_id: "app_l".into(),
            customer_id: None,
            currency: "usd".into(),
            amount_total: 1000,
            amount_paid: 0,
            amount_refunded: 0,
            status: "open".into(),
            line_items: "[]".into(),
            metadata: "{}".into(),
            client_secret: String::new(),
            subscription_id: None,
            provider_invoice_id: None,
            created: 1,
            updated: 1,
        },
    )
    .await
    .expect("order");
    for p in [
        payment("payment_a", "order_l", 10),
        payment("payment_b", "order_l", 20),
    ] {
        payments::insert(&mut *tx, &p).await.expect("payment");
    }
    tx.commit().await.expect("commit");
}

/// Waits until some transaction of this database waits for a row lock.
async fn until_one_waits(db: &Db) {
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(db.reader())
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no transaction came to wait for a lock");
}

/// Locking one payment locks its order's other payments (in id order) with it, and
/// before the order: another transaction can take none of them meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_locked_with_its_orders_other_payments() {
    let Some((_t, db)) = open().await else {
        return;
    };
    paid_twice(&db).await;
    let mut holder = db.begin().await.expect("begin");
    let b = payments::lock(&mut holder, "app_l", "payment_b")
        .await
        .expect("lock");
    assert_eq!(b.id, "payment_b");
    let mut other = db.begin().await.expect("begin");
    for id in ["payment_a", "payment_b"] {
        sqlx::query("SAVEPOINT try_lock")
            .execute(&mut *other)
            .await
            .unwrap();
        let taken = sqlx::query("SELECT id FROM payments WHERE id = $1 FOR UPDATE NOWAIT")
            .bind(id)
            .execute(&mut *other)
            .await;
        assert!(taken.is_err(), "{id} was not locked with payment_b");
        sqlx::query("ROLLBACK TO SAVEPOINT try_lock")
            .execute(&mut *other)
            .await
            .unwrap();
    }
    // The order itself is not: it comes after the payments.
    sqlx::query("SELECT id FROM orders WHERE id = 'order_l' FOR UPDATE NOWAIT")
        .execute(&mut *other)
        .await
        .expect("the order is free");
}

/// Locking a refund locks its payment first (payments before refunds): a webhook
/// applying a refund whose payment it had not loaded took the refund, then the payment,
/// while our own answer and failure paths take the payment, then the refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_is_locked_after_its_payment() {
    let Some((_t, db)) = open().await else {
        return;
    };
    paid_twice(&db).await;
    let mut tx = db.begin().await.expect("begin");
    refunds::insert(
        &mut *tx,
        &refunds::RefundRow {
            id: "refund_l".into(),
            app_id: "app_l".into(),
            payment_id: "payment_a".into(),
            order_id: "order_l".into(),
            amount: 100,
            currency: "usd".into(),
            reason: None,
            status: "pending".into(),
            failure_reason: None,
            provider_refund_id: Some("re_l".into()),
            refund_application_fee: 0,
            reverse_transfer: 0,
            source: "api".into(),
            metadata: "{}".into(),
            created: 1,
            updated: 1,
        },
    )
    .await
    .expect("refund");
    tx.commit().await.expect("commit");
    let mut holder = db.begin().await.expect("begin");
    let r = refunds::lock_by_refs(&mut holder, "app_l", None, Some("re_l"))
        .await
        .expect("lock")
        .expect("the refund");
    assert_eq!(r.id, "refund_l");
    let mut other = db.begin().await.expect("begin");
    let taken = sqlx::query("SELECT id FROM payments WHERE id = 'payment_a' FOR UPDATE NOWAIT")
        .execute(&mut *other)
        .await;
    assert!(taken.is_err(), "the refund's payment was not locked");
}

/// A webhook about the later payment holds it while the order is re-totalled by
/// another transaction, which reserves the surplus refund on that same payment; then
/// the webhook re-totals the order too. With the order locked before the payment,
/// each waited for the other (PostgreSQL aborts one: deadlock detected). Locked
/// payments first, both finish, and the surplus is refunded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surplus_refund_and_a_webhook_on_one_order_do_not_deadlock() {
    let Some((_t, db)) = open().await else {
        return;
    };
    paid_twice(&db).await;
    // The webhook's transaction: it loads and locks the payment it is about.
    let mut webhook = db.begin().await.expect("begin");
    payments::lock_many(
        &mut webhook,
        "app_l",
        &[],
        &["pi_payment_b".to_owned()],
        &[],
    )
    .await
    .expect("lock");
    // Another transaction re-totals the order (the other payment's webhook, say).
    let other = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await?;
            ledger::refresh_order(&mut tx, "app_l", "order_l").await?;
            tx.commit().await?;
            Ok::<_, paybridge_store::StoreError>(())
        })
    };
    until_one_waits(&db).await;
    let mine = async {
        ledger::refresh_order(&mut webhook, "app_l", "order_l").await?;
        webhook.commit().await?;
        Ok::<_, paybridge_store::StoreError>(())
    };
    let (mine, other) = tokio::time::timeout(Duration::from_secs(30), async {
        let mine = mine.await;
        (mine, other.await.expect("the other transaction ran"))
    })
    .await
    .expect("both transactions end");
    mine.expect("the webhook's transaction commits");
    other.expect("the other transaction commits");
    let mut conn = db.begin().await.expect("begin");
    let rs = refunds::of_order(&mut *conn, "app_l", "order_l")
        .await
        .expect("refunds");
    let surplus: Vec<_> = rs.iter().filter(|r| r.source == "surplus").collect();
    assert_eq!(surplus.len(), 1, "{rs:?}");
    assert_eq!(
        (surplus[0].amount, surplus[0].payment_id.as_str()),
        (1000, "payment_b")
    );
    let o = orders::get(&mut *conn, "app_l", "order_l")
        .await
        .expect("order");
    assert_eq!((o.amount_paid, o.status.as_str()), (2000, "paid"));
}
