//! Rules for an app's payment configuration: which provider keys fit which
//! environment. Mixing test and live keys is a classic costly mistake, so it is refused
//! here with the offending parameter named.

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// An app is one environment, like Stripe's test and live modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Test,
    Live,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "test",
            Environment::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Environment> {
        match s {
            "test" => Some(Environment::Test),
            "live" => Some(Environment::Live),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Stripe,
    Sandbox,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Stripe => "stripe",
            ProviderKind::Sandbox => "sandbox",
        }
    }

    pub fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "stripe" => Some(ProviderKind::Stripe),
            "sandbox" => Some(ProviderKind::Sandbox),
            _ => None,
        }
    }
}

fn key_mode(key: &str) -> Option<Environment> {
    let rest = key
        .strip_prefix("sk_")
        .or_else(|| key.strip_prefix("rk_"))
        .or_else(|| key.strip_prefix("pk_"))?;
    if rest.starts_with("test_") {
        Some(Environment::Test)
    } else if rest.starts_with("live_") {
        Some(Environment::Live)
    } else {
        None
    }
}

/// Checks provider keys against the provider and the app's environment.
pub fn validate_provider_keys(
    env: Environment,
    provider: ProviderKind,
    public_key: Option<&str>,
    secret_key: Option<&str>,
) -> Result<(), Invalid> {
    if provider == ProviderKind::Sandbox && env == Environment::Live {
        return Err(Invalid::new(
            "provider",
            "livemode_mismatch",
            "a live app cannot use the sandbox provider; configure `stripe` with live keys",
        ));
    }
    if provider == ProviderKind::Stripe {
        let pk = public_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Invalid::missing("provider_public_key"))?;
        let sk = secret_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Invalid::missing("provider_secret_key"))?;
        if !pk.starts_with("pk_") {
            return Err(Invalid::new(
                "provider_public_key",
                "invalid_key",
                "the publishable key must start with `pk_` (never put a secret key here: it is handed to browsers)",
            ));
        }
        if !(sk.starts_with("sk_") || sk.starts_with("rk_")) {
            return Err(Invalid::new(
                "provider_secret_key",
                "invalid_key",
                "the secret key must start with `sk_` (or `rk_` for a restricted key)",
            ));
        }
    }
    for (param, key) in [
        ("provider_public_key", public_key),
        ("provider_secret_key", secret_key),
    ] {
        let Some(key) = key else { continue };
        if key.len() > 255 || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid::new(
                param,
                "invalid_key",
                "a provider key is at most 255 characters without spaces",
            ));
        }
        if let Some(mode) = key_mode(key) {
            if mode != env {
                return Err(Invalid::new(
                    param,
                    "livemode_mismatch",
                    format!(
                        "this is a {} app, but the key is a Stripe {} mode key",
                        env.as_str(),
                        mode.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A Stripe webhook signing secret looks like `whsec_…`.
pub fn validate_signing_secret(secret: &str) -> Result<(), Invalid> {
    if !secret.starts_with("whsec_") || secret.len() < 10 || secret.len() > 255 {
        return Err(Invalid::new(
            "signing_secret",
            "invalid_signing_secret",
            "a webhook signing secret starts with `whsec_` (Stripe Dashboard → Developers → Webhooks → your endpoint)",
        ));
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::new(
            "signing_secret",
            "invalid_signing_secret",
            "a webhook signing secret has no spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Environment::*;
    use ProviderKind::*;

    #[test]
    fn live_apps_take_only_live_keys() {
        let ok = validate_provider_keys(Live, Stripe, Some("pk_live_a"), Some("sk_live_b"));
        assert!(ok.is_ok());
        let e =
            validate_provider_keys(Live, Stripe, Some("pk_live_a"), Some("sk_test_b")).unwrap_err();
        assert_eq!(e.param, "provider_secret_key");
        assert_eq!(e.code, "livemode_mismatch");
        let e =
            validate_provider_keys(Live, Stripe, Some("pk_test_a"), Some("sk_live_b")).unwrap_err();
        assert_eq!(e.param, "provider_public_key");
        let e = validate_provider_keys(Live, Sandbox, None, None).unwrap_err();
        assert_eq!(e.param, "provider");
    }

    #[test]
    fn test_apps_take_only_test_keys_or_the_sandbox() {
        assert!(validate_provider_keys(Test, Stripe, Some("pk_test_a"), Some("rk_test_b")).is_ok());
        assert!(validate_provider_keys(Test, Sandbox, None, None).is_ok());
        let e =
            validate_provider_keys(Test, Stripe, Some("pk_test_a"), Some("sk_live_b")).unwrap_err();
        assert_eq!(e.param, "provider_secret_key");
        let e = validate_provider_keys(Test, Sandbox, Some("pk_live_a"), None).unwrap_err();
        assert_eq!(e.param, "provider_public_key");
    }

    #[test]
    fn swapped_or_missing_keys_are_refused() {
        let e =
            validate_provider_keys(Test, Stripe, Some("sk_test_a"), Some("sk_test_b")).unwrap_err();
        assert_eq!(e.param, "provider_public_key");
        let e = validate_provider_keys(Test, Stripe, Some("pk_test_a"), None).unwrap_err();
        assert_eq!(e.param, "provider_secret_key");
        assert!(validate_signing_secret("whsec_abcdef").is_ok());
        assert!(validate_signing_secret("sk_test_abcdef").is_err());
        assert!(validate_signing_secret("whsec_ ab cdef").is_err());
    }
}
