//! Checks of what a caller passes through to the provider: `provider_options` and
//! the redirect URLs.
//!
//! `provider_options` is an allowlist, per role. A browser (publishable key) may set
//! how the hosted page looks and what it collects; the app's back end (server or
//! admin key) may also set what appears on the customer's statement and receipt,
//! promotion codes and which saved cards are offered. Whatever decides who is paid,
//! how much or when (fees, destinations, trials, capture, saving cards, amounts) is
//! never a pass-through: it is paybridge's own fields or nothing. An option on no list
//! is refused and named, so a typo or a new Stripe parameter is never sent unexamined.

use std::collections::BTreeMap;

use paybridge_core::keys::Role;
use paybridge_core::Invalid;

use crate::error::ApiError;

/// Who is setting the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A publishable key: anyone holding the storefront's JavaScript.
    Browser,
    /// A server or admin key: the app's own back end.
    Server,
}

impl Trust {
    pub fn of(role: Role) -> Trust {
        match role {
            Role::Publishable => Trust::Browser,
            Role::Root | Role::Admin | Role::Server => Trust::Server,
        }
    }
}

/// Which provider object the options go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Checkout Session (`POST /v1/checkout/sessions`, `method: payment_link`).
    CheckoutSession,
    /// A PaymentIntent (`method: payment_intent` or `card`; server keys only).
    PaymentIntent,
}

// Patterns: `#` stands for a list index (`0`, `1`, …), `**` for anything below.

/// Checkout Session parameters a publishable key may set: the page's language and
/// texts, and what it collects from the customer.
pub const CHECKOUT_BROWSER: &[&str] = &[
    "locale",
    "submit_type",
    "billing_address_collection",
    "shipping_address_collection[allowed_countries][#]",
    "phone_number_collection[enabled]",
    "tax_id_collection[enabled]",
    "tax_id_collection[required]",
    "consent_collection[**]",
    "custom_text[**]",
    "custom_fields[#][**]",
    "customer_email",
    "payment_method_types[#]",
];

/// Checkout Session parameters that only a server or admin key may set (besides the
/// browser's): they change what the customer pays, what their statement and receipt
/// say, what is written onto a saved customer, or which saved cards are offered.
pub const CHECKOUT_SERVER: &[&str] = &[
    "payment_method_configuration",
    "payment_method_options[card][request_three_d_secure]",
    "saved_payment_method_options[payment_method_save]",
    "saved_payment_method_options[allow_redisplay_filters][#]",
    "customer_update[address]",
    "customer_update[name]",
    "customer_update[shipping]",
    "invoice_creation[enabled]",
    "invoice_creation[invoice_data][description]",
    "invoice_creation[invoice_data][footer]",
    "payment_intent_data[description]",
    "payment_intent_data[receipt_email]",
    "payment_intent_data[statement_descriptor]",
    "payment_intent_data[statement_descriptor_suffix]",
    "payment_intent_data[shipping][**]",
    "payment_intent_data[transfer_group]",
    "subscription_data[description]",
];

/// PaymentIntent parameters a server or admin key may set (`POST /v1/payments`).
pub const INTENT_SERVER: &[&str] = &[
    "description",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "shipping[**]",
    "transfer_group",
    "payment_method_options[card][request_three_d_secure]",
];

/// Parameters paybridge decides, or that move money elsewhere: refused whoever asks,
/// with what to use instead. A parameter matches its entry or anything below it.
const RESERVED: &[(&str, &str)] = &[
    ("amount", "paybridge prices the order itself"),
    ("currency", "paybridge prices the order itself"),
    ("line_items", "paybridge prices the order itself"),
    ("mode", "use `mode`"),
    ("metadata", "use `metadata`"),
    ("payment_intent_data[metadata]", "use `metadata`"),
    ("subscription_data[metadata]", "use `metadata`"),
    ("success_url", "use `success_url`"),
    ("cancel_url", "use `cancel_url`"),
    (
        "return_url",
        "paybridge uses hosted pages with `success_url`",
    ),
    ("ui_mode", "paybridge uses hosted pages with `success_url`"),
    (
        "redirect_on_completion",
        "paybridge uses hosted pages with `success_url`",
    ),
    ("expires_at", "use `expires_in`"),
    ("client_reference_id", "it is the order's id"),
    ("customer", "use `customer`"),
    ("customer_creation", "use `customer` and `save_card`"),
    ("payment_method", "use `payment_method`"),
    ("confirm", "paybridge confirms saved-card charges itself"),
    (
        "off_session",
        "paybridge charges saved cards off-session itself",
    ),
    ("capture_method", "use `capture`"),
    ("payment_intent_data[capture_method]", "use `capture`"),
    ("amount_to_capture", "use `POST /v1/payments/{id}/capture`"),
    ("setup_future_usage", "use `save_card`"),
    ("payment_intent_data[setup_future_usage]", "use `save_card`"),
    (
        "payment_method_options[card][setup_future_usage]",
        "use `save_card`",
    ),
    ("application_fee_amount", "use `application_fee_amount`"),
    (
        "payment_intent_data[application_fee_amount]",
        "use `application_fee_amount`",
    ),
    ("transfer_data", "use `transfer_destination`"),
    (
        "payment_intent_data[transfer_data]",
        "use `transfer_destination`",
    ),
    (
        "on_behalf_of",
        "paybridge does not settle on behalf of connected accounts",
    ),
    (
        "payment_intent_data[on_behalf_of]",
        "paybridge does not settle on behalf of connected accounts",
    ),
    (
        "subscription_data[on_behalf_of]",
        "paybridge does not settle on behalf of connected accounts",
    ),
    (
        "subscription_data[application_fee_percent]",
        "paybridge takes no fees on subscriptions",
    ),
    (
        "subscription_data[transfer_data]",
        "paybridge takes no fees on subscriptions",
    ),
    (
        "subscription_data[trial_period_days]",
        "paybridge does not start subscriptions with a trial",
    ),
    (
        "subscription_data[trial_end]",
        "paybridge does not start subscriptions with a trial",
    ),
    (
        "subscription_data[trial_settings]",
        "paybridge does not start subscriptions with a trial",
    ),
    (
        "subscription_data[billing_cycle_anchor]",
        "the first period starts when the checkout is paid",
    ),
    ("discounts", "paybridge prices the order itself"),
    (
        "allow_promotion_codes",
        "paybridge prices the order itself: a promotion code would charge less than the order's total, which the ledger refuses to book",
    ),
    ("shipping_options", "paybridge prices the order itself"),
    ("automatic_tax", "paybridge prices the order itself"),
    (
        "after_expiration",
        "an expired checkout is not recovered behind paybridge's back",
    ),
];

/// Whether `key` (`a[b][0]`, split as `["a", "b", "0"]`) matches `pattern`.
fn matches(pattern: &str, key: &[&str]) -> bool {
    let pat = split(pattern);
    let mut k = key.iter();
    for (i, p) in pat.iter().enumerate() {
        if *p == "**" {
            // Anything below, but something.
            return i < key.len();
        }
        match k.next() {
            Some(seg) if *p == "#" => {
                if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
                    return false;
                }
            }
            Some(seg) if seg == p => {}
            _ => return false,
        }
    }
    k.next().is_none()
}

/// Whether `key` is `entry` or below it.
fn under(entry: &str, key: &[&str]) -> bool {
    let e = split(entry);
    key.len() >= e.len() && key[..e.len()] == e[..]
}

/// `a[b][c]` as `["a", "b", "c"]`; `None` if it is not of that form.
fn split(key: &str) -> Vec<&str> {
    let mut parts = key.split('[');
    let mut out = vec![parts.next().unwrap_or("")];
    out.extend(parts.map(|p| p.strip_suffix(']').unwrap_or("!")));
    out
}

fn well_formed(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 100
        && split(key).iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// The lists that apply: (what this caller may set, what only a server key may set).
fn lists(target: Target, trust: Trust) -> (Vec<&'static str>, &'static [&'static str]) {
    match (target, trust) {
        (Target::CheckoutSession, Trust::Browser) => (CHECKOUT_BROWSER.to_vec(), CHECKOUT_SERVER),
        (Target::CheckoutSession, Trust::Server) => (
            CHECKOUT_BROWSER
                .iter()
                .chain(CHECKOUT_SERVER)
                .copied()
                .collect(),
            &[],
        ),
        (Target::PaymentIntent, Trust::Browser) => (Vec::new(), INTENT_SERVER),
        (Target::PaymentIntent, Trust::Server) => (INTENT_SERVER.to_vec(), &[]),
    }
}

/// Validates pass-through Stripe parameters (`key[sub]=value` pairs) against the
/// allowlist for `target` and the caller's `trust`.
pub fn provider_options(
    options: &BTreeMap<String, serde_json::Value>,
    target: Target,
    trust: Trust,
) -> Result<Vec<(String, String)>, ApiError> {
    if options.len() > 50 {
        return Err(Invalid::new(
            "provider_options",
            "parameter_invalid",
            "at most 50 provider options",
        )
        .into());
    }
    let (allowed, server_only) = lists(target, trust);
    let mut out = Vec::with_capacity(options.len());
    for (k, v) in options {
        let param = format!("provider_options[{k}]");
        if !well_formed(k) {
            return Err(Invalid::new(param, "parameter_invalid", "a provider option is a Stripe parameter name like `locale` or `payment_intent_data[description]`").into());
        }
        let key = split(k);
        if let Some((_, instead)) = RESERVED.iter().find(|(r, _)| under(r, &key)) {
            return Err(Invalid::new(
                param,
                "parameter_reserved",
                format!("`{k}` cannot be passed through: {instead}"),
            )
            .into());
        }
        if !allowed.iter().any(|p| matches(p, &key)) {
            if server_only.iter().any(|p| matches(p, &key)) {
                return Err(ApiError::forbidden(format!(
                    "`{k}` may be set by the app's server (a server key), not by a publishable key"
                ))
                .with_param(param));
            }
            return Err(Invalid::new(
                param,
                "parameter_unknown",
                format!("`{k}` is not a provider option paybridge passes through here (see `provider_options` in the API reference)"),
            )
            .into());
        }
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                return Err(Invalid::new(
                    param,
                    "parameter_invalid",
                    "a provider option's value is a string, number or boolean",
                )
                .into())
            }
        };
        if value.len() > 500 {
            return Err(Invalid::new(
                param,
                "parameter_invalid",
                "a provider option's value is at most 500 characters",
            )
            .into());
        }
        out.push((k.clone(), value));
    }
    Ok(out)
}

/// The allowlist as the API reference shows it (the `provider_options` field's
/// description in `/openapi.json` is written from the lists themselves).
pub fn describe(target: Target) -> String {
    let list = |l: &[&str]| {
        l.iter()
            .map(|p| format!("`{}`", p.replace("[#]", "[N]").replace("[**]", "[…]")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let never: Vec<&str> = {
        let mut v: Vec<&str> = RESERVED.iter().map(|(r, _)| *r).collect();
        v.dedup();
        v
    };
    match target {
        Target::CheckoutSession => format!(
            "Further Stripe Checkout Session parameters, as `{{\"name[sub]\": value}}` \
             (`N` is a list index, `[…]` anything below). An allowlist, per key: anything \
             else is refused, naming the option (422 `parameter_unknown`). \
             Any key (publishable too): {}. \
             Server and admin keys only (a publishable key gets 403): {}. \
             Never, whoever asks (422 `parameter_reserved`; paybridge's own fields decide \
             them where it has any): {}.",
            list(CHECKOUT_BROWSER),
            list(CHECKOUT_SERVER),
            list(&never),
        ),
        Target::PaymentIntent => format!(
            "Further Stripe parameters, as `{{\"name[sub]\": value}}`. With \
             `method: payment_link` these are Checkout Session parameters, as for \
             `POST /v1/checkout/sessions`: {}, {}. With `payment_intent` and `card` they \
             are PaymentIntent parameters: {}. Anything else is refused, naming the option \
             (422 `parameter_unknown`); never (422 `parameter_reserved`): {}.",
            list(CHECKOUT_BROWSER),
            list(CHECKOUT_SERVER),
            list(INTENT_SERVER),
            list(&never),
        ),
    }
}

pub fn validate_url(param: &str, url: &str) -> Result<(), Invalid> {
    let ok = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .is_some();
    if !ok || url.len() > 2048 {
        return Err(Invalid::new(
            param,
            "url_invalid",
            "give an absolute http(s) URL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    /// A refusal as the tests compare it: status, code and the parameter named.
    type Refusal = (StatusCode, String, Option<String>);

    fn check(
        target: Target,
        trust: Trust,
        opts: serde_json::Value,
    ) -> Result<Vec<(String, String)>, Refusal> {
        let map: BTreeMap<String, serde_json::Value> = serde_json::from_value(opts).unwrap();
        provider_options(&map, target, trust).map_err(|e| (e.status, e.code, e.param))
    }

    #[test]
    fn a_browser_sets_presentation_and_collection_only() {
        let ok = check(
            Target::CheckoutSession,
            Trust::Browser,
            json!({"locale": "fr", "custom_text[submit][message]": "Merci",
                   "shipping_address_collection[allowed_countries][0]": "FR",
                   "consent_collection[terms_of_service]": "required",
                   "custom_fields[0][label][custom]": "Gift note",
                   "phone_number_collection[enabled]": true,
                   "payment_method_types[1]": "link"}),
        )
        .unwrap();
        assert_eq!(ok.len(), 7);
        for (k, code) in [
            ("allow_promotion_codes", StatusCode::UNPROCESSABLE_ENTITY),
            (
                "saved_payment_method_options[allow_redisplay_filters][0]",
                StatusCode::FORBIDDEN,
            ),
            (
                "payment_intent_data[statement_descriptor]",
                StatusCode::FORBIDDEN,
            ),
            (
                "payment_intent_data[on_behalf_of]",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "subscription_data[trial_period_days]",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "subscription_data[transfer_data][destination]",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "subscription_data[application_fee_percent]",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ("locale[x]", StatusCode::UNPROCESSABLE_ENTITY),
            (
                "shipping_address_collection[allowed_countries][x]",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ("custom_fields[0]", StatusCode::UNPROCESSABLE_ENTITY),
            ("made_up", StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            let err = check(Target::CheckoutSession, Trust::Browser, json!({k: "1"})).unwrap_err();
            assert_eq!(err.0, code, "{k}: {err:?}");
            assert_eq!(
                err.2.as_deref(),
                Some(format!("provider_options[{k}]").as_str())
            );
        }
    }

    #[test]
    fn a_server_adds_its_own_and_never_the_reserved() {
        assert!(check(
            Target::CheckoutSession,
            Trust::Server,
            json!({"locale": "de",
                   "saved_payment_method_options[allow_redisplay_filters][0]": "always",
                   "payment_intent_data[shipping][address][line1]": "1 Main St"}),
        )
        .is_ok());
        for k in [
            "amount",
            "metadata[pb_payment]",
            "line_items[0][price]",
            "payment_intent_data[transfer_data][destination]",
            "payment_intent_data[application_fee_amount]",
            "subscription_data[trial_end]",
            "customer",
            "customer_creation",
            "payment_method_options[card][setup_future_usage]",
        ] {
            let err = check(Target::CheckoutSession, Trust::Server, json!({k: "1"})).unwrap_err();
            assert_eq!(err.1, "parameter_reserved", "{k}");
        }
        // A PaymentIntent takes its own names, and never a checkout's.
        assert!(check(
            Target::PaymentIntent,
            Trust::Server,
            json!({"statement_descriptor": "SHOP", "shipping[name]": "Lin"})
        )
        .is_ok());
        let err = check(
            Target::PaymentIntent,
            Trust::Server,
            json!({"locale": "fr"}),
        )
        .unwrap_err();
        assert_eq!(err.1, "parameter_unknown");
        let err = check(
            Target::PaymentIntent,
            Trust::Server,
            json!({"on_behalf_of": "acct_1"}),
        )
        .unwrap_err();
        assert_eq!(err.1, "parameter_reserved");
    }

    #[test]
    fn names_are_checked_before_the_lists() {
        let err = check(
            Target::CheckoutSession,
            Trust::Server,
            json!({"bad key": "x"}),
        )
        .unwrap_err();
        assert_eq!(err.1, "parameter_invalid");
        let err = check(
            Target::CheckoutSession,
            Trust::Server,
            json!({"locale": {"a": 1}}),
        )
        .unwrap_err();
        assert_eq!(err.1, "parameter_invalid");
        assert!(matches(
            "custom_text[**]",
            &split("custom_text[submit][message]")
        ));
        assert!(!matches("custom_text[**]", &split("custom_text")));
        assert!(matches(
            "discounts[#][coupon]",
            &split("discounts[12][coupon]")
        ));
        assert!(!matches(
            "discounts[#][coupon]",
            &split("discounts[][coupon]")
        ));
    }
}
