//! The sandbox answers a repeated call (the same idempotency key) with the answer of
//! the first, as Stripe does, on both databases: one after the other, and two at once.
//! Creating a checkout session claims its key with the answer itself.

use std::sync::Arc;
use std::time::Duration;

use paybridge_provider::sandbox::Sandbox;
use paybridge_provider::{Call, LineItem, NewCheckout, Provider};
use paybridge_store::{Db, DbOptions};
use paybridge_testkit::{Backend, TestDb};

paybridge_testkit::on_both!(
    a_repeated_checkout_session_call_gets_the_first_answer_and_makes_one_session,
);

fn checkout(reference: &str) -> NewCheckout {
    NewCheckout {
        mode: "payment".into(),
        line_items: vec![LineItem {
            name: "Shirt".into(),
            unit_amount: 2500,
            currency: "usd".into(),
            quantity: 2,
            price: None,
            recurring: None,
        }],
        success_url: "https://shop.example/ok".into(),
        cancel_url: "https://shop.example/cart".into(),
        expires_at: 4_000_000_000,
        customer: None,
        client_reference_id: reference.into(),
        manual_capture: false,
        save_card: false,
        metadata: Default::default(),
        application_fee_amount: None,
        transfer_destination: None,
        extra: vec![],
    }
}

async fn sessions(t: &TestDb) -> i64 {
    t.scalar("SELECT COUNT(*) FROM sandbox_objects WHERE kind = 'checkout.session'")
        .await
}

async fn a_repeated_checkout_session_call_gets_the_first_answer_and_makes_one_session(b: Backend) {
    let Some(t) = TestDb::new(b).await else {
        return;
    };
    let db = Db::connect(&t.url, DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let sandbox = Arc::new(Sandbox::new(
        db.clone(),
        "http://sandbox.test",
        Arc::default(),
        Duration::ZERO,
    ));

    // One after the other: the second gets the first's session, with its page.
    let call = Call::new("app_a", None, "chk_1_create");
    let first = sandbox
        .create_checkout_session(&call, &checkout("ord_1"))
        .await
        .unwrap();
    let again = sandbox
        .create_checkout_session(&call, &checkout("ord_1"))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.url, first.url);
    assert_eq!(again.amount_total, Some(5000));
    assert_eq!(sessions(&t).await, 1);

    // Another key makes another session.
    let other = sandbox
        .create_checkout_session(
            &Call::new("app_a", None, "chk_2_create"),
            &checkout("ord_2"),
        )
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(sessions(&t).await, 2);

    // Eight at once with one key: each is answered with the one session made.
    for round in 0..5 {
        let op = format!("chk_race_{round}_create");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let sandbox = sandbox.clone();
                let call = Call::new("app_a", None, &op);
                tokio::spawn(async move {
                    sandbox
                        .create_checkout_session(&call, &checkout("ord_race"))
                        .await
                })
            })
            .collect();
        // The key is claimed with the answer, so no call finds it in progress: each
        // waits for the first and gets its session.
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.unwrap().expect("the first call's session").id);
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(sessions(&t).await, 3 + round);
    }
    db.close().await;
}
