//! Stripe events: parsing the envelope, and reading each event's object into the facts
//! it establishes about our payments and checkouts. Pure, and total: any byte string
//! either parses or is refused with an error, and interpretation never panics (both are
//! fuzzed, see `fuzz/`).
//!
//! Interpretation works from the object's own state, never from the event's position
//! in a stream: a `payment_intent.succeeded` says "this intent succeeded with this much
//! captured", true whenever it arrives.

use serde::Deserialize;
use serde_json::Value;

use super::objects::{
    Card, Charge, CheckoutSession, Dispute, ErrorObject, Expandable, Invoice, Metadata,
    PaymentIntent, PaymentMethod, Refund, Subscription,
};
use crate::payment::{
    CheckoutStatus, Dispute as DisputeState, Failure, PaymentFact, RefundStatus, SubscriptionStatus,
};

/// Metadata keys paybridge puts on every provider object it creates, so that an event
/// finds our records even before our own call to create the object has returned.
pub const META_APP: &str = "pb_app";
pub const META_ORDER: &str = "pb_order";
pub const META_PAYMENT: &str = "pb_payment";
pub const META_CHECKOUT: &str = "pb_checkout";
pub const META_REFUND: &str = "pb_refund";
pub const META_SUBSCRIPTION: &str = "pb_subscription";

/// Largest event body accepted (Stripe's are a few kB; Checkout sessions ~10 kB).
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event is not valid JSON: {0}")]
    Json(String),
    #[error("the event has no `{0}`")]
    Missing(&'static str),
    #[error("the event is too large")]
    TooLarge,
    /// JSON may spell U+0000 (`\u0000`); no database column should hold it (PostgreSQL's
    /// text cannot), and Stripe never sends it.
    #[error("the event contains the character U+0000, which paybridge does not store")]
    Nul,
}

/// An event's envelope, with its object kept as JSON for storage and interpretation.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub livemode: bool,
    /// The connected account the event is about (Connect), if any.
    pub account: Option<String>,
    pub object: Value,
}

#[derive(Deserialize)]
struct Envelope {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    livemode: bool,
    account: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    object: Option<Value>,
}

pub fn parse(bytes: &[u8]) -> Result<Event, EventError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge);
    }
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
    let id = env
        .id
        .filter(|i| !i.is_empty() && i.len() <= 255)
        .ok_or(EventError::Missing("id"))?;
    let kind = env
        .kind
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or(EventError::Missing("type"))?;
    let object = env
        .data
        .and_then(|d| d.object)
        .filter(Value::is_object)
        .ok_or(EventError::Missing("data.object"))?;
    // The only way to spell U+0000 in JSON is the escape, so only events that hold one
    // are walked.
    if bytes.windows(6).any(|w| w == b"\\u0000")
        && ([&id, &kind].iter().any(|s| s.contains('\0'))
            || env.account.as_deref().is_some_and(|a| a.contains('\0'))
            || holds_nul(&object))
    {
        return Err(EventError::Nul);
    }
    Ok(Event {
        id,
        kind,
        created: env.created,
        livemode: env.livemode,
        account: env.account,
        object,
    })
}

fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(holds_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Which of our records an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    /// Our ids, from the metadata we set on the provider's objects.
    pub payment: Option<String>,
    pub order: Option<String>,
    pub checkout: Option<String>,
    /// The provider's ids.
    pub checkout_session: Option<String>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    pub customer: Option<String>,
    /// Subscription mode: the provider's subscription (on a checkout session).
    pub subscription: Option<String>,
}

impl Refs {
    fn take_metadata(&mut self, m: Option<&Metadata>) {
        let Some(m) = m else { return };
        let get = |k: &str| m.get(k).filter(|v| !v.is_empty()).cloned();
        self.payment = self.payment.take().or_else(|| get(META_PAYMENT));
        self.order = self.order.take().or_else(|| get(META_ORDER));
        self.checkout = self.checkout.take().or_else(|| get(META_CHECKOUT));
    }

    /// True when nothing in the event can point at a record of ours.
    pub fn is_empty(&self) -> bool {
        self.payment.is_none()
            && self.checkout.is_none()
            && self.checkout_session.is_none()
            && self.payment_intent.is_none()
            && self.charge.is_none()
    }
}

/// A card as seen on a charge or payment method: shown on the payment, and saved to a
/// customer when the payment asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCard {
    /// The provider's payment method (`pm_…`), when the object names it (a card is
    /// saved only then).
    pub payment_method: Option<String>,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
}

/// What one event establishes.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub refs: Refs,
    pub payment: Vec<PaymentFact>,
    pub checkout: Option<CheckoutStatus>,
    pub card: Option<SeenCard>,
    /// The amount and currency the object is about, to check against our record.
    pub amount: Option<(i64, String)>,
    pub refund: Option<RefundReading>,
    pub subscription: Option<SubscriptionReading>,
    pub invoice: Option<InvoiceReading>,
}

/// A refund as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReading {
    pub provider_refund: String,
    /// Our refund, when paybridge made it.
    pub ours: Option<String>,
    pub amount: i64,
    pub currency: Option<String>,
    pub status: RefundStatus,
    pub reason: Option<String>,
    pub failure_reason: Option<String>,
}

/// A subscription's state as the provider reports it, at the event's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionReading {
    pub provider_subscription: String,
    pub ours: Option<String>,
    pub status: SubscriptionStatus,
    pub at: i64,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub customer: Option<String>,
    pub price: Option<String>,
}

/// A subscription invoice, paid, failed, or waiting for the customer to authenticate
/// its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceReading {
    pub provider_invoice: String,
    pub provider_subscription: Option<String>,
    /// Our subscription, from the subscription's metadata copied onto the invoice.
    pub subscription: Option<String>,
    pub paid: bool,
    /// `invoice.payment_action_required`: unpaid, its payment awaits 3-D Secure.
    pub action_required: bool,
    pub amount: i64,
    pub currency: String,
    pub billing_reason: Option<String>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    pub period_end: Option<i64>,
    pub at: i64,
}

/// The event types whose objects move payments and checkouts.
pub const HANDLED: &[&str] = &[
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "payment_intent.created",
    "payment_intent.succeeded",
    "payment_intent.processing",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "payment_intent.amount_capturable_updated",
    "charge.succeeded",
    "charge.failed",
    "charge.captured",
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
];

/// Reads an event. `None` for an event type paybridge does not act on (it is still
/// stored and acknowledged), or an object that does not parse as its type says.
///
/// The object is read through a borrow of its JSON tree (`&Value` is a deserializer):
/// the ingest path reads each event twice (to load its rows, then to apply it), and a
/// copy of the tree each time allocated every key and string in it again.
pub fn read(ev: &Event) -> Option<Reading> {
    let kind = ev.kind.as_str();
    if matches!(
        kind,
        "refund.created" | "refund.updated" | "refund.failed" | "charge.refund.updated"
    ) {
        let r = Refund::deserialize(&ev.object).ok()?;
        return Some(read_refund(&r));
    }
    if let Some(rest) = kind.strip_prefix("charge.dispute.") {
        let d = Dispute::deserialize(&ev.object).ok()?;
        return read_dispute(rest, &d);
    }
    if let Some(rest) = kind.strip_prefix("customer.subscription.") {
        let sub = Subscription::deserialize(&ev.object).ok()?;
        return read_subscription(rest, &sub, ev.created);
    }
    if let Some(rest) = kind.strip_prefix("invoice.") {
        let inv = Invoice::deserialize(&ev.object).ok()?;
        return read_invoice(rest, &inv, ev.created);
    }
    if let Some(rest) = kind.strip_prefix("checkout.session.") {
        let s = CheckoutSession::deserialize(&ev.object).ok()?;
        return read_checkout(rest, &s, ev.created);
    }
    if let Some(rest) = kind.strip_prefix("payment_intent.") {
        let pi = PaymentIntent::deserialize(&ev.object).ok()?;
        return read_intent(rest, &pi, ev.created);
    }
    if let Some(rest) = kind.strip_prefix("charge.") {
        let ch = Charge::deserialize(&ev.object).ok()?;
        return read_charge(rest, &ch, ev.created);
    }
    None
}

fn failure(at: i64, e: Option<&ErrorObject>) -> Failure {
    Failure {
        at,
        code: e.and_then(|e| e.code.clone()),
        decline_code: e.and_then(|e| e.decline_code.clone()),
        message: e.and_then(|e| e.message.clone()),
    }
}

fn read_checkout(what: &str, s: &CheckoutSession, at: i64) -> Option<Reading> {
    let mut r = Reading::default();
    r.refs.checkout_session = Some(s.id.clone());
    r.refs.payment_intent = s.payment_intent.as_ref().map(|p| p.id().to_owned());
    r.refs.customer = s.customer.as_ref().map(|c| c.id().to_owned());
    r.refs.subscription = s.subscription.as_ref().map(|c| c.id().to_owned());
    r.refs.take_metadata(s.metadata.as_ref());
    if r.refs.order.is_none() {
        r.refs.order = s.client_reference_id.clone();
    }
    let total = s.amount_total.unwrap_or(0);
    r.amount = s.currency.clone().map(|c| (total, c));
    r.card = s
        .payment_intent
        .as_ref()
        .and_then(|p| p.object())
        .and_then(intent_card);
    let paid = s.payment_status.as_deref() == Some("paid");
    match what {
        "completed" => {
            r.checkout = Some(CheckoutStatus::Complete);
            // Unpaid at completion: an authorisation awaiting capture or a payment
            // method that settles later; the intent's own events say which.
            r.payment.push(if paid {
                PaymentFact::Succeeded {
                    amount_captured: total,
                }
            } else {
                PaymentFact::Processing
            });
        }
        "async_payment_succeeded" => {
            r.checkout = Some(CheckoutStatus::Complete);
            r.payment.push(PaymentFact::Succeeded {
                amount_captured: total,
            });
        }
        "async_payment_failed" => {
            r.checkout = Some(CheckoutStatus::Complete);
            r.payment.push(PaymentFact::Failed(failure(at, None)));
        }
        "expired" => {
            r.checkout = Some(CheckoutStatus::Expired);
            r.payment.push(PaymentFact::Expired);
        }
        _ => return None,
    }
    Some(r)
}

/// The facts an intent's current state establishes, whatever event carried it. The
/// reconciler reads intents it fetched through this too.
pub fn intent_facts(pi: &PaymentIntent, at: i64) -> Vec<PaymentFact> {
    match pi.status.as_str() {
        "succeeded" => vec![PaymentFact::Succeeded {
            amount_captured: pi.captured(),
        }],
        "processing" => vec![PaymentFact::Processing],
        "requires_capture" => vec![PaymentFact::RequiresCapture {
            amount_capturable: if pi.amount_capturable > 0 {
                pi.amount_capturable
            } else {
                pi.amount
            },
        }],
        "canceled" => vec![PaymentFact::Canceled],
        "requires_action" => vec![PaymentFact::RequiresAction],
        // An off-session confirmation the bank wants authenticated: Stripe answers it
        // as a failed attempt, which the customer can still complete on our page.
        "requires_payment_method" if needs_authentication(pi) => {
            vec![PaymentFact::RequiresAction]
        }
        "requires_payment_method" if pi.last_payment_error.is_some() => {
            vec![PaymentFact::Failed(failure(
                at,
                pi.last_payment_error.as_ref(),
            ))]
        }
        "requires_payment_method" | "requires_confirmation" => vec![PaymentFact::Pending],
        _ => vec![],
    }
}

/// Stripe's answer to an off-session charge whose card needs 3-D Secure: the attempt
/// failed with `authentication_required`, and the customer can authenticate it.
pub fn needs_authentication(pi: &PaymentIntent) -> bool {
    pi.last_payment_error.as_ref().is_some_and(|e| {
        e.code.as_deref() == Some("authentication_required")
            || e.decline_code.as_deref() == Some("authentication_required")
    })
}

/// A subscription invoice's own intent or charge: followed through the invoice's
/// events, so it names no payment of ours.
fn invoice_payment(r: Reading, invoice: bool) -> Reading {
    if invoice && r.refs.payment.is_none() {
        return Reading::default();
    }
    r
}

fn read_intent(what: &str, pi: &PaymentIntent, at: i64) -> Option<Reading> {
    let mut r = Reading::default();
    r.refs.payment_intent = Some(pi.id.clone());
    r.refs.customer = pi.customer.as_ref().map(|c| c.id().to_owned());
    r.refs.take_metadata(pi.metadata.as_ref());
    r.amount = Some((pi.amount, pi.currency.clone()));
    r.payment = match what {
        "payment_failed" if needs_authentication(pi) => vec![PaymentFact::RequiresAction],
        "payment_failed" => vec![PaymentFact::Failed(failure(
            at,
            pi.last_payment_error.as_ref(),
        ))],
        "succeeded"
        | "processing"
        | "canceled"
        | "requires_action"
        | "amount_capturable_updated"
        | "created" => intent_facts(pi, at),
        _ => return None,
    };
    if let Some(ch) = pi.charge() {
        r.refs.charge = Some(ch.id.clone());
    }
    r.card = intent_card(pi);
    Some(invoice_payment(r, pi.invoice.is_some()))
}

fn card_of(payment_method: Option<&str>, card: Option<&Card>) -> Option<SeenCard> {
    if payment_method.is_none() && card.is_none() {
        return None;
    }
    Some(SeenCard {
        payment_method: payment_method.map(str::to_owned),
        brand: card.and_then(|c| c.brand.clone()),
        last4: card.and_then(|c| c.last4.clone()),
        exp_month: card.and_then(|c| c.exp_month),
        exp_year: card.and_then(|c| c.exp_year),
    })
}

fn seen_card(ch: &Charge) -> Option<SeenCard> {
    let card = ch
        .payment_method_details
        .as_ref()
        .and_then(|d| d.card.as_ref());
    card_of(ch.payment_method.as_deref(), card)
}

fn method_card(pm: &PaymentMethod) -> Option<SeenCard> {
    card_of(Some(&pm.id), Some(pm.card.as_ref()?))
}

/// The card an intent was paid (or declined) with: its charge's, else its payment
/// method's or its last error's when they came expanded. The first that tells the last
/// 4 digits wins.
pub fn intent_card(pi: &PaymentIntent) -> Option<SeenCard> {
    let expanded =
        |pm: Option<&Expandable<PaymentMethod>>| pm.and_then(|p| p.object()).and_then(method_card);
    let seen = [
        pi.charge().and_then(seen_card),
        expanded(pi.payment_method.as_ref()),
        expanded(
            pi.last_payment_error
                .as_ref()
                .and_then(|e| e.payment_method.as_ref()),
        ),
    ];
    let first = seen.iter().flatten().next().cloned();
    seen.into_iter()
        .flatten()
        .find(|c| c.last4.is_some())
        .or(first)
}

fn read_charge(what: &str, ch: &Charge, at: i64) -> Option<Reading> {
    let mut r = Reading::default();
    r.refs.charge = Some(ch.id.clone());
    r.refs.payment_intent = ch.payment_intent.as_ref().map(|p| p.id().to_owned());
    r.refs.customer = ch.customer.as_ref().map(|c| c.id().to_owned());
    r.refs.take_metadata(ch.metadata.as_ref());
    r.amount = ch.currency.clone().map(|c| (ch.amount, c));
    r.card = seen_card(ch);
    let captured = ch
        .amount_captured
        .unwrap_or(if ch.captured { ch.amount } else { 0 });
    r.payment = match what {
        "succeeded" if ch.captured => vec![PaymentFact::Succeeded {
            amount_captured: captured,
        }],
        "succeeded" => vec![PaymentFact::RequiresCapture {
            amount_capturable: ch.amount,
        }],
        "captured" => vec![PaymentFact::Succeeded {
            amount_captured: captured,
        }],
        "failed" => vec![PaymentFact::Failed(Failure {
            at,
            code: ch.failure_code.clone(),
            decline_code: ch.outcome.as_ref().and_then(|o| o.reason.clone()),
            message: ch.failure_message.clone(),
        })],
        // Refunds are followed one by one (`refund.*`); the charge's total is not a fact
        // of its own (a refund that later fails lowers it again).
        "refunded" => vec![],
        _ => return None,
    };
    Some(invoice_payment(r, ch.invoice.is_some()))
}

/// A refund as an event (or an API answer) reports it.
pub fn refund_reading(rf: &Refund) -> Option<RefundReading> {
    Some(RefundReading {
        provider_refund: rf.id.clone(),
        ours: rf
            .metadata
            .as_ref()
            .and_then(|m| m.get(META_REFUND).cloned()),
        amount: rf.amount,
        currency: rf.currency.clone(),
        status: RefundStatus::parse(rf.status.as_deref().unwrap_or("pending"))?,
        reason: rf.reason.clone(),
        failure_reason: rf.failure_reason.clone(),
    })
}

fn read_refund(rf: &Refund) -> Reading {
    let mut r = Reading::default();
    r.refs.payment_intent = rf.payment_intent.as_ref().map(|p| p.id().to_owned());
    r.refs.charge = rf.charge.as_ref().map(|c| c.id().to_owned());
    r.refs.take_metadata(rf.metadata.as_ref());
    r.refund = refund_reading(rf);
    r
}

fn read_dispute(what: &str, d: &Dispute) -> Option<Reading> {
    let mut r = Reading::default();
    r.refs.payment_intent = d.payment_intent.as_ref().map(|p| p.id().to_owned());
    r.refs.charge = d.charge.as_ref().map(|c| c.id().to_owned());
    let state = match (what, d.status.as_deref()) {
        (_, Some("won")) => DisputeState::Won,
        (_, Some("lost")) => DisputeState::Lost,
        ("created" | "updated" | "closed", _) => DisputeState::Open,
        _ => return None,
    };
    r.payment.push(PaymentFact::Dispute(state));
    Some(r)
}

/// A subscription's state as an event (or an API answer) reports it.
pub fn subscription_reading(sub: &Subscription, at: i64) -> Option<SubscriptionReading> {
    let (start, end) = sub.period();
    let item = sub.items.as_ref().and_then(|l| l.data.first());
    Some(SubscriptionReading {
        provider_subscription: sub.id.clone(),
        ours: sub
            .metadata
            .as_ref()
            .and_then(|m| m.get(META_SUBSCRIPTION).cloned()),
        status: SubscriptionStatus::parse(sub.status.as_deref()?)?,
        at,
        current_period_start: start,
        current_period_end: end,
        cancel_at_period_end: sub.cancel_at_period_end.unwrap_or(false),
        canceled_at: sub.canceled_at,
        customer: sub.customer.as_ref().map(|c| c.id().to_owned()),
        price: item.and_then(|i| {
            i.price
                .as_ref()
                .map(|p| p.id().to_owned())
                .or_else(|| i.plan.as_ref().map(|p| p.id().to_owned()))
        }),
    })
}

fn read_subscription(what: &str, sub: &Subscription, at: i64) -> Option<Reading> {
    if !matches!(what, "created" | "updated" | "deleted") {
        return None;
    }
    let mut reading = subscription_reading(sub, at)?;
    if what == "deleted" {
        reading.status = SubscriptionStatus::Canceled;
    }
    Some(Reading {
        subscription: Some(reading),
        ..Reading::default()
    })
}

fn read_invoice(what: &str, inv: &Invoice, at: i64) -> Option<Reading> {
    let (paid, action_required) = match what {
        "paid" | "payment_succeeded" => (true, false),
        "payment_failed" => (false, false),
        "payment_action_required" => (false, true),
        _ => return None,
    };
    let currency = inv.currency.clone()?;
    Some(Reading {
        invoice: Some(InvoiceReading {
            provider_invoice: inv.id.clone(),
            provider_subscription: inv.subscription.as_ref().map(|s| s.id().to_owned()),
            subscription: inv
                .subscription_details
                .as_ref()
                .and_then(|d| d.metadata.as_ref())
                .and_then(|m| m.get(META_SUBSCRIPTION).cloned()),
            paid,
            action_required,
            amount: if paid {
                inv.amount_paid
            } else {
                inv.amount_due
            },
            currency,
            billing_reason: inv.billing_reason.clone(),
            payment_intent: inv.payment_intent.as_ref().map(|p| p.id().to_owned()),
            charge: inv.charge.as_ref().map(|c| c.id().to_owned()),
            period_end: inv.period_end,
            at,
        }),
        ..Reading::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, object: Value) -> Event {
        let body = serde_json::json!({"id": "evt_1", "type": kind, "created": 100, "livemode": false, "data": {"object": object}});
        parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn envelopes_need_an_id_a_type_and_an_object() {
        assert!(parse(b"not json").is_err());
        assert_eq!(
            parse(br#"{"type":"x","data":{"object":{}}}"#).unwrap_err(),
            EventError::Missing("id")
        );
        assert_eq!(
            parse(br#"{"id":"evt_1","data":{"object":{}}}"#).unwrap_err(),
            EventError::Missing("type")
        );
        assert_eq!(
            parse(br#"{"id":"evt_1","type":"x","data":{"object":3}}"#).unwrap_err(),
            EventError::Missing("data.object")
        );
        assert!(parse(br#"{"id":"evt_1","type":"x","data":{"object":{}}}"#).is_ok());
    }

    #[test]
    fn an_event_holding_u0000_anywhere_is_refused() {
        for body in [
            br#"{"id":"evt_\u0000","type":"x","data":{"object":{}}}"#.as_slice(),
            br#"{"id":"evt_1","type":"x\u0000","data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"x","account":"acct_\u0000","data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"x","data":{"object":{"id":"pi_\u0000"}}}"#,
            br#"{"id":"evt_1","type":"x","data":{"object":{"metadata":{"k\u0000":"v"}}}}"#,
            br#"{"id":"evt_1","type":"x","data":{"object":{"lines":[{"d":"\u0000"}]}}}"#,
        ] {
            assert_eq!(
                parse(body).unwrap_err(),
                EventError::Nul,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // An escaped backslash followed by "u0000" is six ordinary characters.
        let ok = parse(br#"{"id":"evt_1","type":"x","data":{"object":{"d":"\\u0000"}}}"#).unwrap();
        assert_eq!(ok.object["d"], "\\u0000");
        // Outside the envelope's fields and the object, it is not stored as a string.
        assert!(parse(
            br#"{"id":"evt_1","type":"x","request":{"id":"\u0000"},"data":{"object":{}}}"#
        )
        .is_ok());
    }

    #[test]
    fn a_completed_checkout_pays_the_payment_its_metadata_names() {
        let r = read(&event(
            "checkout.session.completed",
            serde_json::json!({"id": "cs_1", "payment_status": "paid", "amount_total": 500, "currency": "jpy",
                "payment_intent": "pi_1", "metadata": {"pb_payment": "payment_9", "pb_checkout": "checkout_9"}}),
        ))
        .unwrap();
        assert_eq!(r.refs.payment.as_deref(), Some("payment_9"));
        assert_eq!(r.refs.payment_intent.as_deref(), Some("pi_1"));
        assert_eq!(
            r.payment,
            vec![PaymentFact::Succeeded {
                amount_captured: 500
            }]
        );
        assert_eq!(r.checkout, Some(CheckoutStatus::Complete));
        assert_eq!(r.amount, Some((500, "jpy".into())));
    }

    #[test]
    fn declines_carry_their_codes() {
        let r = read(&event(
            "payment_intent.payment_failed",
            serde_json::json!({"id": "pi_1", "status": "requires_payment_method", "amount": 1000, "currency": "usd",
                "last_payment_error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}}),
        ))
        .unwrap();
        match &r.payment[0] {
            PaymentFact::Failed(f) => {
                assert_eq!(f.decline_code.as_deref(), Some("insufficient_funds"));
                assert_eq!(f.at, 100);
            }
            other => panic!("{other:?}"),
        }
        let r = read(&event(
            "charge.failed",
            serde_json::json!({"id": "ch_1", "amount": 1000, "currency": "usd", "payment_intent": "pi_1",
                "failure_code": "expired_card", "outcome": {"reason": "expired_card"}}),
        ))
        .unwrap();
        assert!(
            matches!(&r.payment[0], PaymentFact::Failed(f) if f.code.as_deref() == Some("expired_card"))
        );
    }

    #[test]
    fn authorisations_and_captures() {
        let auth = read(&event(
            "charge.succeeded",
            serde_json::json!({"id": "ch_1", "amount": 800, "captured": false, "currency": "usd", "payment_intent": "pi_1",
                "payment_method": "pm_1", "payment_method_details": {"card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034}}}),
        ))
        .unwrap();
        assert_eq!(
            auth.payment,
            vec![PaymentFact::RequiresCapture {
                amount_capturable: 800
            }]
        );
        assert_eq!(auth.card.unwrap().last4.as_deref(), Some("4242"));
        let cap = read(&event(
            "charge.captured",
            serde_json::json!({"id": "ch_1", "amount": 800, "amount_captured": 600, "captured": true, "currency": "usd"}),
        ))
        .unwrap();
        assert_eq!(
            cap.payment,
            vec![PaymentFact::Succeeded {
                amount_captured: 600
            }]
        );
    }

    #[test]
    fn the_card_is_read_from_the_charge_the_payment_method_or_the_decline() {
        let card = |r: Reading| r.card.map(|c| (c.payment_method, c.brand, c.last4));
        let some = |pm: &str, brand: &str, last4: &str| {
            Some((
                Some(pm.to_owned()),
                Some(brand.to_owned()),
                Some(last4.to_owned()),
            ))
        };
        // A decline names the card only in its error (Stripe expands it there).
        let failed = read(&event(
            "payment_intent.payment_failed",
            serde_json::json!({"id": "pi_1", "status": "requires_payment_method", "amount": 1000, "currency": "usd",
                "payment_method": null, "latest_charge": "ch_1",
                "last_payment_error": {"type": "card_error", "code": "card_declined",
                    "payment_method": {"id": "pm_9", "type": "card", "card": {"brand": "mastercard", "last4": "4444"}}}}),
        ))
        .unwrap();
        assert_eq!(card(failed), some("pm_9", "mastercard", "4444"));
        // A payment method Stripe sent as an object, an embedded charge's details first.
        let paid = read(&event(
            "payment_intent.succeeded",
            serde_json::json!({"id": "pi_1", "status": "succeeded", "amount": 1000, "currency": "usd",
                "payment_method": {"id": "pm_1", "card": {"brand": "visa", "last4": "1111"}},
                "latest_charge": {"id": "ch_1", "payment_method": "pm_2",
                    "payment_method_details": {"card": {"brand": "amex", "last4": "0005"}}}}),
        ))
        .unwrap();
        assert_eq!(card(paid), some("pm_2", "amex", "0005"));
        let by_method = read(&event(
            "payment_intent.succeeded",
            serde_json::json!({"id": "pi_1", "status": "succeeded", "amount": 1000, "currency": "usd",
                "payment_method": {"id": "pm_1", "card": {"brand": "visa", "last4": "1111"}}, "latest_charge": "ch_1"}),
        ))
        .unwrap();
        assert_eq!(card(by_method), some("pm_1", "visa", "1111"));
        // Only ids: no card.
        let ids = read(&event(
            "payment_intent.succeeded",
            serde_json::json!({"id": "pi_1", "status": "succeeded", "amount": 1000, "currency": "usd",
                "payment_method": "pm_1", "latest_charge": "ch_1", "last_payment_error": {"payment_method": 7}}),
        ))
        .unwrap();
        assert_eq!(card(ids), None);
        // A completed checkout whose intent came expanded.
        let done = read(&event(
            "checkout.session.completed",
            serde_json::json!({"id": "cs_1", "payment_status": "paid", "amount_total": 500, "currency": "usd",
                "payment_intent": {"id": "pi_1", "status": "succeeded", "amount": 500, "currency": "usd",
                    "latest_charge": {"id": "ch_1", "payment_method": "pm_3", "payment_method_details": {"card": {"brand": "visa", "last4": "4242"}}}}}),
        ))
        .unwrap();
        assert_eq!(card(done), some("pm_3", "visa", "4242"));
    }

    #[test]
    fn refunds_subscriptions_invoices_and_disputes() {
        let r = read(&event(
            "refund.updated",
            serde_json::json!({"id": "re_1", "amount": 300, "currency": "usd", "status": "succeeded", "payment_intent": "pi_1", "metadata": {"pb_refund": "refund_1"}}),
        ))
        .unwrap();
        let rf = r.refund.unwrap();
        assert_eq!(
            (rf.ours.as_deref(), rf.status, rf.amount),
            (Some("refund_1"), RefundStatus::Succeeded, 300)
        );
        assert_eq!(r.refs.payment_intent.as_deref(), Some("pi_1"));
        let s = read(&event(
            "customer.subscription.deleted",
            serde_json::json!({"id": "sub_1", "status": "active", "items": {"data": [{"price": {"id": "price_1"}, "current_period_end": 99}]}}),
        ))
        .unwrap()
        .subscription
        .unwrap();
        assert_eq!(
            (s.status, s.current_period_end, s.price.as_deref()),
            (SubscriptionStatus::Canceled, Some(99), Some("price_1"))
        );
        let i = read(&event(
            "invoice.payment_failed",
            serde_json::json!({"id": "in_1", "subscription": "sub_1", "amount_due": 1500, "amount_paid": 0, "currency": "usd", "billing_reason": "subscription_cycle"}),
        ))
        .unwrap()
        .invoice
        .unwrap();
        assert_eq!((i.paid, i.amount), (false, 1500));
        let d = read(&event("charge.dispute.closed", serde_json::json!({"id": "dp_1", "status": "won", "charge": "ch_1", "payment_intent": "pi_1"}))).unwrap();
        assert_eq!(d.payment, vec![PaymentFact::Dispute(DisputeState::Won)]);
    }

    #[test]
    fn an_intent_awaiting_authentication_requires_action() {
        // The on-session shape (and localstripe's answer for 4000 0025 0000 3155).
        let r = read(&event(
            "payment_intent.requires_action",
            serde_json::json!({"id": "pi_1", "status": "requires_action", "amount": 1000, "currency": "usd",
                "next_action": {"type": "use_stripe_sdk"}, "metadata": {"pb_payment": "payment_1"}}),
        ))
        .unwrap();
        assert_eq!(r.payment, vec![PaymentFact::RequiresAction]);
        // Stripe's off-session shape: the attempt failed with `authentication_required`.
        let r = read(&event(
            "payment_intent.payment_failed",
            serde_json::json!({"id": "pi_1", "status": "requires_payment_method", "amount": 1000, "currency": "usd",
                "last_payment_error": {"type": "card_error", "code": "authentication_required", "decline_code": "authentication_required",
                    "payment_method": {"id": "pm_1", "object": "payment_method"}}}),
        ))
        .unwrap();
        assert_eq!(r.payment, vec![PaymentFact::RequiresAction]);
        // Authentication that failed is a failure.
        let r = read(&event(
            "payment_intent.payment_failed",
            serde_json::json!({"id": "pi_1", "status": "requires_payment_method", "amount": 1000, "currency": "usd",
                "last_payment_error": {"type": "invalid_request_error", "code": "payment_intent_authentication_failure"}}),
        ))
        .unwrap();
        assert!(
            matches!(&r.payment[0], PaymentFact::Failed(f) if f.code.as_deref() == Some("payment_intent_authentication_failure"))
        );
        let i = read(&event(
            "invoice.payment_action_required",
            serde_json::json!({"id": "in_1", "subscription": "sub_1", "amount_due": 1500, "amount_paid": 0, "currency": "usd",
                "billing_reason": "subscription_cycle", "payment_intent": "pi_2"}),
        ))
        .unwrap()
        .invoice
        .unwrap();
        assert_eq!((i.paid, i.action_required, i.amount), (false, true, 1500));
        assert!(HANDLED.contains(&"invoice.payment_action_required"));
    }

    #[test]
    fn unhandled_or_mistyped_events_read_as_nothing() {
        assert!(read(&event(
            "customer.created",
            serde_json::json!({"id": "cus_1"})
        ))
        .is_none());
        assert!(read(&event(
            "payment_intent.succeeded",
            serde_json::json!({"id": 5})
        ))
        .is_none());
        assert!(read(&event(
            "checkout.session.unknown",
            serde_json::json!({"id": "cs_1"})
        ))
        .is_none());
    }
}
