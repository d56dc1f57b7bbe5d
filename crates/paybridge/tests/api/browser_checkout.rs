//! The customer's side of a checkout in a real browser (issue 15, items 1–4 and 7):
//! `tests/browser/checkout.mjs`, at 1280 px and at 390 px, each result checked again
//! through the API.

use serde_json::Value;

use crate::browser::{demo, scenario};
use crate::common::{AppKeys, Server};

const WIDTHS: [&str; 2] = ["1280", "390"];

async fn order(s: &Server, keys: &AppKeys, id: &str) -> Value {
    s.get(&format!("/v1/orders/{id}"), &keys.admin).await.json
}

async fn event_types(s: &Server, keys: &AppKeys, order: &str) -> Vec<String> {
    let e = s
        .get(&format!("/v1/events?order={order}&limit=100"), &keys.admin)
        .await;
    e.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_checkouts_at_once_each_end_with_their_own_truth() {
    let (_db, s, keys) = demo().await;
    for width in WIDTHS {
        let out = scenario(&s, &keys, "checkout-concurrent", &[("WIDTH", width)]);
        let orders: Vec<&str> = out["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(orders.len(), 2, "{out}");
        assert_ne!(orders[0], orders[1]);
        for o in orders {
            let o = order(&s, &keys, o).await;
            assert_eq!(o["status"], "paid", "{o}");
            assert_eq!(o["amount_paid"], o["amount_total"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkout_works_with_the_opener_severed() {
    let (_db, s, keys) = demo().await;
    for width in WIDTHS {
        let out = scenario(&s, &keys, "checkout-severed", &[("WIDTH", width)]);
        let paid = order(&s, &keys, out["order"].as_str().unwrap()).await;
        assert_eq!(paid["status"], "paid", "{paid}");
        // The cancelled one: ended on the server, nothing taken, still payable.
        let id = out["canceledOrder"]
            .as_str()
            .expect("the cancelled order's id");
        let o = order(&s, &keys, id).await;
        assert_eq!(o["status"], "open", "{o}");
        assert_eq!(o["amount_paid"], 0);
        assert_eq!(o["payments"][0]["status"], "expired", "{o}");
        let types = event_types(&s, &keys, id).await;
        assert!(types.iter().any(|t| t == "checkout.expired"), "{types:?}");
        assert!(
            out["tookMs"].as_u64().unwrap() < 4000,
            "the cancel was noticed late: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_keeps_the_customer_on_the_page_to_retry() {
    let (_db, s, keys) = demo().await;
    for width in WIDTHS {
        let out = scenario(&s, &keys, "checkout-decline-retry", &[("WIDTH", width)]);
        assert!(
            out["declined"]
                .as_str()
                .unwrap()
                .contains("generic_decline"),
            "{out}"
        );
        let id = out["order"].as_str().unwrap();
        let o = order(&s, &keys, id).await;
        assert_eq!(o["status"], "paid", "{o}");
        let types = event_types(&s, &keys, id).await;
        assert!(
            types.iter().any(|t| t == "payment.failed")
                && types.iter().any(|t| t == "payment.succeeded"),
            "{types:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typos_are_input_errors_and_the_page_reads_like_the_shop() {
    let (_db, s, keys) = demo().await;
    for width in WIDTHS {
        let out = scenario(&s, &keys, "checkout-page", &[("WIDTH", width)]);
        assert_eq!(out["total"], "$25.00", "{out}");
    }
    // Nothing the typos did reached the provider or the ledger.
    let failed = s.get("/v1/payments?status=failed", &keys.admin).await;
    assert_eq!(
        failed.json["data"].as_array().unwrap().len(),
        0,
        "{}",
        failed.body
    );
    let pe = s.get("/v1/provider_events?limit=100", &keys.admin).await;
    let kinds: Vec<&str> = pe.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(!kinds.iter().any(|k| k.contains("failed")), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_docs_link_render_code_and_explain_keys() {
    let (_db, s, keys) = demo().await;
    for width in WIDTHS {
        let out = scenario(&s, &keys, "api-docs", &[("WIDTH", width)]);
        assert!(out["codes"].as_u64().unwrap() > 100, "{out}");
    }
}
