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

/// Marks an object stored without the keys that [`shape`] gave it as `null`; its value
/// is the object's kind.
const SHAPED: &str = "_shaped";

/// `v` as the sandbox stores it. A Stripe object has every key of Stripe's (`shape`),
/// most of them `null`: a checkout session carried about 1 KB of `"key":null`, so that
/// it and its idempotent answer (2.2 and 1.7 KB) took a 4 KiB page each. Stored without
/// those keys (and marked), they take about half; [`from_rest`] puts them back. Only an
/// object with every key of its template is stored so (an answer such as a deletion's
/// `{"id", "object", "deleted"}` is stored as it is, and read back without nulls added).
pub fn to_rest(v: &Value) -> String {
    let template = v["object"]
        .as_str()
        .and_then(|kind| Some((kind, fixtures().get(kind)?)));
    match (v, template) {
        (Value::Object(o), Some((kind, Value::Object(t))))
            if t.keys().all(|k| o.contains_key(k)) =>
        {
            let mut kept: Map<String, Value> = o
                .iter()
                .filter(|(k, val)| !(val.is_null() && t.contains_key(*k)))
                .map(|(k, val)| (k.clone(), val.clone()))
                .collect();
            kept.insert(SHAPED.into(), json!(kind));
            Value::Object(kept).to_string()
        }
        _ => v.to_string(),
    }
}

/// An object stored by [`to_rest`], whole again (an object stored before it, or not
/// Stripe-shaped, as it was stored).
pub fn from_rest(raw: &str) -> serde_json::Result<Value> {
    let mut v: Value = serde_json::from_str(raw)?;
    let kind = v
        .as_object_mut()
        .and_then(|o| o.remove(SHAPED))
        .and_then(|k| k.as_str().map(str::to_owned));
    Ok(match kind {
        Some(kind) => shape(&kind, v),
        None => v,
    })
}

/// A Stripe-like id: `cus_…`, `pi_…`, `cs_test_…`, then 24 letters and digits, as
/// opaque as Stripe's. The first 8 are the milliseconds since 1970 in base 62 (digits,
/// then capitals, then small letters: the order bytes sort in) and the other 16 are
/// random (95 bits: not guessable). Ids made one after another thus sort together, so
/// each index keyed by them (the sandbox's own objects, and our checkouts and payments
/// by their session id) takes its new entries on the last page rather than on a page
/// anywhere in it. With random ids each new checkout dirtied three index pages of its
/// own, a third of the WAL written per checkout and most of what every checkpoint had
/// to copy and fsync (BENCHMARKS.md). Stripe's own checkout session ids are random.
pub fn id(prefix: &str) -> String {
    const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // 62^8 ms is about 6,900 years.
    let mut time = [b'0'; 8];
    for digit in time.iter_mut().rev() {
        *digit = BASE62[(ms % 62) as usize];
        ms /= 62;
    }
    let mut out = format!("{prefix}_");
    out.extend(time.iter().map(|&b| char::from(b)));
    out.extend(
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(16)
            .map(char::from),
    );
    out
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

    /// A shaped object stored compactly comes back as it was: every key, the same
    /// values; anything else is stored as it is.
    #[test]
    fn objects_come_back_from_rest_whole() {
        let cs = shape(
            "checkout.session",
            json!({"id": "cs_test_1", "object": "checkout.session", "amount_total": 5,
                   "payment_intent": null, "metadata": {"a": null}, "own_key": null}),
        );
        let raw = to_rest(&cs);
        assert!(raw.len() * 3 < cs.to_string().len(), "{raw}");
        assert!(
            !raw.contains("\"payment_intent\""),
            "template nulls left out: {raw}"
        );
        assert!(
            raw.contains("\"own_key\":null"),
            "a null the template lacks is kept: {raw}"
        );
        assert_eq!(from_rest(&raw).unwrap(), cs);
        for other in [
            json!({"id": "x", "v": null}),
            json!(""),
            json!({"object": "nope", "a": null}),
            // Not every key of its template: stored as it is.
            json!({"id": "acct_1", "object": "account", "deleted": true, "x": null}),
        ] {
            assert_eq!(from_rest(&to_rest(&other)).unwrap(), other);
        }
        // As stored before compaction: read as it is.
        assert_eq!(from_rest(&cs.to_string()).unwrap(), cs);
    }

    /// Ids look like Stripe's (24 letters and digits after the prefix), ids made later
    /// sort after earlier ones, and ids made in the same millisecond still differ.
    #[test]
    fn ids_are_opaque_sort_by_time_and_differ() {
        let first = id("cs_test");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later: Vec<String> = (0..1000).map(|_| id("cs_test")).collect();
        for i in std::iter::once(&first).chain(&later) {
            let rest = i.strip_prefix("cs_test_").expect("prefixed");
            assert!(
                rest.len() == 24 && rest.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{i}"
            );
        }
        assert!(
            later.iter().all(|l| *l > first),
            "later ids sort after {first}"
        );
        let distinct: std::collections::HashSet<&String> = later.iter().collect();
        assert_eq!(distinct.len(), later.len(), "ids differ");
    }
}
