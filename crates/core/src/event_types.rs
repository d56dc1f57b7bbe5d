//! The event types paybridge tells apps about (callbacks, streams, logs).

/// Every type of event paybridge emits.
pub const ALL: &[&str] = &[
    "order.paid",
    "order.partially_refunded",
    "order.refunded",
    "order.overpaid",
    "payment.pending",
    "payment.requires_action",
    "payment.processing",
    "payment.requires_capture",
    "payment.succeeded",
    "payment.failed",
    "payment.canceled",
    "payment.expired",
    "payment.disputed",
    "payment.partially_refunded",
    "payment.refunded",
    "refund.pending",
    "refund.succeeded",
    "refund.failed",
    "checkout.completed",
    "checkout.expired",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "subscription.payment_succeeded",
    "subscription.payment_failed",
    "callback_endpoint.disabled",
    "ledger.anomaly",
];

/// Whether `t` is an event type, or `*` (all of them).
pub fn is_known(t: &str) -> bool {
    t == "*" || ALL.contains(&t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_dotted() {
        let mut v = super::ALL.to_vec();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), super::ALL.len());
        assert!(super::ALL.iter().all(|t| t.contains('.')));
        assert!(
            super::is_known("*")
                && super::is_known("payment.succeeded")
                && super::is_known("payment.requires_action")
                && !super::is_known("payment.nope")
        );
    }
}
