//! How paybridge's objects look from outside: in API responses, and as the `data` of
//! our events. One view per object, built from its stored row.

use std::collections::BTreeMap;

use paybridge_store::checkouts::CheckoutRow;
use paybridge_store::customers::{CardRow, CustomerRow};
use paybridge_store::events::EventRow;
use paybridge_store::orders::OrderRow;
use paybridge_store::payments::PaymentRow;
use paybridge_store::provider_events::ProviderEventRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn metadata(json: &str) -> BTreeMap<String, String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// The provider's ids for a payment.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ProviderIds {
    pub payment_intent: Option<String>,
    pub checkout_session: Option<String>,
    pub charge: Option<String>,
}

/// What the customer must do before a payment can go on.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct NextActionView {
    /// Always `authenticate`: the bank asks the customer to authenticate the charge
    /// (3-D Secure).
    #[serde(rename = "type")]
    pub kind: String,
    /// paybridge's page where the customer authenticates: send them there (a link in
    /// an email, or `payments.authenticate` in the SDK). It carries a token that opens
    /// only this payment's page; it is not a client secret.
    pub url: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct FailureView {
    pub code: Option<String>,
    /// The issuer's reason for a card decline (`insufficient_funds`, …).
    pub decline_code: Option<String>,
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct PaymentView {
    pub id: String,
    /// Always `payment`.
    pub object: String,
    pub order: String,
    pub customer: Option<String>,
    /// `initiated`, `pending`, `requires_action`, `processing`, `requires_capture`,
    /// `succeeded`, `partially_refunded`, `refunded`, `failed`, `canceled`, `expired` or
    /// `disputed`.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub amount_capturable: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    /// `checkout`, `payment_link`, `payment_intent` or `card`.
    pub method: String,
    /// `automatic` or `manual`.
    pub capture: String,
    /// `stripe` or `sandbox`.
    pub provider_name: String,
    pub provider: ProviderIds,
    /// The hosted page that takes the payment (`checkout` and `payment_link`).
    pub payment_url: Option<String>,
    /// While the payment is `requires_action`: where the customer authenticates it.
    #[serde(default)]
    pub next_action: Option<NextActionView>,
    /// For a custom card form (`payment_intent`): hand it to the browser only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The saved card charged (`card`).
    pub payment_method: Option<String>,
    /// The card the payment was made (or declined) with, as the provider reported it:
    /// null until it has (and for a way to pay that is not a card).
    pub card: Option<PaymentCardView>,
    pub failure: Option<FailureView>,
    /// `none`, `open`, `won` or `lost`.
    pub dispute: String,
    pub application_fee_amount: Option<i64>,
    pub transfer_destination: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub updated: i64,
}

/// A card's brand and last 4 digits: what a shop owner recognises a card by.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct PaymentCardView {
    /// `visa`, `mastercard`, `amex`, … as the provider names it.
    pub brand: Option<String>,
    /// The last 4 digits of the card number.
    pub last4: String,
}

impl PaymentView {
    /// The view without the client secret (events and lists never carry it).
    pub fn of(p: &PaymentRow) -> PaymentView {
        PaymentView {
            id: p.id.clone(),
            object: "payment".into(),
            order: p.order_id.clone(),
            customer: p.customer_id.clone(),
            status: p.status.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            amount_capturable: if p.lifecycle == "requires_capture" {
                p.amount_capturable
            } else {
                0
            },
            amount_captured: p.amount_captured,
            amount_refunded: p.amount_refunded,
            method: p.method.clone(),
            capture: p.capture_method.clone(),
            provider_name: p.provider.clone(),
            provider: ProviderIds {
                payment_intent: p.provider_payment_intent.clone(),
                checkout_session: p.provider_checkout_session.clone(),
                charge: p.provider_charge.clone(),
            },
            payment_url: p.payment_url.clone(),
            next_action: super::authentication::url(p).map(|url| NextActionView {
                kind: "authenticate".into(),
                url,
            }),
            client_secret: None,
            payment_method: p.payment_method_id.clone(),
            card: p.card_last4.as_ref().map(|last4| PaymentCardView {
                brand: p.card_brand.clone(),
                last4: last4.clone(),
            }),
            // The latest failure, while it is the payment's state (a retry that
            // succeeded leaves it in the event history only).
            failure: (p.lifecycle == "failed").then(|| FailureView {
                code: p.failure_code.clone(),
                decline_code: p.decline_code.clone(),
                message: p.failure_message.clone(),
            }),
            dispute: p.dispute.clone(),
            application_fee_amount: p.application_fee_amount,
            transfer_destination: p.transfer_destination.clone(),
            metadata: metadata(&p.metadata),
            created: p.created,
            updated: p.updated,
        }
    }
}

/// One line of an order, as sold: the price is copied, so later catalog changes do
/// not change what was bought.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct LineItemView {
    pub product: Option<String>,
    pub name: String,
    pub unit_amount: i64,
    pub quantity: i64,
    pub amount: i64,
    /// The provider's price, when the product has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_price_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring: Option<RecurringView>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct RecurringView {
    pub interval: String,
    pub interval_count: i64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct OrderView {
    pub id: String,
    /// Always `order`.
    pub object: String,
    pub customer: Option<String>,
    /// `open`, `paid`, `partially_refunded` or `refunded`.
    pub status: String,
    pub currency: String,
    pub amount_total: i64,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    /// `amount_total - amount_paid`.
    pub amount_outstanding: i64,
    pub line_items: Vec<LineItemView>,
    pub subscription: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Lets a front end with a publishable key read this order and follow its stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The order's payments (on a single order's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payments: Option<Vec<PaymentView>>,
    /// The order's refunds (on a single order's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunds: Option<Vec<RefundView>>,
    pub created: i64,
    pub updated: i64,
}

impl OrderView {
    pub fn of(o: &OrderRow) -> OrderView {
        OrderView {
            id: o.id.clone(),
            object: "order".into(),
            customer: o.customer_id.clone(),
            status: o.status.clone(),
            currency: o.currency.clone(),
            amount_total: o.amount_total,
            amount_paid: o.amount_paid,
            amount_refunded: o.amount_refunded,
            amount_outstanding: (o.amount_total - o.amount_paid).max(0),
            line_items: serde_json::from_str(&o.line_items).unwrap_or_default(),
            subscription: o.subscription_id.clone(),
            metadata: metadata(&o.metadata),
            client_secret: None,
            payments: None,
            refunds: None,
            created: o.created,
            updated: o.updated,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct CheckoutView {
    pub id: String,
    /// Always `checkout.session`.
    pub object: String,
    /// The hosted page to send the customer to.
    pub url: Option<String>,
    pub order: String,
    pub payment: String,
    pub customer: Option<String>,
    pub mode: String,
    /// `open`, `complete` or `expired`.
    pub status: String,
    pub success_url: String,
    pub cancel_url: String,
    pub save_card: bool,
    pub expires_at: i64,
    pub provider_session_id: Option<String>,
    /// The order's client secret, for a publishable key to follow its status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub created: i64,
}

impl CheckoutView {
    pub fn of(c: &CheckoutRow) -> CheckoutView {
        CheckoutView {
            id: c.id.clone(),
            object: "checkout.session".into(),
            url: c.url.clone(),
            order: c.order_id.clone(),
            payment: c.payment_id.clone(),
            customer: c.customer_id.clone(),
            mode: c.mode.clone(),
            status: c.status.clone(),
            success_url: c.success_url.clone(),
            cancel_url: c.cancel_url.clone(),
            save_card: c.save_card == 1,
            expires_at: c.expires_at,
            provider_session_id: c.provider_session_id.clone(),
            client_secret: None,
            amount_total: None,
            currency: None,
            created: c.created,
        }
    }

    /// The checkout with what it charges (its payment's amount and currency).
    pub fn with_payment(c: &CheckoutRow, p: Option<&PaymentRow>) -> CheckoutView {
        let mut v = CheckoutView::of(c);
        if let Some(p) = p.filter(|p| p.id == c.payment_id) {
            v.amount_total = Some(p.amount);
            v.currency = Some(p.currency.clone());
        }
        v
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct CustomerView {
    pub id: String,
    /// Always `customer`.
    pub object: String,
    pub external_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub default_payment_method: Option<String>,
    pub provider_customer_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

impl CustomerView {
    pub fn of(c: &CustomerRow) -> CustomerView {
        CustomerView {
            id: c.id.clone(),
            object: "customer".into(),
            external_id: c.external_id.clone(),
            email: c.email.clone(),
            name: c.name.clone(),
            default_payment_method: c.default_payment_method.clone(),
            provider_customer_id: c.provider_customer_id.clone(),
            metadata: metadata(&c.metadata),
            created: c.created,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct CardView {
    pub id: String,
    /// Always `payment_method`.
    pub object: String,
    pub customer: String,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub provider_payment_method_id: String,
    pub default: bool,
    pub created: i64,
}

impl CardView {
    pub fn of(c: &CardRow, default: Option<&str>) -> CardView {
        CardView {
            id: c.id.clone(),
            object: "payment_method".into(),
            customer: c.customer_id.clone(),
            brand: c.brand.clone(),
            last4: c.last4.clone(),
            exp_month: c.exp_month,
            exp_year: c.exp_year,
            provider_payment_method_id: c.provider_payment_method_id.clone(),
            default: default == Some(c.id.as_str()),
            created: c.created,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    /// Always `event`.
    pub object: &'static str,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: EventData,
}

#[derive(Serialize, ToSchema)]
pub struct EventData {
    #[schema(value_type = Object)]
    pub object: serde_json::Value,
}

impl EventView {
    pub fn of(e: &EventRow) -> EventView {
        EventView {
            id: e.id.clone(),
            object: "event",
            kind: e.kind.clone(),
            created: e.created,
            data: EventData {
                object: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null),
            },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderEventView {
    /// The provider's event id (`evt_…`).
    pub id: String,
    /// Always `provider_event`.
    pub object: &'static str,
    #[serde(rename = "type")]
    pub kind: String,
    pub livemode: bool,
    /// When the provider created it (unix seconds).
    pub created: i64,
    pub object_id: Option<String>,
    /// How many times it arrived.
    pub received_count: i64,
    pub first_received: i64,
    pub last_received: i64,
    /// `processed`, `ignored`, `pending` (its object not known yet; retried), `failed`,
    /// or `rejected` (it breaks the ledger's invariants: not applied, never retried).
    pub outcome: String,
    pub detail: Option<String>,
    pub attempts: i64,
    /// The event as received (on a single event's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

impl ProviderEventView {
    pub fn of(e: &ProviderEventRow, with_payload: bool) -> ProviderEventView {
        ProviderEventView {
            id: e.id.clone(),
            object: "provider_event",
            kind: e.kind.clone(),
            livemode: e.livemode == 1,
            created: e.created,
            object_id: e.object_id.clone(),
            received_count: e.received_count,
            first_received: e.first_received,
            last_received: e.last_received,
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
            attempts: e.attempts,
            payload: with_payload
                .then(|| serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null)),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct RefundView {
    pub id: String,
    /// Always `refund`.
    pub object: String,
    pub payment: String,
    pub order: String,
    pub amount: i64,
    pub currency: String,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    pub reason: Option<String>,
    /// `pending`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    pub failure_reason: Option<String>,
    pub provider_refund_id: Option<String>,
    pub refund_application_fee: bool,
    pub reverse_transfer: bool,
    /// `api` (made through paybridge) or `provider` (found in the provider's events).
    pub source: String,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub updated: i64,
}

impl RefundView {
    pub fn of(r: &paybridge_store::refunds::RefundRow) -> RefundView {
        RefundView {
            id: r.id.clone(),
            object: "refund".into(),
            payment: r.payment_id.clone(),
            order: r.order_id.clone(),
            amount: r.amount,
            currency: r.currency.clone(),
            reason: r.reason.clone(),
            status: r.status.clone(),
            failure_reason: r.failure_reason.clone(),
            provider_refund_id: r.provider_refund_id.clone(),
            refund_application_fee: r.refund_application_fee == 1,
            reverse_transfer: r.reverse_transfer == 1,
            source: r.source.clone(),
            metadata: metadata(&r.metadata),
            created: r.created,
            updated: r.updated,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct SubscriptionView {
    pub id: String,
    /// Always `subscription`.
    pub object: String,
    pub customer: Option<String>,
    pub product: Option<String>,
    pub provider_price_id: Option<String>,
    pub quantity: i64,
    pub unit_amount: i64,
    pub currency: String,
    /// As Stripe's: `incomplete`, `trialing`, `active`, `past_due`, `canceled`, `unpaid`, …
    pub status: String,
    pub provider_subscription_id: Option<String>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub checkout: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub updated: i64,
}

impl SubscriptionView {
    pub fn of(s: &paybridge_store::subscriptions::SubscriptionRow) -> SubscriptionView {
        SubscriptionView {
            id: s.id.clone(),
            object: "subscription".into(),
            customer: s.customer_id.clone(),
            product: s.product_id.clone(),
            provider_price_id: s.provider_price_id.clone(),
            quantity: s.quantity,
            unit_amount: s.unit_amount,
            currency: s.currency.clone(),
            status: s.status.clone(),
            provider_subscription_id: s.provider_subscription_id.clone(),
            current_period_start: s.current_period_start,
            current_period_end: s.current_period_end,
            cancel_at_period_end: s.cancel_at_period_end == 1,
            canceled_at: s.canceled_at,
            checkout: s.checkout_id.clone(),
            metadata: metadata(&s.metadata),
            created: s.created,
            updated: s.updated,
        }
    }
}
