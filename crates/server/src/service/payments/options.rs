//! Checks of what a caller passes through to the provider: `provider_options` and
//! the redirect URLs.

use std::collections::BTreeMap;

use paybridge_core::Invalid;

/// Parameters `provider_options` may never set: they are paybridge's to decide.
const RESERVED: &[&str] = &[
    "amount",
    "currency",
    "line_items",
    "metadata",
    "mode",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "customer",
    "customer_creation",
    "expires_at",
    "payment_method",
    "confirm",
    "off_session",
    "capture_method",
    "setup_future_usage",
    "application_fee_amount",
    "transfer_data",
    "payment_intent_data[metadata]",
    "payment_intent_data[capture_method]",
    "payment_intent_data[setup_future_usage]",
    "payment_intent_data[application_fee_amount]",
    "payment_intent_data[transfer_data]",
    "subscription_data[metadata]",
    "amount_to_capture",
];

/// Validates pass-through Stripe parameters: `key[sub]=value` pairs that cannot touch
/// the amount, currency, line items or our metadata.
pub fn provider_options(
    options: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, Invalid> {
    if options.len() > 50 {
        return Err(Invalid::new(
            "provider_options",
            "parameter_invalid",
            "at most 50 provider options",
        ));
    }
    let mut out = Vec::with_capacity(options.len());
    for (k, v) in options {
        let param = format!("provider_options[{k}]");
        let well_formed = !k.is_empty()
            && k.len() <= 100
            && k.split('[').enumerate().all(|(i, part)| {
                let part = if i == 0 {
                    part
                } else {
                    part.strip_suffix(']').unwrap_or("!")
                };
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if !well_formed {
            return Err(Invalid::new(param, "parameter_invalid", "a provider option is a Stripe parameter name like `locale` or `payment_intent_data[description]`"));
        }
        if RESERVED.iter().any(|r| {
            k == r
                || k.starts_with(&format!("{r}["))
                || (!r.contains('[') && k.starts_with(&format!("{r}_"))) && k != "customer_email"
        }) {
            return Err(Invalid::new(
                param,
                "parameter_reserved",
                format!("`{k}` is set by paybridge and cannot be overridden"),
            ));
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
                ))
            }
        };
        if value.len() > 500 {
            return Err(Invalid::new(
                param,
                "parameter_invalid",
                "a provider option's value is at most 500 characters",
            ));
        }
        out.push((k.clone(), value));
    }
    Ok(out)
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
