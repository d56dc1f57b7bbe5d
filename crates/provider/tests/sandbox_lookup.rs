//! The sandbox finds the intent made for one of our payments by its `pb_payment`
//! metadata (what the reconciler asks when a create call got no answer), on both
//! databases.

use std::sync::Arc;
use std::time::Duration;

use paybridge_provider::sandbox::Sandbox;
use paybridge_provider::{Call, IntentLookup, NewPaymentIntent, Provider};
use paybridge_store::{Db, DbOptions};
use paybridge_testkit::{Backend, TestDb};

paybridge_testkit::on_both!(finds_the_intent_made_for_a_payment_and_no_other,);

fn lookup(payment: &str) -> IntentLookup {
    IntentLookup {
        payment: payment.into(),
        customer: None,
        created_from: 0,
        created_to: i64::MAX,
    }
}

async fn finds_the_intent_made_for_a_payment_and_no_other(b: Backend) {
    let Some(t) = TestDb::new(b).await else {
        return;
    };
    let db = Db::connect(&t.url, DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let sandbox = Sandbox::new(db, "http://sandbox.test", Arc::default(), Duration::ZERO);
    let call = |op: &str| Call::new("app_a", None, op);

    for payment in ["payment_1", "payment_2"] {
        let req = NewPaymentIntent {
            amount: 1500,
            currency: "usd".into(),
            customer: None,
            payment_method: None,
            manual_capture: false,
            save_card: false,
            payment_method_types: vec![],
            metadata: [("pb_payment".to_owned(), payment.to_owned())].into(),
            application_fee_amount: None,
            transfer_destination: None,
            extra: vec![],
        };
        sandbox
            .create_payment_intent(&call(&format!("{payment}_create")), &req)
            .await
            .unwrap();
    }

    let found = sandbox
        .find_payment_intent(&call("payment_2_find"), &lookup("payment_2"))
        .await
        .unwrap()
        .expect("the intent made for payment_2");
    assert_eq!(
        found.metadata.as_ref().and_then(|m| m.get("pb_payment")),
        Some(&"payment_2".to_owned())
    );
    let none = sandbox
        .find_payment_intent(&call("payment_3_find"), &lookup("payment_3"))
        .await
        .unwrap();
    assert!(none.is_none(), "no intent was made for payment_3: {none:?}");
    let other_app = sandbox
        .find_payment_intent(&Call::new("app_b", None, "x"), &lookup("payment_2"))
        .await
        .unwrap();
    assert!(
        other_app.is_none(),
        "another app's intents are not searched"
    );
}
