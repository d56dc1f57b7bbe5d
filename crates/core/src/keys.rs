//! API keys, roles and permissions. A key is random (190 bits), shown once, and stored
//! only as its SHA-256 (a slow password hash buys nothing for a key this long, and a
//! plain digest lets the lookup be one indexed equality). What each role may do is
//! decided here and nowhere else.

use std::fmt;

use rand::{distributions::Alphanumeric, Rng};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Environment, Invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The operator: creates apps. Belongs to no app.
    Root,
    /// The app owner: configuration, catalog, refunds, callbacks.
    Admin,
    /// The app's back end: customers, orders, payments, subscriptions.
    Server,
    /// The app's front end: public catalog, checkout, order status.
    Publishable,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Admin => "admin",
            Role::Server => "server",
            Role::Publishable => "publishable",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "root" => Some(Role::Root),
            "admin" => Some(Role::Admin),
            "server" => Some(Role::Server),
            "publishable" => Some(Role::Publishable),
            _ => None,
        }
    }

    /// The role's part of the key prefix: `pb_sk_test_…` is a server key of a test app.
    fn key_tag(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Admin => "ak",
            Role::Server => "sk",
            Role::Publishable => "pk",
        }
    }

    /// What the role may do without any grant.
    pub fn default_permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Root => &[AppsWrite, AppsRead, KeysWrite],
            Role::Admin => &[
                AppsRead,
                KeysWrite,
                ConfigWrite,
                ConfigRead,
                ConfigStatus,
                ProductsWrite,
                ProductsRead,
                CustomersWrite,
                CustomersRead,
                OrdersWrite,
                OrdersRead,
                CheckoutWrite,
                PaymentsWrite,
                PaymentsRead,
                RefundsWrite,
                RefundsRead,
                SubscriptionsWrite,
                SubscriptionsRead,
                ConnectWrite,
                ConnectRead,
                TransfersWrite,
                EventsRead,
                CallbacksWrite,
                CallbacksRead,
                ProviderEventsRead,
                SandboxWrite,
                SandboxSimulate,
            ],
            Role::Server => &[
                ConfigRead,
                ConfigStatus,
                ProductsRead,
                CustomersWrite,
                CustomersRead,
                OrdersWrite,
                OrdersRead,
                CheckoutWrite,
                PaymentsWrite,
                PaymentsRead,
                RefundsRead,
                SubscriptionsWrite,
                SubscriptionsRead,
                // Connected accounts are read, not made, deleted or paid: that is
                // money-out, and goes with the refund rule (admin, or a grant of
                // `connect:write` / `transfers:write`).
                ConnectRead,
                EventsRead,
                SandboxWrite,
                SandboxSimulate,
            ],
            Role::Publishable => &[ConfigStatus, ProductsRead, CheckoutWrite, SandboxWrite],
        }
    }
}

/// One thing a key may do. Stored as its string (`refunds:write`), as Stripe's
/// restricted keys name theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    AppsWrite,
    AppsRead,
    KeysWrite,
    ConfigWrite,
    ConfigRead,
    ConfigStatus,
    ProductsWrite,
    ProductsRead,
    CustomersWrite,
    CustomersRead,
    OrdersWrite,
    OrdersRead,
    CheckoutWrite,
    PaymentsWrite,
    PaymentsRead,
    RefundsWrite,
    RefundsRead,
    SubscriptionsWrite,
    SubscriptionsRead,
    /// Create and delete connected accounts.
    ConnectWrite,
    ConnectRead,
    /// Move the platform's money to a connected account.
    TransfersWrite,
    EventsRead,
    CallbacksWrite,
    CallbacksRead,
    ProviderEventsRead,
    /// What the sandbox's paying page does: complete, expire or confirm a payment.
    SandboxWrite,
    /// What only the provider or the app's own backend would cause on a sandbox app: a
    /// subscription's renewal, a dispute. Not for the publishable key.
    SandboxSimulate,
}

const PERMISSION_NAMES: &[(Permission, &str)] = &[
    (Permission::AppsWrite, "apps:write"),
    (Permission::AppsRead, "apps:read"),
    (Permission::KeysWrite, "keys:write"),
    (Permission::ConfigWrite, "payment_config:write"),
    (Permission::ConfigRead, "payment_config:read"),
    (Permission::ConfigStatus, "payment_config:status"),
    (Permission::ProductsWrite, "products:write"),
    (Permission::ProductsRead, "products:read"),
    (Permission::CustomersWrite, "customers:write"),
    (Permission::CustomersRead, "customers:read"),
    (Permission::OrdersWrite, "orders:write"),
    (Permission::OrdersRead, "orders:read"),
    (Permission::CheckoutWrite, "checkout:write"),
    (Permission::PaymentsWrite, "payments:write"),
    (Permission::PaymentsRead, "payments:read"),
    (Permission::RefundsWrite, "refunds:write"),
    (Permission::RefundsRead, "refunds:read"),
    (Permission::SubscriptionsWrite, "subscriptions:write"),
    (Permission::SubscriptionsRead, "subscriptions:read"),
    (Permission::ConnectWrite, "connect:write"),
    (Permission::ConnectRead, "connect:read"),
    (Permission::TransfersWrite, "transfers:write"),
    (Permission::EventsRead, "events:read"),
    (Permission::CallbacksWrite, "callbacks:write"),
    (Permission::CallbacksRead, "callbacks:read"),
    (Permission::ProviderEventsRead, "provider_events:read"),
    (Permission::SandboxWrite, "sandbox:write"),
    (Permission::SandboxSimulate, "sandbox:simulate"),
];

impl Permission {
    pub fn as_str(self) -> &'static str {
        PERMISSION_NAMES
            .iter()
            .find(|(p, _)| *p == self)
            .map(|(_, n)| *n)
            .unwrap_or("unknown")
    }

    pub fn parse(s: &str) -> Option<Permission> {
        PERMISSION_NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(p, _)| *p)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks the extra permissions asked for a new key. Only server keys take grants: a
/// publishable key lives in browsers, and admin and root already hold everything.
pub fn validate_grants(role: Role, requested: &[String]) -> Result<Vec<Permission>, Invalid> {
    if requested.is_empty() {
        return Ok(Vec::new());
    }
    if role != Role::Server {
        return Err(Invalid::new(
            "permissions",
            "invalid_grant",
            format!(
                "only server keys take extra permissions, not {} keys",
                role.as_str()
            ),
        ));
    }
    // Managing keys stays with admin keys: a server key that could mint keys could
    // mint an admin key, or revoke the admin's.
    let grantable = Role::Admin.default_permissions();
    let mut granted: Vec<Permission> = requested
        .iter()
        .map(|name| {
            let p = Permission::parse(name).ok_or_else(|| {
                Invalid::new(
                    "permissions",
                    "invalid_permission",
                    format!("unknown permission `{name}`"),
                )
            })?;
            if !grantable.contains(&p) || p == Permission::KeysWrite {
                return Err(Invalid::new(
                    "permissions",
                    "invalid_permission",
                    format!("`{name}` cannot be granted to a server key"),
                ));
            }
            Ok(p)
        })
        .collect::<Result<_, _>>()?;
    granted.sort_by_key(|p| p.as_str());
    granted.dedup();
    Ok(granted)
}

/// Who is calling, as established from the bearer key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: Option<String>,
    pub app_id: Option<crate::ids::AppId>,
    pub environment: Option<Environment>,
    pub role: Role,
    pub grants: Vec<Permission>,
}

impl Principal {
    pub fn root() -> Principal {
        Principal {
            key_id: None,
            app_id: None,
            environment: None,
            role: Role::Root,
            grants: Vec::new(),
        }
    }

    pub fn can(&self, p: Permission) -> bool {
        self.role.default_permissions().contains(&p) || self.grants.contains(&p)
    }

    /// Everything this key may do: its role's permissions and its grants.
    pub fn permissions(&self) -> Vec<&'static str> {
        PERMISSION_NAMES
            .iter()
            .filter(|(p, _)| self.can(*p))
            .map(|(_, n)| *n)
            .collect()
    }
}

/// A freshly minted key: the secret is shown once, then only its hash remains.
pub struct NewKey {
    pub secret: SecretString,
    pub hash: String,
    /// `pb_sk_test_…wxyz`, enough to recognise a key in a list.
    pub redacted: String,
}

impl NewKey {
    pub fn generate(role: Role, environment: Option<Environment>) -> NewKey {
        let random: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let prefix = match environment {
            Some(env) => format!("pb_{}_{}_", role.key_tag(), env.as_str()),
            None => format!("pb_{}_", role.key_tag()),
        };
        let secret = format!("{prefix}{random}");
        let redacted = format!("{prefix}…{}", &random[random.len() - 4..]);
        NewKey {
            hash: hash_key(&secret),
            secret: SecretString::from(secret),
            redacted,
        }
    }

    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

/// The stored form of a key: lowercase hex SHA-256.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hashed() {
        let a = NewKey::generate(Role::Server, Some(Environment::Test));
        let b = NewKey::generate(Role::Server, Some(Environment::Test));
        assert!(a.expose().starts_with("pb_sk_test_"));
        assert_eq!(a.expose().len(), "pb_sk_test_".len() + 32);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.hash, hash_key(a.expose()));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.redacted.contains(&a.expose()[11..30]));
        assert!(NewKey::generate(Role::Publishable, Some(Environment::Live))
            .expose()
            .starts_with("pb_pk_live_"));
        assert!(format!("{:?}", a.secret).contains("REDACTED"));
    }

    #[test]
    fn roles_hold_the_documented_permissions() {
        let p = |role| Principal {
            key_id: None,
            app_id: None,
            environment: None,
            role,
            grants: vec![],
        };
        assert!(p(Role::Admin).can(Permission::RefundsWrite));
        assert!(!p(Role::Server).can(Permission::RefundsWrite));
        // Money-out goes with the refund rule: admin, or a server key with a grant.
        assert!(!p(Role::Server).can(Permission::TransfersWrite));
        assert!(!p(Role::Server).can(Permission::ConnectWrite));
        assert!(p(Role::Server).can(Permission::ConnectRead));
        assert!(p(Role::Admin).can(Permission::TransfersWrite));
        assert!(p(Role::Admin).can(Permission::ConnectWrite));
        assert!(!p(Role::Publishable).can(Permission::ProductsWrite));
        assert!(!p(Role::Publishable).can(Permission::ConfigWrite));
        assert!(p(Role::Publishable).can(Permission::CheckoutWrite));
        assert!(!p(Role::Admin).can(Permission::AppsWrite));
        let mut granted = p(Role::Server);
        granted.grants = validate_grants(
            Role::Server,
            &[
                "refunds:write".into(),
                "transfers:write".into(),
                "connect:write".into(),
            ],
        )
        .unwrap();
        assert!(granted.can(Permission::RefundsWrite));
        assert!(granted.can(Permission::TransfersWrite));
        assert!(granted.can(Permission::ConnectWrite));
    }

    #[test]
    fn grants_are_checked() {
        assert!(validate_grants(Role::Publishable, &["refunds:write".into()]).is_err());
        assert!(validate_grants(Role::Server, &["apps:write".into()]).is_err());
        assert!(validate_grants(Role::Server, &["nope".into()]).is_err());
        for (p, name) in PERMISSION_NAMES {
            assert_eq!(Permission::parse(name), Some(*p));
            assert_eq!(p.as_str(), *name);
        }
    }
}
