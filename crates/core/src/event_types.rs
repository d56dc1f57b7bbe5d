//! The event types paybridge tells apps about (callbacks, streams, logs).
//!
//! Every event paybridge appends has one of these types: the ones that follow a status
//! are named by the functions below (whose matches name every status), and the server
//! names the others as literals that its tests collect and check against [`ALL`].

use crate::payment::{CheckoutStatus, OrderStatus, PaymentStatus, RefundStatus};

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

/// The event a payment's move to status `s` is told by. None for `initiated`: every
/// payment starts there and its lifecycle only rises (`payment::apply`), so no change
/// ends there.
pub fn of_payment(s: PaymentStatus) -> Option<&'static str> {
    Some(match s {
        PaymentStatus::Initiated => return None,
        PaymentStatus::Pending => "payment.pending",
        PaymentStatus::RequiresAction => "payment.requires_action",
        PaymentStatus::Processing => "payment.processing",
        PaymentStatus::RequiresCapture => "payment.requires_capture",
        PaymentStatus::Succeeded => "payment.succeeded",
        PaymentStatus::PartiallyRefunded => "payment.partially_refunded",
        PaymentStatus::Refunded => "payment.refunded",
        PaymentStatus::Failed => "payment.failed",
        PaymentStatus::Canceled => "payment.canceled",
        PaymentStatus::Expired => "payment.expired",
        PaymentStatus::Disputed => "payment.disputed",
    })
}

/// The event an order's move to status `s` is told by. None for `open`: an order
/// starts open, and once paid it stays covered (what its payments captured only grows,
/// and a surplus given back is at most what came in beyond the total).
pub fn of_order(s: OrderStatus) -> Option<&'static str> {
    Some(match s {
        OrderStatus::Open => return None,
        OrderStatus::Paid => "order.paid",
        OrderStatus::PartiallyRefunded => "order.partially_refunded",
        OrderStatus::Refunded => "order.refunded",
    })
}

/// The event a checkout's move to status `s` is told by. None for `open`, where every
/// checkout starts and which it never returns to (`CheckoutStatus::apply`).
pub fn of_checkout(s: CheckoutStatus) -> Option<&'static str> {
    Some(match s {
        CheckoutStatus::Open => return None,
        CheckoutStatus::Complete => "checkout.completed",
        CheckoutStatus::Expired => "checkout.expired",
    })
}

/// The event a refund's move to status `s` is told by (a canceled refund is told as
/// failed: either way no money went back).
pub fn of_refund(s: RefundStatus) -> &'static str {
    match s {
        RefundStatus::Pending => "refund.pending",
        RefundStatus::Succeeded => "refund.succeeded",
        RefundStatus::Failed | RefundStatus::Canceled => "refund.failed",
    }
}

/// Whether `t` is an event type, or `*` (all of them).
pub fn is_known(t: &str) -> bool {
    t == "*" || ALL.contains(&t)
}

#[cfg(test)]
mod tests {
    use crate::payment::{CheckoutStatus, OrderStatus, PaymentStatus, RefundStatus};

    /// The types named after a status are all listed.
    #[test]
    fn status_events_are_listed() {
        let named = PaymentStatus::ALL
            .iter()
            .filter_map(|s| super::of_payment(*s))
            .chain(OrderStatus::ALL.iter().filter_map(|s| super::of_order(*s)))
            .chain(
                [
                    CheckoutStatus::Open,
                    CheckoutStatus::Expired,
                    CheckoutStatus::Complete,
                ]
                .iter()
                .filter_map(|s| super::of_checkout(*s)),
            )
            .chain(
                [
                    RefundStatus::Pending,
                    RefundStatus::Succeeded,
                    RefundStatus::Failed,
                    RefundStatus::Canceled,
                ]
                .iter()
                .map(|s| super::of_refund(*s)),
            );
        let mut n = 0;
        for t in named {
            assert!(super::ALL.contains(&t), "{t} is emitted but not listed");
            n += 1;
        }
        assert_eq!(n, 11 + 3 + 2 + 4);
    }

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
