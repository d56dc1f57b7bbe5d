//! 3-D Secure recovery: the link to the page where a customer authenticates a payment
//! that is `requires_action` (an off-session charge or a renewal whose bank asks for
//! it), and what that page may do.
//!
//! The link is `{public URL}/pay/authenticate/{app}/{payment}?token=…`. The token is
//! derived from the master key (HMAC under `MasterKey::derive("authentication_links")`)
//! over the app and payment ids, so it is the same on every node, is never stored on
//! its own, and cannot be made without the master key. It opens one page about one
//! payment; the page acts only while the payment awaits authentication, so a second
//! completion (or a stale link) changes nothing. The intent's client secret, which
//! Stripe.js needs, is never in the link, an event or the database: the page asks the
//! provider for it when it is served.
//!
//! Links are made where events are made (the ledger), which has no `AppState`: the
//! public URL and the link key are set once per process by `AppState::new`.

use std::sync::RwLock;

use hmac::{Hmac, Mac};
use paybridge_core::vault::MasterKey;
use paybridge_store::payments::PaymentRow;
use subtle::ConstantTimeEq;

struct Links {
    base: String,
    key: String,
}

static LINKS: RwLock<Option<Links>> = RwLock::new(None);

/// Sets where links point and the key they are made with (at start).
pub fn init(public_url: &str, vault: &MasterKey) {
    let links = Links {
        base: public_url.trim_end_matches('/').to_owned(),
        key: vault.derive("authentication_links"),
    };
    *LINKS.write().unwrap_or_else(|e| e.into_inner()) = Some(links);
}

fn token_with(key: &str, app: &str, payment: &str) -> String {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{app}/{payment}/authenticate").as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The path of a payment's authentication page (without the token).
pub fn path(app: &str, payment: &str) -> String {
    format!("/pay/authenticate/{app}/{payment}")
}

/// The page's link for a payment that awaits authentication; `None` otherwise (or
/// before `init`). A hosted checkout's payment has none: the provider's page, where
/// the customer is, runs the challenge itself.
pub fn url(p: &PaymentRow) -> Option<String> {
    if p.lifecycle != "requires_action" || matches!(p.method.as_str(), "checkout" | "payment_link")
    {
        return None;
    }
    let guard = LINKS.read().unwrap_or_else(|e| e.into_inner());
    let links = guard.as_ref()?;
    Some(format!(
        "{}{}?token={}",
        links.base,
        path(&p.app_id, &p.id),
        token_with(&links.key, &p.app_id, &p.id)
    ))
}

/// Whether `token` is the payment's link token (compared in constant time).
pub fn verify(app: &str, payment: &str, token: &str) -> bool {
    let guard = LINKS.read().unwrap_or_else(|e| e.into_inner());
    let Some(links) = guard.as_ref() else {
        return false;
    };
    let want = token_with(&links.key, app, payment);
    want.len() == token.len() && bool::from(want.as_bytes().ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(method: &str, lifecycle: &str) -> PaymentRow {
        PaymentRow {
            method: method.into(),
            lifecycle: lifecycle.into(),
            status: lifecycle.into(),
            provider_payment_intent: Some("pi_1".into()),
            ..PaymentRow::initiated(
                "payment_1".into(),
                "app_1".into(),
                "order_1".into(),
                100,
                "usd".into(),
                0,
            )
        }
    }

    #[test]
    fn only_a_payment_waiting_outside_a_hosted_page_has_a_link() {
        let (key, _) = MasterKey::generate();
        init("https://pay.example.com/", &key);
        for method in ["card", "subscription", "payment_intent"] {
            let url = url(&payment(method, "requires_action")).expect(method);
            let token = url
                .strip_prefix("https://pay.example.com/pay/authenticate/app_1/payment_1?token=")
                .unwrap();
            assert!(verify("app_1", "payment_1", token));
            assert!(!verify("app_1", "payment_2", token));
            assert!(!verify("app_1", "payment_1", &token[1..]));
        }
        for (method, lifecycle) in [
            ("card", "pending"),
            ("card", "succeeded"),
            ("card", "failed"),
            ("checkout", "requires_action"),
            ("payment_link", "requires_action"),
        ] {
            assert_eq!(
                url(&payment(method, lifecycle)),
                None,
                "{method} {lifecycle}"
            );
        }
    }

    #[test]
    fn tokens_belong_to_one_payment_of_one_app_under_one_master_key() {
        let (k1, _) = MasterKey::generate();
        let (k2, _) = MasterKey::generate();
        let a = k1.derive("authentication_links");
        let b = k2.derive("authentication_links");
        let t = token_with(&a, "app_1", "payment_1");
        assert_eq!(t.len(), 32);
        assert_eq!(t, token_with(&a, "app_1", "payment_1"));
        assert_ne!(t, token_with(&a, "app_1", "payment_2"));
        assert_ne!(t, token_with(&a, "app_2", "payment_1"));
        assert_ne!(t, token_with(&b, "app_1", "payment_1"));
    }
}
