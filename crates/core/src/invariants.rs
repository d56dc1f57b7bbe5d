//! The ledger's invariants, checked where a fact enters — whatever its source (our own
//! calls' answers, webhooks, the reconciler) — before it is applied:
//!
//! - amounts are non-negative, and in the payment's currency;
//! - a payment never captures (or authorises) more than its amount;
//! - what is refunded plus what is being refunded never exceeds what was captured, and
//!   nothing is refunded on a payment that has captured nothing;
//! - an order's paid − refunded never exceeds its total, unless a surplus refund (money
//!   that arrived twice) is under way.
//!
//! A fact that breaks one is an `Anomaly`: the provider and paybridge disagree and a
//! person must look. It is not applied (the callers store it as `rejected` and tell the
//! app with a `ledger.anomaly` event). Pure, so every path and backend shares it.

use crate::payment::{Lifecycle, PaymentFact, PaymentState};

/// Why a fact was not applied: a stable code and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub code: &'static str,
    pub reason: String,
}

impl Anomaly {
    fn new(code: &'static str, reason: impl Into<String>) -> Anomaly {
        Anomaly {
            code,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

/// A payment's books: what it is for, and what its money did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Books<'a> {
    pub amount: i64,
    pub currency: &'a str,
    pub state: &'a PaymentState,
    /// Refunds pending or succeeded: the amount they hold against the capture.
    pub refunding: i64,
}

fn same_currency(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Checks the amount and currency the provider's object is about (a payment intent's
/// `amount`, a session's `amount_total`) against the payment's.
pub fn check_reported(b: &Books<'_>, reported: Option<(i64, &str)>) -> Result<(), Anomaly> {
    if let Some((amount, currency)) = reported {
        if !same_currency(currency, b.currency) {
            return Err(Anomaly::new(
                "currency_mismatch",
                format!(
                    "the provider reports {amount} {currency}; the payment is in {}",
                    b.currency
                ),
            ));
        }
        if amount != b.amount {
            return Err(Anomaly::new(
                "amount_mismatch",
                format!(
                    "the provider reports {amount} {currency}; the payment is {} {}",
                    b.amount, b.currency
                ),
            ));
        }
    }
    Ok(())
}

/// Checks what a fact reports about a payment's money, before it is applied. `reported`
/// is the amount and currency of the object the fact came from, when it says.
pub fn check_payment_fact(
    b: &Books<'_>,
    reported: Option<(i64, &str)>,
    fact: &PaymentFact,
) -> Result<(), Anomaly> {
    check_reported(b, reported)?;
    let (what, value) = match fact {
        PaymentFact::RequiresCapture { amount_capturable } => ("authorised", *amount_capturable),
        PaymentFact::Succeeded { amount_captured } => ("captured", *amount_captured),
        PaymentFact::Refunded { amount_refunded } => {
            let r = *amount_refunded;
            if r < 0 {
                return Err(negative("refunded", r, b.currency));
            }
            let captured = b.state.amount_captured;
            if r > captured {
                return Err(Anomaly::new(
                    "refund_exceeds_capture",
                    format!("{r} {} refunded, but only {captured} captured", b.currency),
                ));
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    if value < 0 {
        return Err(negative(what, value, b.currency));
    }
    if value > b.amount {
        return Err(Anomaly::new(
            "capture_exceeds_amount",
            format!(
                "{value} {} {what}, but the payment is for {}",
                b.currency, b.amount
            ),
        ));
    }
    Ok(())
}

fn negative(what: &str, value: i64, currency: &str) -> Anomaly {
    Anomaly::new(
        "negative_amount",
        format!("{value} {currency} {what}: amounts are never negative"),
    )
}

/// Checks a refund the provider reports before it is booked against its payment.
/// `adds` is how much more the refund would hold against the capture once applied
/// (its amount when it is new and pending or succeeded; 0 when it already holds it).
pub fn check_refund(
    b: &Books<'_>,
    amount: i64,
    currency: Option<&str>,
    adds: i64,
) -> Result<(), Anomaly> {
    if amount <= 0 {
        return Err(Anomaly::new(
            "negative_amount",
            format!(
                "a refund of {amount} {}: a refund gives back a positive amount",
                b.currency
            ),
        ));
    }
    if let Some(c) = currency {
        if !same_currency(c, b.currency) {
            return Err(Anomaly::new(
                "currency_mismatch",
                format!("a refund of {amount} {c}; the payment is in {}", b.currency),
            ));
        }
    }
    let captured = b.state.amount_captured;
    if b.state.lifecycle != Lifecycle::Succeeded || captured == 0 {
        return Err(Anomaly::new(
            "refund_without_capture",
            format!(
                "a refund of {amount} {} on a payment that has captured nothing",
                b.currency
            ),
        ));
    }
    if adds > 0 && b.refunding.saturating_add(adds) > captured {
        return Err(Anomaly::new(
            "refund_exceeds_capture",
            format!(
                "a refund of {amount} {} would make {} refunded or refunding of {captured} captured",
                b.currency,
                b.refunding.saturating_add(adds)
            ),
        ));
    }
    Ok(())
}

/// The invariants of a payment's books as they stand.
pub fn check_books(b: &Books<'_>) -> Result<(), Anomaly> {
    let s = b.state;
    for (what, v) in [
        ("captured", s.amount_captured),
        ("authorised", s.amount_capturable),
        ("refunded", s.amount_refunded),
        ("refunding", b.refunding),
    ] {
        if v < 0 {
            return Err(negative(what, v, b.currency));
        }
    }
    if s.amount_captured > b.amount || s.amount_capturable > b.amount {
        return Err(Anomaly::new(
            "capture_exceeds_amount",
            format!(
                "{} captured, {} authorised, of a payment for {}",
                s.amount_captured, s.amount_capturable, b.amount
            ),
        ));
    }
    if s.amount_refunded > s.amount_captured || b.refunding > s.amount_captured {
        return Err(Anomaly::new(
            "refund_exceeds_capture",
            format!(
                "{} refunded and {} refunding of {} captured",
                s.amount_refunded, b.refunding, s.amount_captured
            ),
        ));
    }
    Ok(())
}

/// What an order holds beyond its total: money that arrived twice.
pub fn surplus(total: i64, paid: i64, refunded: i64) -> i64 {
    paid.saturating_sub(refunded).saturating_sub(total).max(0)
}

/// An order's invariant: paid − refunded ≤ total, unless a surplus refund of
/// `surplus_refunding` (pending, not yet counted as refunded) covers the excess.
pub fn check_order(
    total: i64,
    paid: i64,
    refunded: i64,
    surplus_refunding: i64,
) -> Result<(), Anomaly> {
    if paid < 0 || refunded < 0 || refunded > paid {
        return Err(Anomaly::new(
            "order_books",
            format!("an order with {paid} paid and {refunded} refunded"),
        ));
    }
    if surplus(total, paid, refunded) > surplus_refunding {
        return Err(Anomaly::new(
            "order_overpaid",
            format!(
                "{paid} paid and {refunded} refunded of a total of {total}, with {surplus_refunding} being refunded as surplus"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::{apply, Dispute};

    fn paid(captured: i64) -> PaymentState {
        apply(
            &PaymentState::new(),
            &PaymentFact::Succeeded {
                amount_captured: captured,
            },
        )
    }

    fn books(s: &PaymentState, refunding: i64) -> Books<'_> {
        Books {
            amount: 1000,
            currency: "usd",
            state: s,
            refunding,
        }
    }

    #[test]
    fn a_capture_beyond_the_amount_or_in_another_currency_is_an_anomaly() {
        let s = PaymentState::new();
        let b = books(&s, 0);
        let big = PaymentFact::Succeeded {
            amount_captured: 900_000,
        };
        assert_eq!(
            check_payment_fact(&b, Some((1000, "usd")), &big)
                .unwrap_err()
                .code,
            "capture_exceeds_amount"
        );
        assert_eq!(
            check_payment_fact(&b, Some((1000, "jpy")), &PaymentFact::Processing)
                .unwrap_err()
                .code,
            "currency_mismatch"
        );
        assert_eq!(
            check_payment_fact(&b, Some((1001, "USD")), &PaymentFact::Processing)
                .unwrap_err()
                .code,
            "amount_mismatch"
        );
        assert_eq!(
            check_payment_fact(
                &b,
                None,
                &PaymentFact::RequiresCapture {
                    amount_capturable: -1
                }
            )
            .unwrap_err()
            .code,
            "negative_amount"
        );
        for ok in [
            PaymentFact::Succeeded {
                amount_captured: 1000,
            },
            PaymentFact::Succeeded {
                amount_captured: 400,
            },
            PaymentFact::Dispute(Dispute::Lost),
            PaymentFact::Expired,
        ] {
            assert_eq!(check_payment_fact(&b, Some((1000, "USD")), &ok), Ok(()));
        }
    }

    #[test]
    fn refunds_are_positive_in_the_currency_and_within_the_capture() {
        let none = PaymentState::new();
        let s = paid(1000);
        assert_eq!(
            check_refund(&books(&s, 0), 5000, Some("usd"), 5000)
                .unwrap_err()
                .code,
            "refund_exceeds_capture"
        );
        assert_eq!(
            check_refund(&books(&s, 0), 400, Some("jpy"), 400)
                .unwrap_err()
                .code,
            "currency_mismatch"
        );
        assert_eq!(
            check_refund(&books(&s, 1000), -1000, Some("usd"), 0)
                .unwrap_err()
                .code,
            "negative_amount"
        );
        assert_eq!(
            check_refund(&books(&none, 0), 700, Some("usd"), 700)
                .unwrap_err()
                .code,
            "refund_without_capture"
        );
        assert_eq!(
            check_refund(&books(&s, 600), 500, None, 500)
                .unwrap_err()
                .code,
            "refund_exceeds_capture"
        );
        assert_eq!(check_refund(&books(&s, 600), 400, Some("USD"), 400), Ok(()));
        assert_eq!(
            check_refund(&books(&s, 1000), 400, Some("usd"), 0),
            Ok(()),
            "a refund already held is not counted twice"
        );
    }

    /// One step a provider (or an attacker with the signing secret) may report.
    #[derive(Debug, Clone)]
    enum Step {
        Fact(PaymentFact, Option<(i64, &'static str)>),
        /// A new refund: amount, currency, whether it succeeded (else pending).
        Refund(i64, &'static str, bool),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let amount = prop_oneof![-2000i64..3000, Just(1000), Just(900_000), Just(i64::MAX)];
        let currency = prop_oneof![Just("usd"), Just("USD"), Just("jpy")];
        prop_oneof![
            (
                amount.clone(),
                proptest::option::of((amount.clone(), currency.clone()))
            )
                .prop_map(|(a, r)| Step::Fact(PaymentFact::Succeeded { amount_captured: a }, r)),
            (
                amount.clone(),
                proptest::option::of((amount.clone(), currency.clone()))
            )
                .prop_map(|(a, r)| Step::Fact(
                    PaymentFact::RequiresCapture {
                        amount_capturable: a
                    },
                    r
                )),
            amount
                .clone()
                .prop_map(|a| Step::Fact(PaymentFact::Refunded { amount_refunded: a }, None)),
            Just(Step::Fact(PaymentFact::Canceled, None)),
            Just(Step::Fact(PaymentFact::Dispute(Dispute::Lost), None)),
            (amount, currency, any::<bool>()).prop_map(|(a, c, ok)| Step::Refund(a, c, ok)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Whatever facts arrive, in whatever order, applying only those the checks admit
        /// keeps every invariant after every step.
        #[test]
        fn admitted_facts_keep_the_books_true(steps in proptest::collection::vec(step(), 0..24)) {
            let mut s = PaymentState::new();
            let (mut refunding, mut refunded) = (0i64, 0i64);
            for st in &steps {
                let b = Books { amount: 1000, currency: "usd", state: &s, refunding };
                match st {
                    Step::Fact(f, reported) => {
                        if check_payment_fact(&b, *reported, f).is_ok() {
                            s = apply(&s, f);
                        }
                    }
                    Step::Refund(a, c, ok) => {
                        if check_refund(&b, *a, Some(c), *a).is_ok() {
                            refunding += a;
                            if *ok {
                                refunded += a;
                                s = apply(&s, &PaymentFact::Refunded { amount_refunded: refunded });
                            }
                        }
                    }
                }
                let b = Books { amount: 1000, currency: "usd", state: &s, refunding };
                proptest::prop_assert_eq!(check_books(&b), Ok(()), "after {:?}", st);
            }
        }
    }

    #[test]
    fn an_overpaid_order_needs_a_surplus_refund_under_way() {
        assert_eq!(check_order(1000, 1000, 0, 0), Ok(()));
        assert_eq!(
            check_order(1000, 2000, 0, 0).unwrap_err().code,
            "order_overpaid"
        );
        assert_eq!(check_order(1000, 2000, 0, 1000), Ok(()));
        assert_eq!(check_order(1000, 2000, 1000, 0), Ok(()));
        assert_eq!(surplus(1000, 2000, 300), 700);
        assert_eq!(
            check_order(1000, 100, 200, 0).unwrap_err().code,
            "order_books"
        );
    }
}
