//! The demo shop's own back end (`/store/session`, `/store/portal`): paybridge plays the
//! storefront's server for the demo app only. It vouches for the demo's one shopper
//! with a customer session, opens the customer portal for them (which no publishable
//! key may), reuses both while they live (an anonymous caller makes no rows), and is
//! gone with `--no-demo`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::browser::demo_keys;
use crate::common::{Backend, Server, TestDb};

paybridge_testkit::on_both!(
    the_demo_shop_vouches_for_its_shopper_and_opens_their_portal,
    without_the_demo_the_shop_routes_are_not_there,
);

async fn the_demo_shop_vouches_for_its_shopper_and_opens_their_portal(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_NO_DEMO", "false")]).await;
    let keys = demo_keys(&s);
    let first = s.call(Method::POST, "/store/session", None, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let customer = first.json["customer"].as_str().unwrap().to_owned();
    let secret = first.json["customer_session_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first.json["email"], "shopper@example.com");
    // Asked again: the same shopper and the same live session, no new row.
    let again = s.call(Method::POST, "/store/session", None, None).await;
    assert_eq!(again.json["customer"], customer.as_str());
    assert_eq!(again.json["customer_session_secret"], secret.as_str());
    let c = s
        .get(&format!("/v1/customers/{customer}"), &keys.server)
        .await;
    assert_eq!(c.json["external_id"], "demo_shopper", "{}", c.body);
    let shoppers = s
        .get("/v1/customers?external_id=demo_shopper", &keys.server)
        .await;
    assert_eq!(shoppers.json["data"].as_array().unwrap().len(), 1);
    // The secret lets the storefront check out as the shopper with the publishable key.
    let products = s.get("/v1/products", &keys.publishable).await;
    let product = products.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["recurring"].is_null())
        .expect("a one-time product")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let checkout = s
        .post(
            "/v1/checkout/sessions",
            &keys.publishable,
            json!({"line_items": [{"product": product, "quantity": 1}], "customer": customer,
                "customer_session_secret": secret,
                "success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/no"}),
        )
        .await;
    assert_eq!(checkout.status, StatusCode::CREATED, "{}", checkout.body);
    let order = s
        .get(
            &format!("/v1/orders/{}", checkout.json["order"].as_str().unwrap()),
            &keys.server,
        )
        .await;
    assert_eq!(order.json["customer"], customer.as_str(), "{}", order.body);
    // The portal: the sandbox's page for that shopper, coming back to the storefront;
    // the same link while it lives.
    let portal = s.call(Method::POST, "/store/portal", None, None).await;
    assert_eq!(portal.status, StatusCode::OK, "{}", portal.body);
    let url = portal.json["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/sandbox/portal/{}/bps_", s.base, keys.id)),
        "{url}"
    );
    let again = s.call(Method::POST, "/store/portal", None, None).await;
    assert_eq!(again.json["url"], url.as_str());
    let page = s.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("shopper@example.com"), "{html}");
    assert!(html.contains(&format!("href=\"{}/\"", s.base)), "{html}");
    // The API still refuses a portal to the publishable key the storefront holds.
    let refused = s
        .post(
            &format!("/v1/customers/{customer}/portal_sessions"),
            &keys.publishable,
            json!({"return_url": "https://shop.example/"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    // Nothing secret in what the shop's server answered but the session's own secret.
    assert!(!first.body.contains("pb_sk_") && !portal.body.contains("pb_sk_"));
}

async fn without_the_demo_the_shop_routes_are_not_there(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    for path in ["/store/session", "/store/portal"] {
        let r = s.call(Method::POST, path, None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        assert_eq!(
            r.json["error"]["type"], "invalid_request_error",
            "{}",
            r.body
        );
    }
    let shoppers = s.get("/v1/customers", &s.sandbox_app().await.server).await;
    assert_eq!(shoppers.json["data"].as_array().unwrap().len(), 0);
}
