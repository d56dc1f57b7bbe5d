//! paybridge's domain core: money, ids, keys and roles, secrets, configuration rules,
//! catalog rules and the payment state machines. Pure: no I/O, no clock reads except
//! where an id or key is generated, no database.

pub mod catalog;
pub mod civil;
pub mod config;
pub mod event_types;
pub mod ids;
pub mod invariants;
pub mod keys;
pub mod money;
pub mod net;
pub mod payment;
pub mod retry;
pub mod stripe;
pub mod vault;

pub use config::{Environment, ProviderKind};
pub use money::{Currency, Money};

/// A request value that breaks a rule: which parameter, a stable code, and a message a
/// developer can act on. The HTTP layer turns it into a 4xx in the one error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub param: String,
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(
        param: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Invalid {
        Invalid {
            param: param.into(),
            code,
            message: message.into(),
        }
    }

    pub fn missing(param: &str) -> Invalid {
        Invalid::new(param, "parameter_missing", format!("`{param}` is required"))
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.param, self.code, self.message)
    }
}

impl std::error::Error for Invalid {}
