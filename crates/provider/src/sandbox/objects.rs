//! Stripe-shaped objects for the sandbox. Each object has every key its Stripe
//! counterpart has (taken from Stripe's published example objects in
//! `fixtures/stripe_objects.json`, MIT licence beside it): the keys the sandbox manages
//! carry real values, the rest are `null`, as a fresh Stripe object's often are. So a
//! parser tested against sandbox events has seen the full shape.

use std::sync::OnceLock;

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::stripe::STRIPE_VERSION;

static FIXTURES: &str = include_str!("../../fixtures/stripe_objects.json");

fn fixtures() -> &'static Map<String, Value> {
    static PARSED: OnceLock<Map<String, Value>> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(FIXTURES).expect("the bundled Stripe fixtures parse"))
}

/// `own` laid over the full key set of Stripe's `kind` object (other keys `null`).
pub fn shape(kind: &str, own: Value) -> Value {
    let mut out = Map::new();
    if let Some(Value::Object(template)) = fixtures().get(kind) {
        for k in template.keys() {
            out.insert(k.clone(), Value::Null);
        }
    }
    if let Value::Object(own) = own {
        out.extend(own);
    }
    Value::Object(out)
}

/// A Stripe-like id: `cus_…`, `pi_…`, `cs_test_…`.
pub fn id(prefix: &str) -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{prefix}_{random}")
}

/// The event envelope Stripe sends for `object`.
pub fn event(kind: &str, object: &Value, created: i64, idempotency_key: Option<&str>) -> Value {
    shape(
        "event",
        json!({
            "id": id("evt"),
            "object": "event",
            "api_version": STRIPE_VERSION,
            "created": created,
            "data": {"object": object},
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": id("req"), "idempotency_key": idempotency_key},
            "type": kind,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_objects_have_stripes_keys() {
        let pi = shape("payment_intent", json!({"id": "pi_1", "amount": 5}));
        assert_eq!(pi["id"], "pi_1");
        assert!(pi.as_object().unwrap().contains_key("last_payment_error"));
        assert_eq!(pi["last_payment_error"], Value::Null);
        let ev = event("charge.succeeded", &json!({"id": "ch_1"}), 10, Some("k"));
        assert!(ev["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(ev["data"]["object"]["id"], "ch_1");
        assert!(id("cs_test").starts_with("cs_test_"));
    }
}
