//! The payment, checkout and order state machines, as pure functions that only move
//! forward.
//!
//! A payment's state is the *join* of everything learned about it: each field moves
//! along its own order, and applying a fact takes the larger of what is known and what
//! the fact says. So applying the same facts in any order, any number of times, gives
//! the same state — which is exactly what a webhook consumer needs when Stripe delivers
//! events late, twice, or out of order.
//!
//! The lifecycle's order is chosen so that every real payment's history climbs it:
//! `initiated < pending < requires_action < processing < failed < requires_capture <
//! expired < canceled < succeeded`. A charge that needs the customer to authenticate
//! (3-D Secure, `requires_action`) ends `succeeded`, `failed` (authentication failed) or
//! `canceled`; a declined attempt (`failed`) can still be followed by a successful
//! retry on the same session or intent; an authorisation (`requires_capture`) ends
//! captured (`succeeded`) or voided (`canceled`); a session that was never paid ends
//! `expired`. Nothing that really happened later can rank lower than what happened
//! before it, so a late or repeated event never moves a payment back. (The one history
//! the order flattens: a declined intent confirmed again with a card that then asks for
//! authentication stays `failed` until it succeeds.)

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Initiated,
    Pending,
    /// Waiting for the customer to authenticate (3-D Secure) on a page of ours.
    RequiresAction,
    Processing,
    Failed,
    RequiresCapture,
    Expired,
    Canceled,
    Succeeded,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Initiated => "initiated",
            Lifecycle::Pending => "pending",
            Lifecycle::RequiresAction => "requires_action",
            Lifecycle::Processing => "processing",
            Lifecycle::Failed => "failed",
            Lifecycle::RequiresCapture => "requires_capture",
            Lifecycle::Expired => "expired",
            Lifecycle::Canceled => "canceled",
            Lifecycle::Succeeded => "succeeded",
        }
    }

    pub fn parse(s: &str) -> Option<Lifecycle> {
        [
            Lifecycle::Initiated,
            Lifecycle::Pending,
            Lifecycle::RequiresAction,
            Lifecycle::Processing,
            Lifecycle::Failed,
            Lifecycle::RequiresCapture,
            Lifecycle::Expired,
            Lifecycle::Canceled,
            Lifecycle::Succeeded,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }

    /// No further money can move in: the payment will not succeed any more.
    pub fn is_final_without_money(self) -> bool {
        matches!(self, Lifecycle::Expired | Lifecycle::Canceled)
    }
}

/// The state of a dispute on the payment: none, open, then closed won or lost.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Dispute {
    #[default]
    None,
    Open,
    Won,
    Lost,
}

impl Dispute {
    pub fn as_str(self) -> &'static str {
        match self {
            Dispute::None => "none",
            Dispute::Open => "open",
            Dispute::Won => "won",
            Dispute::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Dispute> {
        [Dispute::None, Dispute::Open, Dispute::Won, Dispute::Lost]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// Why the latest attempt failed, as the provider said it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Failure {
    /// When the provider reported it (unix seconds); the latest report wins.
    pub at: i64,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
}

/// A fact about a payment, learned from a verified provider event or from the
/// provider's own answer to a question we asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentFact {
    Pending,
    /// The customer must authenticate (3-D Secure) before the charge can go on.
    RequiresAction,
    Processing,
    Failed(Failure),
    RequiresCapture {
        amount_capturable: i64,
    },
    Succeeded {
        amount_captured: i64,
    },
    Canceled,
    Expired,
    /// The total refunded so far on the charge (Stripe reports it cumulatively).
    Refunded {
        amount_refunded: i64,
    },
    Dispute(Dispute),
}

/// The public status of a payment, derived from its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Initiated,
    Pending,
    RequiresAction,
    Processing,
    RequiresCapture,
    Succeeded,
    PartiallyRefunded,
    Refunded,
    Failed,
    Canceled,
    Expired,
    Disputed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 12] = [
        PaymentStatus::Initiated,
        PaymentStatus::Pending,
        PaymentStatus::RequiresAction,
        PaymentStatus::Processing,
        PaymentStatus::RequiresCapture,
        PaymentStatus::Succeeded,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
        PaymentStatus::Failed,
        PaymentStatus::Canceled,
        PaymentStatus::Expired,
        PaymentStatus::Disputed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Initiated => "initiated",
            PaymentStatus::Pending => "pending",
            PaymentStatus::RequiresAction => "requires_action",
            PaymentStatus::Processing => "processing",
            PaymentStatus::RequiresCapture => "requires_capture",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Expired => "expired",
            PaymentStatus::Disputed => "disputed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentState {
    pub lifecycle: Lifecycle,
    /// The largest amount ever reported capturable.
    pub amount_capturable: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub dispute: Dispute,
    pub failure: Option<Failure>,
}

impl PaymentState {
    pub fn new() -> PaymentState {
        PaymentState {
            lifecycle: Lifecycle::Initiated,
            amount_capturable: 0,
            amount_captured: 0,
            amount_refunded: 0,
            dispute: Dispute::None,
            failure: None,
        }
    }

    pub fn status(&self) -> PaymentStatus {
        match self.lifecycle {
            Lifecycle::Initiated => PaymentStatus::Initiated,
            Lifecycle::Pending => PaymentStatus::Pending,
            Lifecycle::RequiresAction => PaymentStatus::RequiresAction,
            Lifecycle::Processing => PaymentStatus::Processing,
            Lifecycle::Failed => PaymentStatus::Failed,
            Lifecycle::RequiresCapture => PaymentStatus::RequiresCapture,
            Lifecycle::Expired => PaymentStatus::Expired,
            Lifecycle::Canceled => PaymentStatus::Canceled,
            Lifecycle::Succeeded => {
                if matches!(self.dispute, Dispute::Open | Dispute::Lost) {
                    PaymentStatus::Disputed
                } else if self.amount_captured > 0 && self.amount_refunded >= self.amount_captured {
                    PaymentStatus::Refunded
                } else if self.amount_refunded > 0 {
                    PaymentStatus::PartiallyRefunded
                } else {
                    PaymentStatus::Succeeded
                }
            }
        }
    }

    /// What can still be captured: only while the payment awaits capture.
    pub fn capturable(&self) -> i64 {
        if self.lifecycle == Lifecycle::RequiresCapture {
            self.amount_capturable
        } else {
            0
        }
    }

    /// What can still be refunded: nothing while a dispute is open or once it is lost
    /// (the provider refuses to refund a disputed charge; a lost one gave the money
    /// back already).
    pub fn refundable(&self) -> i64 {
        if self.lifecycle == Lifecycle::Succeeded
            && !matches!(self.dispute, Dispute::Open | Dispute::Lost)
        {
            (self.amount_captured - self.amount_refunded).max(0)
        } else {
            0
        }
    }
}

impl Default for PaymentState {
    fn default() -> Self {
        PaymentState::new()
    }
}

/// Applies one fact. Every field only grows along its order, so the result does not
/// depend on the order or repetition of facts.
pub fn apply(state: &PaymentState, fact: &PaymentFact) -> PaymentState {
    let mut next = state.clone();
    let mut raise = |l: Lifecycle| next.lifecycle = next.lifecycle.max(l);
    match fact {
        PaymentFact::Pending => raise(Lifecycle::Pending),
        PaymentFact::RequiresAction => raise(Lifecycle::RequiresAction),
        PaymentFact::Processing => raise(Lifecycle::Processing),
        PaymentFact::Failed(f) => {
            raise(Lifecycle::Failed);
            if next.failure.as_ref().is_none_or(|old| f > old) {
                next.failure = Some(f.clone());
            }
        }
        PaymentFact::RequiresCapture { amount_capturable } => {
            raise(Lifecycle::RequiresCapture);
            next.amount_capturable = next.amount_capturable.max(*amount_capturable);
        }
        PaymentFact::Succeeded { amount_captured } => {
            raise(Lifecycle::Succeeded);
            next.amount_captured = next.amount_captured.max(*amount_captured);
        }
        PaymentFact::Canceled => raise(Lifecycle::Canceled),
        PaymentFact::Expired => raise(Lifecycle::Expired),
        PaymentFact::Refunded { amount_refunded } => {
            next.amount_refunded = next.amount_refunded.max(*amount_refunded);
        }
        PaymentFact::Dispute(d) => next.dispute = next.dispute.max(*d),
    }
    next
}

/// A checkout session's status: open, then expired or complete. `complete` outranks
/// `expired`: a late "expired" cannot undo a completed payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    Open,
    Expired,
    Complete,
}

impl CheckoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutStatus::Open => "open",
            CheckoutStatus::Expired => "expired",
            CheckoutStatus::Complete => "complete",
        }
    }

    pub fn parse(s: &str) -> Option<CheckoutStatus> {
        [
            CheckoutStatus::Open,
            CheckoutStatus::Expired,
            CheckoutStatus::Complete,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    pub fn apply(self, fact: CheckoutStatus) -> CheckoutStatus {
        self.max(fact)
    }
}

/// A refund's status. `succeeded` can still become `failed` (a bank can return a
/// refund days later), so `failed` and `canceled` rank above it; a late `pending` or
/// `succeeded` never undoes a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Canceled,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Canceled => "canceled",
            RefundStatus::Failed => "failed",
        }
    }

    /// Stripe's refund statuses, mapped (`requires_action` waits like `pending`).
    pub fn parse(s: &str) -> Option<RefundStatus> {
        match s {
            "pending" | "requires_action" => Some(RefundStatus::Pending),
            "succeeded" => Some(RefundStatus::Succeeded),
            "canceled" => Some(RefundStatus::Canceled),
            "failed" => Some(RefundStatus::Failed),
            _ => None,
        }
    }

    pub fn apply(self, fact: RefundStatus) -> RefundStatus {
        self.max(fact)
    }

    /// Whether the refund's amount is (or may still be) given back.
    pub fn holds_amount(self) -> bool {
        matches!(self, RefundStatus::Pending | RefundStatus::Succeeded)
    }
}

/// A subscription's status, as Stripe's. Unlike a payment's, it moves back and forth
/// (`active` → `past_due` → `active`), so the latest report wins: a report older than
/// the last one applied is ignored, and `canceled` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Unpaid,
    Paused,
    Canceled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Incomplete => "incomplete",
            SubscriptionStatus::IncompleteExpired => "incomplete_expired",
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Paused => "paused",
            SubscriptionStatus::Canceled => "canceled",
        }
    }

    pub const ALL: [SubscriptionStatus; 8] = [
        SubscriptionStatus::Incomplete,
        SubscriptionStatus::IncompleteExpired,
        SubscriptionStatus::Trialing,
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Unpaid,
        SubscriptionStatus::Paused,
        SubscriptionStatus::Canceled,
    ];

    pub fn parse(s: &str) -> Option<SubscriptionStatus> {
        SubscriptionStatus::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    fn is_final(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
        )
    }
}

/// Applies a report of a subscription's status made at `at` to the current status,
/// last changed at `since`. Returns the new status and its time.
pub fn apply_subscription(
    current: SubscriptionStatus,
    since: i64,
    report: SubscriptionStatus,
    at: i64,
) -> (SubscriptionStatus, i64) {
    if current.is_final() {
        return (current, since);
    }
    if report.is_final() || at >= since {
        (report, at.max(since))
    } else {
        (current, since)
    }
}

/// How a payment holds its order's amount: what an order admits as new money is its
/// total less what succeeded, less every payment that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Holds nothing: it ended without money, or its money is already counted as paid.
    None,
    /// Money is moving (authorised, settling, or a direct charge whose outcome is not
    /// known yet): it holds the order and nothing can take it back from here.
    Committed,
    /// Promised to a way to pay that has not taken money yet (an open hosted page, or an
    /// intent awaiting the customer): it holds the order until it is superseded —
    /// expired or cancelled at the provider — by a new way to pay.
    Open,
}

/// How a payment holds its order. `method` is `checkout`, `payment_link`,
/// `payment_intent` or `card`; `has_intent` whether the provider's intent is known;
/// `checkout_open` whether a hosted payment's page is still open.
pub fn hold(method: &str, lifecycle: Lifecycle, has_intent: bool, checkout_open: bool) -> Hold {
    let hosted = matches!(method, "checkout" | "payment_link");
    match lifecycle {
        Lifecycle::Processing | Lifecycle::RequiresCapture => Hold::Committed,
        Lifecycle::Succeeded | Lifecycle::Expired | Lifecycle::Canceled => Hold::None,
        // A page that is open, or complete with its payment not booked yet.
        Lifecycle::Initiated | Lifecycle::Pending | Lifecycle::RequiresAction if hosted => {
            Hold::Open
        }
        // A declined attempt on a page still open can be retried on the page.
        Lifecycle::Failed if hosted => {
            if checkout_open {
                Hold::Open
            } else {
                Hold::None
            }
        }
        // A direct charge whose create call has not answered may have taken the money.
        Lifecycle::Initiated | Lifecycle::Pending | Lifecycle::RequiresAction if !has_intent => {
            Hold::Committed
        }
        // An off-session charge of a saved card waiting on its customer (also to
        // authenticate it: the money is promised to that charge until it ends).
        Lifecycle::Initiated | Lifecycle::Pending | Lifecycle::RequiresAction
            if method == "card" =>
        {
            Hold::Committed
        }
        // An intent awaiting the customer's confirmation or authentication (also after
        // a decline: the same intent can be confirmed again with another card).
        Lifecycle::Initiated
        | Lifecycle::Pending
        | Lifecycle::RequiresAction
        | Lifecycle::Failed
            if method == "payment_intent" && has_intent =>
        {
            Hold::Open
        }
        _ => Hold::None,
    }
}

/// An order's status, derived from what its payments have brought in and given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Open,
    Paid,
    PartiallyRefunded,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 4] = [
        OrderStatus::Open,
        OrderStatus::Paid,
        OrderStatus::PartiallyRefunded,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Open => "open",
            OrderStatus::Paid => "paid",
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// Paid once the succeeded payments cover the total (a zero total is paid at once).
    pub fn derive(amount_total: i64, amount_paid: i64, amount_refunded: i64) -> OrderStatus {
        if amount_paid < amount_total {
            return OrderStatus::Open;
        }
        if amount_refunded > 0 && amount_refunded >= amount_paid {
            OrderStatus::Refunded
        } else if amount_refunded > 0 {
            OrderStatus::PartiallyRefunded
        } else {
            OrderStatus::Paid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fail(at: i64, code: &str) -> PaymentFact {
        PaymentFact::Failed(Failure {
            at,
            code: Some("card_declined".into()),
            decline_code: Some(code.into()),
            message: None,
        })
    }

    fn run(facts: &[PaymentFact]) -> PaymentState {
        facts.iter().fold(PaymentState::new(), |s, f| apply(&s, f))
    }

    #[test]
    fn statuses_follow_money() {
        let s = run(&[
            PaymentFact::Pending,
            PaymentFact::Succeeded {
                amount_captured: 1000,
            },
        ]);
        assert_eq!(s.status(), PaymentStatus::Succeeded);
        assert_eq!(s.refundable(), 1000);
        let s = apply(
            &s,
            &PaymentFact::Refunded {
                amount_refunded: 300,
            },
        );
        assert_eq!(s.status(), PaymentStatus::PartiallyRefunded);
        assert_eq!(s.refundable(), 700);
        let s = apply(
            &s,
            &PaymentFact::Refunded {
                amount_refunded: 1000,
            },
        );
        assert_eq!(s.status(), PaymentStatus::Refunded);
        let s = apply(&s, &PaymentFact::Dispute(Dispute::Open));
        assert_eq!(s.status(), PaymentStatus::Disputed);
        let won = apply(&s, &PaymentFact::Dispute(Dispute::Won));
        assert_eq!(
            won.status(),
            PaymentStatus::Refunded,
            "a won dispute goes back"
        );
        let lost = apply(&s, &PaymentFact::Dispute(Dispute::Lost));
        assert_eq!(lost.status(), PaymentStatus::Disputed);
    }

    #[test]
    fn late_events_never_move_back() {
        let done = run(&[PaymentFact::Succeeded {
            amount_captured: 500,
        }]);
        for late in [
            PaymentFact::Pending,
            PaymentFact::Processing,
            fail(1, "generic_decline"),
            PaymentFact::RequiresCapture {
                amount_capturable: 500,
            },
            PaymentFact::Expired,
            PaymentFact::Canceled,
            PaymentFact::Succeeded {
                amount_captured: 100,
            },
        ] {
            let s = apply(&done, &late);
            assert_eq!(s.status(), PaymentStatus::Succeeded, "{late:?}");
            assert_eq!(s.amount_captured, 500);
        }
        let auth = run(&[PaymentFact::RequiresCapture {
            amount_capturable: 800,
        }]);
        assert_eq!(auth.capturable(), 800);
        assert_eq!(
            apply(&auth, &PaymentFact::Processing).status(),
            PaymentStatus::RequiresCapture
        );
        let captured = apply(
            &auth,
            &PaymentFact::Succeeded {
                amount_captured: 600,
            },
        );
        assert_eq!(
            (
                captured.status(),
                captured.capturable(),
                captured.amount_captured
            ),
            (PaymentStatus::Succeeded, 0, 600)
        );
        let retried = run(&[
            fail(1, "generic_decline"),
            PaymentFact::Succeeded { amount_captured: 5 },
        ]);
        assert_eq!(
            retried.status(),
            PaymentStatus::Succeeded,
            "a retry after a decline succeeds"
        );
    }

    #[test]
    fn refunds_and_subscriptions_only_move_forward() {
        use RefundStatus as R;
        assert_eq!(R::Pending.apply(R::Succeeded), R::Succeeded);
        assert_eq!(
            R::Succeeded.apply(R::Pending),
            R::Succeeded,
            "a late pending changes nothing"
        );
        assert_eq!(
            R::Succeeded.apply(R::Failed),
            R::Failed,
            "a bank can return a refund"
        );
        assert_eq!(R::Failed.apply(R::Succeeded), R::Failed);
        assert!(
            R::Pending.holds_amount() && R::Succeeded.holds_amount() && !R::Failed.holds_amount()
        );
        use SubscriptionStatus::*;
        assert_eq!(apply_subscription(Active, 10, PastDue, 20), (PastDue, 20));
        assert_eq!(
            apply_subscription(PastDue, 20, Active, 15),
            (PastDue, 20),
            "an older report is ignored"
        );
        assert_eq!(apply_subscription(PastDue, 20, Active, 30), (Active, 30));
        assert_eq!(
            apply_subscription(Active, 30, Canceled, 25),
            (Canceled, 30),
            "cancellation is final whenever it arrives"
        );
        assert_eq!(apply_subscription(Canceled, 30, Active, 99), (Canceled, 30));
    }

    #[test]
    fn authentication_ends_succeeded_failed_or_canceled_and_never_goes_back() {
        let waiting = run(&[PaymentFact::Pending, PaymentFact::RequiresAction]);
        assert_eq!(waiting.status(), PaymentStatus::RequiresAction);
        assert_eq!(waiting.status().as_str(), "requires_action");
        assert_eq!(Lifecycle::parse("requires_action"), Some(waiting.lifecycle));
        for (end, status) in [
            (
                PaymentFact::Succeeded {
                    amount_captured: 10,
                },
                PaymentStatus::Succeeded,
            ),
            (
                fail(5, "payment_intent_authentication_failure"),
                PaymentStatus::Failed,
            ),
            (PaymentFact::Canceled, PaymentStatus::Canceled),
        ] {
            let after = apply(&waiting, &end);
            assert_eq!(after.status(), status);
            // A late `requires_action` (or a repeat of it) never undoes the outcome.
            assert_eq!(apply(&after, &PaymentFact::RequiresAction), after);
        }
        // A late `pending` does not undo the wait either.
        assert_eq!(apply(&waiting, &PaymentFact::Pending), waiting);
    }

    #[test]
    fn orders_are_paid_when_covered() {
        assert_eq!(OrderStatus::derive(1000, 0, 0), OrderStatus::Open);
        assert_eq!(OrderStatus::derive(1000, 999, 0), OrderStatus::Open);
        assert_eq!(OrderStatus::derive(1000, 1000, 0), OrderStatus::Paid);
        assert_eq!(
            OrderStatus::derive(1000, 1000, 1),
            OrderStatus::PartiallyRefunded
        );
        assert_eq!(OrderStatus::derive(1000, 1000, 1000), OrderStatus::Refunded);
        assert_eq!(OrderStatus::derive(0, 0, 0), OrderStatus::Paid);
        assert_eq!(
            CheckoutStatus::Complete.apply(CheckoutStatus::Expired),
            CheckoutStatus::Complete
        );
        assert_eq!(
            CheckoutStatus::Open.apply(CheckoutStatus::Expired),
            CheckoutStatus::Expired
        );
    }

    #[test]
    fn what_holds_an_order() {
        use Lifecycle as L;
        for (method, lifecycle, intent, open, want) in [
            ("checkout", L::Initiated, false, true, Hold::Open),
            ("checkout", L::Pending, false, false, Hold::Open),
            ("payment_link", L::Failed, false, true, Hold::Open),
            ("checkout", L::Failed, false, false, Hold::None),
            ("checkout", L::Processing, false, false, Hold::Committed),
            ("checkout", L::Expired, false, false, Hold::None),
            (
                "payment_intent",
                L::Initiated,
                false,
                false,
                Hold::Committed,
            ),
            ("payment_intent", L::Pending, true, false, Hold::Open),
            ("payment_intent", L::Failed, true, false, Hold::Open),
            ("payment_intent", L::Failed, false, false, Hold::None),
            (
                "payment_intent",
                L::RequiresCapture,
                true,
                false,
                Hold::Committed,
            ),
            ("payment_intent", L::Canceled, true, false, Hold::None),
            ("card", L::Pending, true, false, Hold::Committed),
            ("card", L::RequiresAction, true, false, Hold::Committed),
            ("payment_intent", L::RequiresAction, true, false, Hold::Open),
            ("subscription", L::RequiresAction, true, false, Hold::None),
            ("card", L::Failed, true, false, Hold::None),
            ("card", L::Succeeded, true, false, Hold::None),
        ] {
            assert_eq!(
                hold(method, lifecycle, intent, open),
                want,
                "{method} {lifecycle:?} intent={intent} open={open}"
            );
        }
        let disputed = apply(
            &apply(
                &PaymentState::new(),
                &PaymentFact::Succeeded {
                    amount_captured: 900,
                },
            ),
            &PaymentFact::Dispute(Dispute::Open),
        );
        assert_eq!(
            disputed.refundable(),
            0,
            "a disputed charge is not refundable"
        );
        let lost = apply(&disputed, &PaymentFact::Dispute(Dispute::Lost));
        assert_eq!(lost.refundable(), 0);
        let won = apply(&disputed, &PaymentFact::Dispute(Dispute::Won));
        assert_eq!(won.refundable(), 900);
    }

    /// Real payment histories, in the order they happen, with event times rising.
    fn history() -> impl Strategy<Value = Vec<PaymentFact>> {
        let amount = 50i64..100_000;
        let declines = proptest::collection::vec(
            prop_oneof![
                Just("generic_decline"),
                Just("insufficient_funds"),
                Just("expired_card")
            ],
            0..3,
        );
        (
            amount,
            declines,
            0u8..7,
            (any::<bool>(), any::<bool>()),
            0u8..3,
            0i64..100,
        )
            .prop_map(
                |(amount, declines, shape, (pending, authenticate), dispute, refund_pct)| {
                    let mut h = Vec::new();
                    let mut at = 1;
                    if pending {
                        h.push(PaymentFact::Pending);
                    }
                    if authenticate {
                        h.push(PaymentFact::RequiresAction);
                    }
                    for d in &declines {
                        at += 1;
                        h.push(fail(at, d));
                    }
                    let paid = match shape {
                        0 => {
                            h.push(PaymentFact::Succeeded {
                                amount_captured: amount,
                            });
                            true
                        }
                        1 => {
                            h.push(PaymentFact::Processing);
                            h.push(PaymentFact::Succeeded {
                                amount_captured: amount,
                            });
                            true
                        }
                        2 => {
                            h.push(PaymentFact::RequiresCapture {
                                amount_capturable: amount,
                            });
                            h.push(PaymentFact::Succeeded {
                                amount_captured: amount / 2 + 1,
                            });
                            true
                        }
                        3 => {
                            h.push(PaymentFact::RequiresCapture {
                                amount_capturable: amount,
                            });
                            h.push(PaymentFact::Canceled);
                            false
                        }
                        4 => {
                            h.push(PaymentFact::Expired);
                            false
                        }
                        5 => {
                            h.push(PaymentFact::Processing);
                            at += 1;
                            h.push(fail(at, "generic_decline"));
                            false
                        }
                        _ => false,
                    };
                    if paid {
                        let captured = match h.last() {
                            Some(PaymentFact::Succeeded { amount_captured }) => *amount_captured,
                            _ => amount,
                        };
                        let refunded = captured * refund_pct / 100;
                        if refunded > 0 {
                            h.push(PaymentFact::Refunded {
                                amount_refunded: refunded / 2,
                            });
                            h.push(PaymentFact::Refunded {
                                amount_refunded: refunded,
                            });
                        }
                        if dispute > 0 {
                            h.push(PaymentFact::Dispute(Dispute::Open));
                            h.push(PaymentFact::Dispute(if dispute == 1 {
                                Dispute::Won
                            } else {
                                Dispute::Lost
                            }));
                        }
                    }
                    h
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every permutation and duplication of a payment's events ends in the same
        /// state as the events in the order they happened.
        #[test]
        fn any_order_and_any_repetition_gives_the_same_state(
            (h, shuffled) in history().prop_flat_map(|h| {
                let n = h.len();
                // Each event delivered 1 to 3 times, then all of them shuffled.
                (Just(h.clone()), proptest::collection::vec(1usize..4, n))
                    .prop_map(|(h, times)| {
                        let copies: Vec<PaymentFact> = h.iter().zip(times).flat_map(|(f, t)| std::iter::repeat_n(f.clone(), t)).collect();
                        (h, copies)
                    })
                    .prop_flat_map(|(h, copies)| (Just(h), Just(copies).prop_shuffle()))
            })
        ) {
            prop_assert_eq!(run(&shuffled), run(&h));
        }

        /// Whatever the state and the fact, nothing moves backwards.
        #[test]
        fn facts_only_move_forward(h in history(), i in 0usize..10) {
            let s = run(&h[..h.len().min(i)]);
            for f in &h {
                let n = apply(&s, f);
                prop_assert!(n.lifecycle >= s.lifecycle);
                prop_assert!(n.amount_captured >= s.amount_captured);
                prop_assert!(n.amount_refunded >= s.amount_refunded);
                prop_assert!(n.dispute >= s.dispute);
                prop_assert_eq!(apply(&n, f), n.clone(), "applying a fact twice changes nothing");
            }
        }
    }
}
