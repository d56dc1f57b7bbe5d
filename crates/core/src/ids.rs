//! Prefixed, opaque ids. The prefixes are whole words Stripe never uses, so a paybridge
//! id is never mistaken for a Stripe one (`order_…` is ours, `pi_…` is Stripe's). The
//! random part is a lowercased ULID: 48 bits of milliseconds then 80 random bits, so ids
//! of one kind sort by creation time, which is what list pagination relies on. Within one
//! process they are strictly increasing, also within one millisecond (`ulid::Generator`
//! adds one to the random part), so two objects made in the same millisecond list in
//! the order they were made.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The next ULID of this process: strictly greater than the last one.
fn next_ulid() -> ulid::Ulid {
    use std::sync::Mutex;
    static GEN: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GEN.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        // Only when 2^80 ids were made in one millisecond; a fresh ULID is then fine.
        .unwrap_or_else(|_| ulid::Ulid::new())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(format!("{}_{}", $prefix, next_ulid().to_string().to_ascii_lowercase()))
            }

            /// Accepts any string with the right prefix; whether it exists is the
            /// storage's question.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?.strip_prefix('_')?;
                (!rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then(|| $name(s.to_owned()))
            }

            /// Wraps a value read back from our own storage.
            pub fn from_stored(s: String) -> Self {
                $name(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(AppId, "app");
id_type!(KeyId, "key");
id_type!(ProductId, "product");
id_type!(CustomerId, "customer");
id_type!(CardId, "savedcard");
id_type!(OrderId, "order");
id_type!(PaymentId, "payment");
id_type!(CheckoutId, "checkout");
id_type!(RefundId, "refund");
id_type!(SubscriptionId, "subscription");
id_type!(AccountId, "account");
id_type!(TransferId, "transfer");
id_type!(EventId, "event");
id_type!(EndpointId, "endpoint");
id_type!(DeliveryId, "delivery");
id_type!(
    /// A short-lived proof, minted by a server key, that a browser may act for one customer.
    CustomerSessionId,
    "customersession"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_time() {
        let a = OrderId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = OrderId::generate();
        assert!(a.as_str().starts_with("order_"));
        assert_eq!(a.as_str().len(), "order_".len() + 26);
        assert!(a < b, "{a} < {b}");
        assert_eq!(OrderId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(OrderId::parse("pi_123"), None);
        assert_eq!(OrderId::parse("order_"), None);
        assert_eq!(OrderId::parse("orderx_abc"), None);
        assert_eq!(OrderId::parse("order_a/b"), None);
    }

    #[test]
    fn ids_made_in_one_millisecond_keep_their_order() {
        let ids: Vec<ProductId> = (0..2000).map(|_| ProductId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
