//! The catalog: validation, updates, archiving, visibility per role, pagination.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Backend, Server, TestDb};

paybridge_testkit::on_both!(
    products_are_validated_as_stripe_prices,
    products_update_and_archive,
    publishable_keys_see_active_products_only,
    lists_paginate_newest_first,
);

async fn products_are_validated_as_stripe_prices(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let ok = json!({
        "name": " Tea ", "description": "Green", "unit_amount": 500, "currency": "JPY",
        "recurring": {"interval": "month", "interval_count": 3}, "metadata": {"sku": "t-1"}
    });
    let r = s.post("/v1/products", &a.admin, ok).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["name"], "Tea");
    assert_eq!(r.json["currency"], "jpy");
    assert_eq!(
        r.json["unit_amount"], 500,
        "a zero-decimal amount is not scaled"
    );
    assert_eq!(
        r.json["recurring"],
        json!({"interval": "month", "interval_count": 3})
    );
    assert_eq!(r.json["active"], true);
    assert!(r.json["id"].as_str().unwrap().starts_with("product_"));

    let base = || json!({"name": "X", "unit_amount": 100, "currency": "usd"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let cases = [
        (
            with("name", json!("   ")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            with("unit_amount", json!(-1)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unit_amount",
        ),
        (
            with("unit_amount", json!(100_000_000)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unit_amount",
        ),
        (
            with("unit_amount", json!(12.5)),
            StatusCode::BAD_REQUEST,
            "unit_amount",
        ),
        (
            with("unit_amount", json!("100")),
            StatusCode::BAD_REQUEST,
            "unit_amount",
        ),
        (
            with("currency", json!("xyz")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency",
        ),
        (
            with("recurring", json!({"interval": "fortnight"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "recurring.interval",
        ),
        (
            with(
                "recurring",
                json!({"interval": "year", "interval_count": 2}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "recurring.interval_count",
        ),
        (
            with("recurring", json!({"interval": "day", "every": 2})),
            StatusCode::BAD_REQUEST,
            "recurring.every",
        ),
        (
            with("metadata", json!({"a[b]": "c"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "metadata",
        ),
        (with("price", json!(100)), StatusCode::BAD_REQUEST, "price"),
        (
            json!({"name": "X", "currency": "usd"}),
            StatusCode::BAD_REQUEST,
            "unit_amount",
        ),
        (
            json!({"name": "X", "unit_amount": 105, "currency": "kwd"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unit_amount",
        ),
    ];
    for (body, status, param) in cases {
        let r = s.post("/v1/products", &a.admin, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(r.error().2.as_deref(), Some(param), "{body}: {}", r.body);
    }
    // Edge values are accepted.
    for amount in [0, 99_999_999] {
        let r = s
            .post("/v1/products", &a.admin, with("unit_amount", json!(amount)))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{amount}: {}", r.body);
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM products").await, 3);
}

async fn products_update_and_archive(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let r = s
        .post(
            "/v1/products",
            &a.admin,
            json!({"name": "Tea", "unit_amount": 500, "currency": "usd", "provider_price_id": "price_123", "metadata": {"a": "1", "b": "2"}}),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/products/{id}");

    let r = s
        .patch(
            &path,
            &a.admin,
            json!({"name": "Green tea", "description": "Sencha", "metadata": {"a": "", "c": "3"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json["name"], "Green tea");
    assert_eq!(r.json["metadata"], json!({"b": "2", "c": "3"}));
    assert_eq!(
        r.json["provider_price_id"], "price_123",
        "a non-price change keeps the Stripe price"
    );

    let r = s.patch(&path, &a.admin, json!({"unit_amount": 650})).await;
    assert_eq!(r.json["unit_amount"], 650);
    assert_eq!(
        r.json["provider_price_id"],
        serde_json::Value::Null,
        "Stripe prices cannot change"
    );
    let r = s.patch(&path, &a.admin, json!({"description": null})).await;
    assert_eq!(r.json["description"], serde_json::Value::Null);

    // A bad patch changes nothing.
    let before = s.get(&path, &a.admin).await.json;
    for bad in [
        json!({"unit_amount": -5}),
        json!({"currency": "zzz"}),
        json!({"name": ""}),
        json!({"colour": "red"}),
    ] {
        let r = s.patch(&path, &a.admin, bad.clone()).await;
        assert!(r.status.is_client_error(), "{bad}");
        r.error();
    }
    assert_eq!(s.get(&path, &a.admin).await.json, before);

    let r = s.delete(&path, &a.admin).await;
    assert_eq!(
        r.json,
        json!({"id": id, "object": "product", "deleted": true})
    );
    assert_eq!(s.get(&path, &a.admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.delete(&path, &a.admin).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.patch(&path, &a.admin, json!({"name": "back"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The Stripe price id may be used again once its product is archived.
    let r = s
        .post("/v1/products", &a.admin, json!({"name": "T", "unit_amount": 1, "currency": "usd", "provider_price_id": "price_9"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let dup = s
        .post("/v1/products", &a.admin, json!({"name": "T2", "unit_amount": 1, "currency": "usd", "provider_price_id": "price_9"}))
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.error().2.as_deref(), Some("provider_price_id"));
}

async fn publishable_keys_see_active_products_only(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let on = s
        .post(
            "/v1/products",
            &a.admin,
            json!({"name": "On", "unit_amount": 1, "currency": "usd"}),
        )
        .await;
    let off = s
        .post(
            "/v1/products",
            &a.admin,
            json!({"name": "Off", "unit_amount": 1, "currency": "usd", "active": false}),
        )
        .await;
    let off_id = off.json["id"].as_str().unwrap();
    let names = |r: &crate::common::Resp| -> Vec<String> {
        r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&s.get("/v1/products", &a.publishable).await),
        vec!["On"]
    );
    assert_eq!(
        names(&s.get("/v1/products?active=false", &a.publishable).await),
        vec!["On"]
    );
    assert_eq!(
        names(&s.get("/v1/products", &a.admin).await),
        vec!["Off", "On"]
    );
    assert_eq!(
        names(&s.get("/v1/products?active=false", &a.server).await),
        vec!["Off"]
    );
    assert_eq!(
        s.get(&format!("/v1/products/{off_id}"), &a.publishable)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v1/products/{off_id}"), &a.server)
            .await
            .status,
        StatusCode::OK
    );
    let on_id = on.json["id"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/v1/products/{on_id}"), &a.publishable)
            .await
            .status,
        StatusCode::OK
    );
}

async fn lists_paginate_newest_first(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = s
            .post(
                "/v1/products",
                &a.admin,
                json!({"name": format!("P{i}"), "unit_amount": i, "currency": "usd"}),
            )
            .await;
        ids.push(r.json["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/products?limit=3&starting_after={c}"),
            None => "/v1/products?limit=3".to_owned(),
        };
        let r = s.get(&path, &a.admin).await;
        let page: Vec<String> = r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect();
        seen.extend(page.clone());
        if !r.json["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = page.last().cloned();
    }
    assert_eq!(seen, ids);
    for bad in ["limit=0", "limit=101", "limit=abc", "bogus=1"] {
        let r = s.get(&format!("/v1/products?{bad}"), &a.admin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.error().2.is_some(), "{bad}: {}", r.body);
    }
}
