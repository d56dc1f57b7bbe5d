//! A shop owner's searches through the API (issue 15): the card on every payment and
//! the `last4` filter, customers by email (whole or its beginning, any case, on the
//! server), and date ranges on the lists of orders, customers and subscriptions, each
//! with rows inside and outside the range. On both databases.

use std::time::Duration;

use paybridge_testkit::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Server, TestDb};

paybridge_testkit::on_both!(
    payments_carry_their_card_and_are_found_by_its_last_4,
    customers_are_found_by_email_on_the_server,
    orders_customers_and_subscriptions_take_a_date_range,
);

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn customer(s: &Server, a: &AppKeys, ext: &str, email: &str, card: Option<&str>) -> String {
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": ext, "email": email}),
        )
        .await;
    assert!(c.status.is_success(), "{}", c.body);
    let id = c.json["id"].as_str().unwrap().to_owned();
    if let Some(pm) = card {
        let r = s
            .post(
                &format!("/v1/customers/{id}/payment_methods"),
                &a.server,
                json!({ "payment_method": pm }),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    }
    id
}

async fn payments_carry_their_card_and_are_found_by_its_last_4(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    // A saved Mastercard charged off-session: its card from the start.
    let ada = customer(&s, &a, "ada", "ada@example.com", Some("pm_card_mastercard")).await;
    let charged = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 1500, "currency": "usd", "method": "card", "customer": ada}),
        )
        .await;
    assert_eq!(charged.status, StatusCode::CREATED, "{}", charged.body);
    assert_eq!(
        charged.json["card"],
        json!({"brand": "mastercard", "last4": "4444"})
    );
    let charged = charged.json["id"].as_str().unwrap().to_owned();
    // A hosted checkout: declined first (that card is shown while nothing is paid),
    // then paid with a Visa, which is the payment's card for good.
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let cs = s.checkout(&a.publishable, &shirt, 1, json!({})).await;
    let complete = format!(
        "/v1/sandbox/checkout_sessions/{}/complete",
        cs["id"].as_str().unwrap()
    );
    let paid = cs["payment"].as_str().unwrap().to_owned();
    let path = format!("/v1/payments/{paid}");
    let before = s.get(&path, &a.server).await;
    assert_eq!(
        before.json["card"],
        Value::Null,
        "no card before one is used"
    );
    let r = s
        .post(
            &complete,
            &a.publishable,
            json!({"card_number": "4000 0000 0000 0002"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.body);
    let declined = s
        .until(&path, &a.server, |p| p["card"]["last4"] == "0002")
        .await;
    assert_eq!(
        (&declined["status"], &declined["card"]["brand"]),
        (&json!("failed"), &json!("visa"))
    );
    let r = s
        .post(
            &complete,
            &a.publishable,
            json!({"card_number": "4242 4242 4242 4242"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let p = s
        .until(&path, &a.server, |p| {
            p["status"] == "succeeded" && p["card"]["last4"] == "4242"
        })
        .await;
    assert_eq!(p["card"], json!({"brand": "visa", "last4": "4242"}));
    // The events carry it too.
    let evs = s
        .get(&format!("/v1/events?payment={paid}&limit=100"), &a.admin)
        .await;
    let succeeded = evs.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "payment.succeeded")
        .unwrap_or_else(|| panic!("{}", evs.body));
    // Never the declined card: the one that paid, or none yet when the checkout's own
    // answer came before its charge.
    let told = &succeeded["data"]["object"]["card"];
    assert!(told.is_null() || told["last4"] == "4242", "{told}");
    // A late report of the declined card does not replace the card that paid: the
    // payment is read again after everything was delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.get(&path, &a.server).await.json["card"]["last4"], "4242");

    // `last4`: exactly that card's payments.
    let by = |q: String| {
        let s = &s;
        let key = a.admin.clone();
        async move { s.get(&format!("/v1/payments?{q}"), &key).await }
    };
    assert_eq!(
        ids(&by("last4=4444".into()).await.json),
        vec![charged.clone()]
    );
    assert_eq!(ids(&by("last4=4242".into()).await.json), vec![paid.clone()]);
    assert!(ids(&by("last4=0002".into()).await.json).is_empty());
    assert!(ids(&by("last4=1234".into()).await.json).is_empty());
    // With the other filters.
    assert_eq!(
        ids(&by("last4=4444&email=ADA@example.com&currency=usd".into())
            .await
            .json),
        vec![charged.clone()]
    );
    assert!(ids(&by("last4=4444&currency=jpy".into()).await.json).is_empty());
    // Not 4 digits: a 422 naming the parameter, in the error shape.
    for bad in [
        "42",
        "42424",
        "abcd",
        "4%204",
        "%EF%BC%94%EF%BC%92%EF%BC%94%EF%BC%92",
    ] {
        let r = by(format!("last4={bad}")).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
        assert_eq!(
            r.error(),
            (
                "invalid_request_error".into(),
                "parameter_invalid".into(),
                Some("last4".into())
            ),
            "{bad}"
        );
    }
    let r = by("currency=xyz".into()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.error().2.as_deref(), Some("currency"));
    // The export: the same filter, the card in two columns.
    let csv = s
        .http
        .get(s.url("/v1/payments/export?last4=4242"))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert!(lines[0].ends_with(",card_brand,card_last4"), "{}", lines[0]);
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with(&paid) && lines[1].ends_with(",visa,4242"),
        "{}",
        lines[1]
    );
}

async fn customers_are_found_by_email_on_the_server(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let ada = customer(&s, &a, "ada", "Ada@Example.com", None).await;
    let adam = customer(&s, &a, "adam", "adam@example.org", None).await;
    let dash = customer(&s, &a, "dash", "a-c@example.com", None).await;
    // Newer customers than these: a search finds them past the newest page.
    for i in 0..3 {
        customer(&s, &a, &format!("x{i}"), &format!("x{i}@example.com"), None).await;
    }
    let find = |q: &str| {
        let path = format!("/v1/customers?{q}");
        let s = &s;
        let key = a.admin.clone();
        async move {
            let r = s.get(&path, &key).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            let mut v = ids(&r.json);
            v.sort();
            v
        }
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(find("email=ada@example.com").await, vec![ada.clone()]);
    assert_eq!(find("email=ADA@EXAMPLE.COM").await, vec![ada.clone()]);
    assert!(
        find("email=ada@example").await.is_empty(),
        "whole, not a prefix"
    );
    assert_eq!(find("email_prefix=ADA").await, sorted(vec![&ada, &adam]));
    assert_eq!(find("email_prefix=adam").await, vec![adam.clone()]);
    assert_eq!(find("email_prefix=a-").await, vec![dash.clone()]);
    assert!(find("email_prefix=ab").await.is_empty());
    assert!(find("email_prefix=%25").await.is_empty(), "no wildcards");
    assert!(find("email_prefix=_").await.is_empty(), "no wildcards");
    // One page at a time, as any list.
    let first = s
        .get("/v1/customers?email_prefix=ad&limit=1", &a.admin)
        .await;
    assert_eq!(ids(&first.json), vec![adam.clone()], "newest first");
    assert_eq!(first.json["has_more"], true);
    let next = s
        .get(
            &format!("/v1/customers?email_prefix=ad&limit=1&starting_after={adam}"),
            &a.admin,
        )
        .await;
    assert_eq!(ids(&next.json), vec![ada.clone()]);
    assert_eq!(next.json["has_more"], false);
    // NUL is no text a database compares: a 400, on both.
    for q in ["email_prefix=a%00", "email=%00@example.com"] {
        let r = s.get(&format!("/v1/customers?{q}"), &a.admin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.body);
        r.error();
    }
    // One check of an email searched by, on customers and payments alike: past 320
    // bytes a 422 naming the parameter; blank is no filter.
    let long = "a".repeat(321);
    for (path, param) in [
        ("/v1/customers", "email"),
        ("/v1/customers", "email_prefix"),
        ("/v1/payments", "email"),
    ] {
        let r = s.get(&format!("{path}?{param}={long}"), &a.admin).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.error().2.as_deref(), Some(param), "{}", r.body);
        let all = s.get(&format!("{path}?limit=100"), &a.admin).await;
        let blank = s
            .get(&format!("{path}?{param}=%20%20&limit=100"), &a.admin)
            .await;
        assert_eq!(blank.status, StatusCode::OK, "{}", blank.body);
        assert_eq!(ids(&blank.json), ids(&all.json), "{path}?{param}=blank");
    }
}

/// Waits until the clock shows a later second than `t`.
async fn next_second(t: i64) {
    while paybridge_store::now() <= t {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn orders_customers_and_subscriptions_take_a_date_range(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let club = s
        .post(
            "/v1/products",
            &a.admin,
            json!({"name": "Club", "unit_amount": 1500, "currency": "usd", "recurring": {"interval": "month"}}),
        )
        .await;
    let club = club.json["id"].as_str().unwrap().to_owned();
    let mug = s.product(&a.admin, "Mug", 1200, "usd").await;
    // One of each, then a second later another of each.
    let mut made: Vec<(i64, [String; 3])> = Vec::new();
    for n in ["early", "late"] {
        if let Some((t, _)) = made.last() {
            next_second(*t).await;
        }
        let c = customer(&s, &a, n, &format!("{n}@example.com"), Some("pm_card_visa")).await;
        let o = s
            .post(
                "/v1/orders",
                &a.server,
                json!({"customer": c, "line_items": [{"product": mug, "quantity": 1}]}),
            )
            .await;
        assert_eq!(o.status, StatusCode::CREATED, "{}", o.body);
        let sub = s
            .post(
                "/v1/subscriptions",
                &a.server,
                json!({"customer": c, "product": club}),
            )
            .await;
        assert_eq!(sub.status, StatusCode::CREATED, "{}", sub.body);
        let created = [
            s.get(&format!("/v1/customers/{c}"), &a.admin).await.json["created"].as_i64(),
            o.json["created"].as_i64(),
            sub.json["created"].as_i64(),
        ];
        let (lo, hi) = (
            created.iter().flatten().min().copied().unwrap(),
            created.iter().flatten().max().copied().unwrap(),
        );
        made.push((
            hi,
            [
                c,
                o.json["id"].as_str().unwrap().to_owned(),
                sub.json["id"].as_str().unwrap().to_owned(),
            ],
        ));
        // The early ones end before the late ones start.
        if made.len() == 2 {
            assert!(lo > made[0].0, "{lo} after {}", made[0].0);
        }
    }
    let (early_end, early) = &made[0];
    let (late_end, late) = &made[1];
    let late_start = early_end + 1;
    // Subscription invoices make orders of their own: the orders list is asked about the
    // orders made here, by id.
    for (i, list) in ["customers", "orders", "subscriptions"]
        .into_iter()
        .enumerate()
    {
        let q = |range: String| {
            let path = format!("/v1/{list}?limit=100&{range}");
            let s = &s;
            let key = a.admin.clone();
            async move {
                let r = s.get(&path, &key).await;
                assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
                ids(&r.json)
            }
        };
        let (e, l) = (&early[i], &late[i]);
        let all = q(String::new()).await;
        assert!(all.contains(e) && all.contains(l), "{list}: {all:?}");
        let before = q(format!("created[lte]={early_end}")).await;
        assert!(
            before.contains(e) && !before.contains(l),
            "{list} up to {early_end}: {before:?}"
        );
        let after = q(format!("created[gte]={late_start}")).await;
        assert!(
            after.contains(l) && !after.contains(e),
            "{list} from {late_start}: {after:?}"
        );
        let both = q(format!("created[gte]={late_start}&created[lte]={late_end}")).await;
        assert!(both.contains(l) && !both.contains(e), "{list}: {both:?}");
        let later = q(format!("created[gte]={}", late_end + 1)).await;
        assert!(
            !later.contains(l) && !later.contains(e),
            "{list}: {later:?}"
        );
        // A range that ends before it starts, or a time that is not a number.
        for bad in [
            format!("created[gte]={late_start}&created[lte]={early_end}"),
            "created[gte]=yesterday".to_owned(),
        ] {
            let r = s.get(&format!("/v1/{list}?{bad}"), &a.admin).await;
            assert!(r.status.is_client_error(), "{list}?{bad}: {}", r.body);
            assert!(r.json["error"]["message"].is_string(), "{}", r.body);
        }
        let r = s
            .get(
                &format!("/v1/{list}?created[gte]={late_start}&created[lte]={early_end}"),
                &a.admin,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.error().2.as_deref(), Some("created[lte]"));
    }
}
