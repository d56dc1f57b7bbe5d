//! Stripe's payment intent (and checkout session) objects carry a client secret that
//! paybridge must not keep. The raw event is stored as received, less that: every
//! `"client_secret": "<string>"` member, at any depth, has its value replaced by
//! `"[redacted]"`, and every other byte stays as it arrived.
//!
//! This works on the bytes, without parsing the event into a tree and writing it out
//! again: the ingest path stores thousands of events a second, most of them payment
//! intents that carry the member, and the stored payload stays byte for byte the
//! provider's (less the secret). Strings are consumed whole, so the name is matched
//! only where it is a member's name, never inside another string.

/// What the secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The index of the closing quote of the string whose content starts at `from`.
fn string_end(b: &[u8], from: usize) -> Option<usize> {
    let mut k = from;
    while k < b.len() {
        match b[k] {
            b'\\' => k += 2,
            b'"' => return Some(k),
            _ => k += 1,
        }
    }
    None
}

fn skip_ws(b: &[u8], mut k: usize) -> usize {
    while k < b.len() && matches!(b[k], b' ' | b'\t' | b'\n' | b'\r') {
        k += 1;
    }
    k
}

/// Whether the string between quotes at `open` and `close` says `client_secret`
/// (written plainly or with escapes).
fn names_client_secret(b: &[u8], open: usize, close: usize) -> bool {
    let content = &b[open + 1..close];
    if !content.contains(&b'\\') {
        return content == b"client_secret";
    }
    serde_json::from_slice::<String>(&b[open..=close]).is_ok_and(|s| s == "client_secret")
}

/// The raw event with every client secret's value replaced; the same `String`, not a
/// copy, when there is none.
pub fn client_secrets(raw: String) -> String {
    let b = raw.as_bytes();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(close) = string_end(b, i + 1) else {
            break;
        };
        let open = i;
        i = close + 1;
        if !names_client_secret(b, open, close) {
            continue;
        }
        let colon = skip_ws(b, i);
        if b.get(colon) != Some(&b':') {
            continue;
        }
        let value = skip_ws(b, colon + 1);
        if b.get(value) != Some(&b'"') {
            continue;
        }
        let Some(value_end) = string_end(b, value + 1) else {
            break;
        };
        cuts.push((value + 1, value_end));
        i = value_end + 1;
    }
    if cuts.is_empty() {
        return raw;
    }
    let mut out = String::with_capacity(raw.len());
    let mut at = 0;
    for (from, to) in cuts {
        out.push_str(&raw[at..from]);
        out.push_str(REDACTED);
        at = to;
    }
    out.push_str(&raw[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What the tree-based redaction (parse, replace, serialise) made of an event.
    fn by_tree(raw: &str) -> Value {
        fn walk(v: &mut Value) {
            match v {
                Value::Object(o) => {
                    for (k, x) in o.iter_mut() {
                        if k == "client_secret" && x.is_string() {
                            *x = Value::String(REDACTED.into());
                        } else {
                            walk(x);
                        }
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(walk),
                _ => {}
            }
        }
        let mut v: Value = serde_json::from_str(raw).expect("json");
        walk(&mut v);
        v
    }

    fn same_as_tree(raw: &str) {
        let out = client_secrets(raw.to_owned());
        let parsed: Value = serde_json::from_str(&out).expect("still json");
        assert_eq!(parsed, by_tree(raw), "{raw} -> {out}");
        assert!(!out.contains("pi_secret_"), "{out}");
    }

    #[test]
    fn replaces_the_secret_and_keeps_every_other_byte() {
        let raw = r#"{"id":"evt_1", "data": {"object": {"id":"pi_1","client_secret" : "pi_1_secret_abc","amount":100}}}"#;
        assert_eq!(
            client_secrets(raw.to_owned()),
            r#"{"id":"evt_1", "data": {"object": {"id":"pi_1","client_secret" : "[redacted]","amount":100}}}"#
        );
    }

    #[test]
    fn leaves_an_event_without_a_secret_untouched_and_uncopied() {
        let raw = String::from(r#"{"id":"evt_1","data":{"object":{"id":"ch_1"}}}"#);
        let ptr = raw.as_ptr();
        let out = client_secrets(raw);
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn matches_member_names_only() {
        // The name as a value, inside another string, escaped, nested, in arrays, and
        // a non-string secret (left alone, as the tree walk does).
        for raw in [
            r#"{"a":"client_secret","b":["client_secret"],"c":"x \"client_secret\": \"pi_secret_no\""}"#,
            r#"{"client_secret":"pi_secret_1","d":{"client_secret":"pi_secret_2"},"e":[{"client_secret":"pi_secret_3"}]}"#,
            r#"{"client\u005fsecret":"pi_secret_4"}"#,
            r#"{"k":"\\","client_secret":"pi_secret_5\"x\\"}"#,
            r#"{"client_secret":null,"z":{"client_secret":7}}"#,
        ] {
            let out = client_secrets(raw.to_owned());
            let parsed: Value = serde_json::from_str(&out).expect("json");
            assert_eq!(parsed, by_tree(raw), "{raw} -> {out}");
        }
        // The string that merely mentions it keeps its text.
        let raw = r#"{"c":"x \"client_secret\": \"pi_secret_no\""}"#;
        assert_eq!(client_secrets(raw.to_owned()), raw);
    }

    #[test]
    fn survives_broken_json() {
        for raw in [
            r#"{"client_secret":"unterminated"#,
            r#"{"client_secret""#,
            "\"",
            "",
        ] {
            let _ = client_secrets(raw.to_owned());
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_tree_walk(secret in "[a-z_\\\\\"]{0,12}", other in "[a-z_\"\\\\ ]{0,12}", depth in 0usize..4) {
            let mut v = json!({"id": "evt", "client_secret": secret, "note": other});
            for _ in 0..depth {
                v = json!({"object": v, "list": [v.clone(), other], "client_secret": secret});
            }
            same_as_tree(&v.to_string());
            same_as_tree(&serde_json::to_string_pretty(&v).expect("pretty"));
        }
    }
}
