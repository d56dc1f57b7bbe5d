//! Stripe's objects as they arrive on the wire, parsed leniently: unknown fields are
//! ignored, absent fields take defaults, and fields Stripe may expand arrive either as
//! an id or as the object. The same types read API responses and webhook payloads,
//! from real Stripe, from local fakes (localstripe embeds objects where Stripe sends
//! ids) and from our sandbox. They stay apart from the domain types they map to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Metadata = BTreeMap<String, String>;

/// `null` reads as the type's default (fakes and older API versions send `null` where
/// Stripe documents a value).
fn nullable<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Any Stripe object, when all we need is its id.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Ref {
    pub id: String,
}

/// A field Stripe sends as an id, or as the object when expanded.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Expandable<T> {
    Id(String),
    Object(Box<T>),
}

pub trait HasId {
    fn id(&self) -> &str;
}

impl<T: HasId> Expandable<T> {
    pub fn id(&self) -> &str {
        match self {
            Expandable::Id(id) => id,
            Expandable::Object(o) => o.id(),
        }
    }

    pub fn object(&self) -> Option<&T> {
        match self {
            Expandable::Id(_) => None,
            Expandable::Object(o) => Some(o),
        }
    }
}

macro_rules! has_id {
    ($($t:ty),*) => { $(impl HasId for $t { fn id(&self) -> &str { &self.id } })* };
}

/// A webhook endpoint (`we_…`). Its `secret` is present only in the answer to the
/// call that created it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct WebhookEndpoint {
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub url: String,
    /// `enabled` or `disabled`.
    pub status: Option<String>,
    pub api_version: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub enabled_events: Vec<String>,
    pub metadata: Option<Metadata>,
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    pub livemode: bool,
}

/// A customer portal session (`bps_…`): where to send the customer.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PortalSession {
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub url: String,
    pub return_url: Option<String>,
    pub customer: Option<String>,
}

/// Stripe's `{"object":"list","data":[…],"has_more":…}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            data: Vec::new(),
            has_more: false,
        }
    }
}

/// Stripe's error object, in an error response or as `last_payment_error`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ErrorObject {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
    pub param: Option<String>,
    /// The card that was declined (a `last_payment_error`'s, or a card error's), also
    /// to confirm it again once authenticated. Read
    /// leniently: a shape this does not know leaves it out rather than failing the
    /// object around it.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<Expandable<PaymentMethod>>,
}

/// `None` for a value that does not read as `T`, instead of an error.
fn lenient<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Card {
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PaymentMethod {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub card: Option<Card>,
    pub customer: Option<Expandable<Ref>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InvoiceSettings {
    pub default_payment_method: Option<Expandable<PaymentMethod>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub invoice_settings: Option<InvoiceSettings>,
    pub metadata: Option<Metadata>,
    pub deleted: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PaymentMethodDetails {
    pub card: Option<Card>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Outcome {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub reason: Option<String>,
    pub seller_message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Charge {
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub amount: i64,
    pub amount_captured: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub amount_refunded: i64,
    #[serde(deserialize_with = "nullable")]
    pub captured: bool,
    pub paid: Option<bool>,
    pub status: Option<String>,
    pub currency: Option<String>,
    pub payment_intent: Option<Expandable<Ref>>,
    pub payment_method: Option<String>,
    pub payment_method_details: Option<PaymentMethodDetails>,
    pub customer: Option<Expandable<Ref>>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub outcome: Option<Outcome>,
    #[serde(deserialize_with = "nullable")]
    pub refunded: bool,
    pub disputed: Option<bool>,
    /// Set when the charge paid a subscription invoice.
    pub invoice: Option<Expandable<Ref>>,
    pub metadata: Option<Metadata>,
    #[serde(deserialize_with = "nullable")]
    pub created: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PaymentIntent {
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub amount: i64,
    #[serde(deserialize_with = "nullable")]
    pub amount_capturable: i64,
    pub amount_received: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub currency: String,
    pub client_secret: Option<String>,
    pub capture_method: Option<String>,
    pub customer: Option<Expandable<Ref>>,
    pub payment_method: Option<Expandable<PaymentMethod>>,
    pub latest_charge: Option<Expandable<Charge>>,
    /// Older API versions (and localstripe) list the charges here.
    pub charges: Option<List<Charge>>,
    pub last_payment_error: Option<ErrorObject>,
    pub metadata: Option<Metadata>,
    pub application_fee_amount: Option<i64>,
    /// Set when the intent pays a subscription invoice.
    pub invoice: Option<Expandable<Ref>>,
    #[serde(deserialize_with = "nullable")]
    pub created: i64,
}

impl PaymentIntent {
    /// The charge behind the intent, when it came embedded.
    pub fn charge(&self) -> Option<&Charge> {
        self.latest_charge
            .as_ref()
            .and_then(|c| c.object())
            .or_else(|| self.charges.as_ref().and_then(|l| l.data.last()))
    }

    /// How much was captured: `amount_received`, or (when a fake omits it) what the
    /// charge says, or for a succeeded intent its amount.
    pub fn captured(&self) -> i64 {
        self.amount_received
            .filter(|a| *a > 0)
            .or_else(|| {
                self.charge()
                    .and_then(|c| c.amount_captured)
                    .filter(|a| *a > 0)
            })
            .unwrap_or(if self.status == "succeeded" {
                self.amount
            } else {
                0
            })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CheckoutSession {
    pub id: String,
    pub status: Option<String>,
    pub payment_status: Option<String>,
    pub mode: Option<String>,
    pub url: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub expires_at: Option<i64>,
    pub customer: Option<Expandable<Ref>>,
    pub client_reference_id: Option<String>,
    pub payment_intent: Option<Expandable<PaymentIntent>>,
    pub subscription: Option<Expandable<Ref>>,
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Recurring {
    pub interval: Option<String>,
    pub interval_count: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Product {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub active: Option<bool>,
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Price {
    pub id: String,
    pub active: Option<bool>,
    pub currency: Option<String>,
    pub unit_amount: Option<i64>,
    pub recurring: Option<Recurring>,
    pub product: Option<Expandable<Product>>,
    pub nickname: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Refund {
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub amount: i64,
    pub currency: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub failure_reason: Option<String>,
    pub payment_intent: Option<Expandable<Ref>>,
    pub charge: Option<Expandable<Ref>>,
    pub metadata: Option<Metadata>,
    #[serde(deserialize_with = "nullable")]
    pub created: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SubscriptionItem {
    pub price: Option<Expandable<Price>>,
    pub plan: Option<Expandable<Ref>>,
    pub quantity: Option<i64>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Subscription {
    pub id: String,
    pub status: Option<String>,
    pub customer: Option<Expandable<Ref>>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: Option<bool>,
    pub canceled_at: Option<i64>,
    pub latest_invoice: Option<Expandable<Ref>>,
    pub items: Option<List<SubscriptionItem>>,
    pub metadata: Option<Metadata>,
}

impl Subscription {
    /// The current period, from the subscription or (newer API versions) its item.
    pub fn period(&self) -> (Option<i64>, Option<i64>) {
        let item = self.items.as_ref().and_then(|l| l.data.first());
        (
            self.current_period_start
                .or_else(|| item.and_then(|i| i.current_period_start)),
            self.current_period_end
                .or_else(|| item.and_then(|i| i.current_period_end)),
        )
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Invoice {
    pub id: String,
    pub status: Option<String>,
    pub billing_reason: Option<String>,
    pub subscription: Option<Expandable<Ref>>,
    pub customer: Option<Expandable<Ref>>,
    #[serde(deserialize_with = "nullable")]
    pub amount_paid: i64,
    #[serde(deserialize_with = "nullable")]
    pub amount_due: i64,
    pub currency: Option<String>,
    pub payment_intent: Option<Expandable<Ref>>,
    pub charge: Option<Expandable<Ref>>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub metadata: Option<Metadata>,
    /// The subscription's metadata, copied onto its invoices.
    pub subscription_details: Option<SubscriptionDetails>,
    #[serde(deserialize_with = "nullable")]
    pub created: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SubscriptionDetails {
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Dispute {
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub amount: i64,
    pub currency: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub charge: Option<Expandable<Ref>>,
    pub payment_intent: Option<Expandable<Ref>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Account {
    pub id: String,
    pub email: Option<String>,
    pub country: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub charges_enabled: Option<bool>,
    pub payouts_enabled: Option<bool>,
    pub details_submitted: Option<bool>,
    pub metadata: Option<Metadata>,
    pub deleted: Option<bool>,
    pub created: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Transfer {
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub amount: i64,
    pub currency: Option<String>,
    pub destination: Option<Expandable<Ref>>,
    pub metadata: Option<Metadata>,
    pub created: Option<i64>,
}

has_id!(
    Ref,
    PaymentMethod,
    Customer,
    Charge,
    PaymentIntent,
    CheckoutSession,
    Product,
    Price,
    Refund,
    Subscription,
    Invoice,
    Dispute,
    Account,
    Transfer
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_or_expanded_objects_and_tolerates_nulls() {
        let pi: PaymentIntent = serde_json::from_str(
            r#"{"id":"pi_1","status":"succeeded","amount":500,"currency":"jpy","latest_charge":{"id":"ch_1","amount":500,"amount_captured":500,"captured":true},"unknown_field":{"x":1},"customer":null,"metadata":{"pb_payment":"payment_1"}}"#,
        )
        .unwrap();
        assert_eq!(pi.latest_charge.as_ref().unwrap().id(), "ch_1");
        assert_eq!(pi.captured(), 500);
        let pi: PaymentIntent =
            serde_json::from_str(r#"{"id":"pi_2","latest_charge":"ch_2","amount_received":300}"#)
                .unwrap();
        assert_eq!(pi.latest_charge.unwrap().id(), "ch_2");
        let cs: CheckoutSession = serde_json::from_str(
            r#"{"id":"cs_1","amount_total":null,"currency":null,"payment_intent":null}"#,
        )
        .unwrap();
        assert_eq!(cs.amount_total, None);
    }
}

#[cfg(test)]
mod null_tests {
    use super::*;

    #[test]
    fn nulls_read_as_defaults() {
        let pi: PaymentIntent =
            serde_json::from_str(r#"{"id":"pi_1","status":"requires_capture","amount":1000,"amount_capturable":null,"currency":"usd","created":null}"#)
                .unwrap();
        assert_eq!(pi.amount_capturable, 0);
        let ch: Charge = serde_json::from_str(
            r#"{"id":"ch_1","amount":5,"amount_refunded":null,"captured":null}"#,
        )
        .unwrap();
        assert!(!ch.captured);
    }
}
