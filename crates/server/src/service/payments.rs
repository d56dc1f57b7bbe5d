//! Taking money: hosted checkouts (checkout sessions and payment links), payment
//! intents for custom card forms, off-session charges of saved cards, capture and
//! cancel.
//!
//! Every flow writes our records first (the payment as `initiated`), then calls the
//! provider with metadata naming our records and an idempotency key derived from our
//! id, then records the provider's answer through the ledger. So a webhook that beats
//! our own call's answer still finds its payment, and a retried call cannot charge
//! twice. No transaction is held across a provider call.

use std::collections::BTreeMap;

use paybridge_core::ids::{CheckoutId, PaymentId};
use paybridge_core::payment::{Failure, PaymentFact};
use paybridge_core::stripe::event::{
    intent_facts, META_APP, META_CHECKOUT, META_ORDER, META_PAYMENT,
};
use paybridge_core::stripe::objects::{CheckoutSession, PaymentIntent};
use paybridge_core::{Currency, Invalid, Money, ProviderKind};
use paybridge_provider::{LineItem, NewCheckout, NewPaymentIntent, ProviderError};
use paybridge_store::checkouts::{self, CheckoutRow};
use paybridge_store::orders::{self, OrderRow};
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::{customers, now, Conn};

use super::ledger;
use super::orders::outstanding;
use super::provider::{bind, provider_error, Bound};
use super::views::LineItemView;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::state::AppState;

/// Checkout sessions live 30 minutes to 24 hours (Stripe's limits); 24 h by default.
pub const MIN_EXPIRES_IN: i64 = 30 * 60;
pub const MAX_EXPIRES_IN: i64 = 24 * 3600;

/// What every new payment needs, whatever its method.
pub struct PaymentSpec {
    /// `checkout`, `payment_link`, `payment_intent` or `card`.
    pub method: &'static str,
    pub manual_capture: bool,
    /// Default: what the order still has to be paid.
    pub amount: Option<i64>,
    pub customer: Option<String>,
    pub save_card: bool,
    pub payment_method: Option<String>,
    pub payment_method_types: Vec<String>,
    pub application_fee_amount: Option<i64>,
    pub transfer_destination: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub provider_options: Vec<(String, String)>,
}

pub struct HostedSpec {
    pub success_url: String,
    pub cancel_url: String,
    pub expires_in: i64,
    /// For a checkout in `subscription` mode: the subscription it starts.
    pub subscription: Option<paybridge_store::subscriptions::SubscriptionRow>,
}

/// Parameters `provider_options` may never set: they are paybridge's to decide.
const RESERVED: &[&str] = &[
    "amount",
    "currency",
    "line_items",
    "metadata",
    "mode",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "customer",
    "customer_creation",
    "expires_at",
    "payment_method",
    "confirm",
    "off_session",
    "capture_method",
    "setup_future_usage",
    "application_fee_amount",
    "transfer_data",
    "payment_intent_data[metadata]",
    "payment_intent_data[capture_method]",
    "payment_intent_data[setup_future_usage]",
    "payment_intent_data[application_fee_amount]",
    "payment_intent_data[transfer_data]",
    "subscription_data[metadata]",
    "amount_to_capture",
];

/// Validates pass-through Stripe parameters: `key[sub]=value` pairs that cannot touch
/// the amount, currency, line items or our metadata.
pub fn provider_options(
    options: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, Invalid> {
    if options.len() > 50 {
        return Err(Invalid::new(
            "provider_options",
            "parameter_invalid",
            "at most 50 provider options",
        ));
    }
    let mut out = Vec::with_capacity(options.len());
    for (k, v) in options {
        let param = format!("provider_options[{k}]");
        let well_formed = !k.is_empty()
            && k.len() <= 100
            && k.split('[').enumerate().all(|(i, part)| {
                let part = if i == 0 {
                    part
                } else {
                    part.strip_suffix(']').unwrap_or("!")
                };
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if !well_formed {
            return Err(Invalid::new(param, "parameter_invalid", "a provider option is a Stripe parameter name like `locale` or `payment_intent_data[description]`"));
        }
        if RESERVED.iter().any(|r| {
            k == r
                || k.starts_with(&format!("{r}["))
                || (!r.contains('[') && k.starts_with(&format!("{r}_"))) && k != "customer_email"
        }) {
            return Err(Invalid::new(
                param,
                "parameter_reserved",
                format!("`{k}` is set by paybridge and cannot be overridden"),
            ));
        }
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                return Err(Invalid::new(
                    param,
                    "parameter_invalid",
                    "a provider option's value is a string, number or boolean",
                ))
            }
        };
        if value.len() > 500 {
            return Err(Invalid::new(
                param,
                "parameter_invalid",
                "a provider option's value is at most 500 characters",
            ));
        }
        out.push((k.clone(), value));
    }
    Ok(out)
}

pub fn validate_url(param: &str, url: &str) -> Result<(), Invalid> {
    let ok = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .is_some();
    if !ok || url.len() > 2048 {
        return Err(Invalid::new(
            param,
            "url_invalid",
            "give an absolute http(s) URL",
        ));
    }
    Ok(())
}

fn metadata_for(app: &str, p: &PaymentRow, checkout: Option<&str>) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = serde_json::from_str(&p.metadata).unwrap_or_default();
    m.insert(META_APP.into(), app.into());
    m.insert(META_ORDER.into(), p.order_id.clone());
    m.insert(META_PAYMENT.into(), p.id.clone());
    if let Some(c) = checkout {
        m.insert(META_CHECKOUT.into(), c.into());
    }
    m
}

/// Stores the order if it is new and a payment for it, after checking that the order
/// can take this payment. Returns the payment (and the superseded open checkouts).
async fn reserve(
    conn: &mut Conn,
    bound: &Bound,
    new_order: Option<&OrderRow>,
    order_id: &str,
    spec: &PaymentSpec,
) -> ApiResult<(OrderRow, PaymentRow)> {
    let app = &bound.app_id;
    if let Some(o) = new_order {
        orders::insert(&mut *conn, o).await?;
    }
    let order = orders::lock(conn, app, order_id).await.or_404("order")?;
    if order.amount_total > 0 && order.amount_paid >= order.amount_total {
        return Err(ApiError::conflict(
            "order_already_paid",
            format!("order {} is already paid", order.id),
        )
        .with_param("order"));
    }
    if let (Some(c), Some(oc)) = (&spec.customer, &order.customer_id) {
        if c != oc {
            return Err(Invalid::new(
                "customer",
                "customer_mismatch",
                "the order belongs to another customer",
            )
            .into());
        }
    }
    let left = outstanding(conn, &order).await?;
    let amount = spec.amount.unwrap_or(left);
    if amount > left {
        return Err(Invalid::new(
            "amount",
            "amount_too_large",
            format!(
                "the order has {left} {} left to pay (payments in flight count against it)",
                order.currency
            ),
        )
        .into());
    }
    let currency = Currency::parse(&order.currency)?;
    Money::new(amount, currency)
        .map_err(|_| Invalid::new("amount", "invalid_amount", "amount must be positive"))?
        .validate_charge("amount")?;
    if let Some(fee) = spec.application_fee_amount {
        if fee < 0 || fee > amount {
            return Err(Invalid::new(
                "application_fee_amount",
                "invalid_amount",
                "the fee must be between 0 and the amount",
            )
            .into());
        }
    }
    let ts = now();
    let p = PaymentRow {
        id: PaymentId::generate().into_string(),
        app_id: app.clone(),
        order_id: order.id.clone(),
        customer_id: spec.customer.clone().or_else(|| order.customer_id.clone()),
        method: spec.method.to_owned(),
        capture_method: if spec.manual_capture {
            "manual"
        } else {
            "automatic"
        }
        .to_owned(),
        provider: bound.kind.as_str().to_owned(),
        lifecycle: "initiated".into(),
        status: "initiated".into(),
        amount,
        currency: order.currency.clone(),
        amount_capturable: 0,
        amount_captured: 0,
        amount_refunded: 0,
        amount_refunding: 0,
        dispute: "none".into(),
        failure_code: None,
        decline_code: None,
        failure_message: None,
        failure_at: None,
        save_card: i64::from(spec.save_card),
        payment_method_id: spec.payment_method.clone(),
        provider_payment_intent: None,
        provider_checkout_session: None,
        provider_charge: None,
        client_secret_sealed: None,
        payment_url: None,
        application_fee_amount: spec.application_fee_amount,
        transfer_destination: spec.transfer_destination.clone(),
        metadata: serde_json::to_string(&spec.metadata).unwrap_or_else(|_| "{}".into()),
        created: ts,
        updated: ts,
    };
    payments::insert(&mut *conn, &p).await?;
    Ok((order, p))
}

/// The provider customer id of a payment's customer (created at the provider if new).
async fn provider_customer(
    state: &AppState,
    bound: &Bound,
    customer: Option<&str>,
) -> ApiResult<Option<String>> {
    let Some(c) = customer else { return Ok(None) };
    let row = customers::get(state.db.reader(), &bound.app_id, c)
        .await
        .or_404("customer")?;
    let row = super::customers::ensure_provider_customer(state, bound, row).await?;
    Ok(row.provider_customer_id)
}

/// Records that a provider call failed: a refusal fails the payment; an outage leaves
/// it pending, to be settled by the reconciler (the outcome at the provider is unknown).
async fn record_failure(state: &AppState, p: &PaymentRow, e: &ProviderError) -> ApiResult<()> {
    let fact = match e {
        ProviderError::Unavailable { .. } => PaymentFact::Pending,
        ProviderError::Card {
            code,
            decline_code,
            message,
            ..
        } => PaymentFact::Failed(Failure {
            at: now(),
            code: code.clone(),
            decline_code: decline_code.clone(),
            message: Some(message.clone()),
        }),
        other => PaymentFact::Failed(Failure {
            at: now(),
            code: Some("provider_refused".into()),
            decline_code: None,
            message: Some(other.to_string()),
        }),
    };
    let mut tx = state.db.begin().await?;
    let before = payments::lock(&mut tx, &p.app_id, &p.id).await?;
    ledger::apply_payment_facts(&mut tx, &before, before.clone(), &[fact]).await?;
    if let Some(c) = checkout_of(&mut tx, &before).await? {
        if !matches!(e, ProviderError::Unavailable { .. }) {
            ledger::apply_checkout_status(
                &mut tx,
                &c,
                paybridge_core::payment::CheckoutStatus::Expired,
            )
            .await?;
        }
    }
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    Ok(())
}

async fn checkout_of(conn: &mut Conn, p: &PaymentRow) -> ApiResult<Option<CheckoutRow>> {
    Ok(checkouts::lock_by_refs(
        conn,
        &p.app_id,
        None,
        p.provider_checkout_session.as_deref(),
    )
    .await?
    .filter(|c| c.payment_id == p.id))
}

/// Records an intent the provider answered with: its ids, the client secret (sealed)
/// and the facts its state establishes.
pub async fn record_intent(
    state: &AppState,
    app: &str,
    payment: &str,
    pi: &PaymentIntent,
    keep_secret: bool,
) -> ApiResult<PaymentRow> {
    let mut tx = state.db.begin().await?;
    let before = payments::lock(&mut tx, app, payment).await?;
    if !pi.currency.eq_ignore_ascii_case(&before.currency) || pi.amount != before.amount {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            crate::error::ErrorType::ProviderError,
            "provider_amount_mismatch",
            format!(
                "the provider answered for {} {}, not {} {}",
                pi.amount, pi.currency, before.amount, before.currency
            ),
        ));
    }
    let mut p = before.clone();
    p.provider_payment_intent = Some(pi.id.clone());
    if let Some(c) = pi.latest_charge.as_ref() {
        p.provider_charge = Some(c.id().to_owned());
    }
    if keep_secret {
        if let Some(s) = &pi.client_secret {
            p.client_secret_sealed = Some(
                state
                    .vault
                    .seal(s, &format!("{app}/{payment}/client_secret")),
            );
        }
    }
    let facts = intent_facts(pi, now());
    let p = ledger::apply_payment_facts(&mut tx, &before, p, &facts).await?;
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    Ok(p)
}

/// The client secret of a payment intent, for the server key that created it.
pub fn client_secret(state: &AppState, p: &PaymentRow) -> Option<String> {
    use secrecy::ExposeSecret;
    let sealed = p.client_secret_sealed.as_deref()?;
    state
        .vault
        .open(sealed, &format!("{}/{}/client_secret", p.app_id, p.id))
        .ok()
        .map(|s| s.expose_secret().to_owned())
}

/// Starts a hosted payment (a checkout session, or a payment link) for an order.
pub async fn start_hosted(
    state: &AppState,
    app: &str,
    new_order: Option<OrderRow>,
    order_id: &str,
    spec: PaymentSpec,
    hosted: HostedSpec,
) -> ApiResult<(CheckoutRow, PaymentRow, OrderRow)> {
    validate_url("success_url", &hosted.success_url)?;
    validate_url("cancel_url", &hosted.cancel_url)?;
    if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&hosted.expires_in) {
        return Err(Invalid::new(
            "expires_in",
            "parameter_invalid",
            "expires_in must be 1800 to 86400 seconds",
        )
        .into());
    }
    if spec.save_card
        && spec.customer.is_none()
        && new_order
            .as_ref()
            .and_then(|o| o.customer_id.as_ref())
            .is_none()
    {
        return Err(Invalid::new(
            "save_card",
            "customer_required",
            "saving a card needs a `customer`",
        )
        .into());
    }
    let bound = bind(state, app).await?;
    let mut tx = state.db.begin().await?;
    let (order, p) = reserve(&mut tx, &bound, new_order.as_ref(), order_id, &spec).await?;
    let superseded = checkouts::open_of_order(&mut *tx, app, order_id).await?;
    let ts = now();
    let checkout = CheckoutRow {
        id: CheckoutId::generate().into_string(),
        app_id: app.to_owned(),
        order_id: order.id.clone(),
        payment_id: p.id.clone(),
        customer_id: p.customer_id.clone(),
        mode: if hosted.subscription.is_some() {
            "subscription"
        } else {
            "payment"
        }
        .into(),
        status: "open".into(),
        url: None,
        success_url: hosted.success_url.clone(),
        cancel_url: hosted.cancel_url.clone(),
        save_card: p.save_card,
        expires_at: ts + hosted.expires_in,
        provider_session_id: None,
        created: ts,
        updated: ts,
    };
    checkouts::insert(&mut *tx, &checkout).await?;
    let subscription = hosted.subscription.map(|mut s| {
        s.checkout_id = Some(checkout.id.clone());
        s
    });
    if let Some(s) = &subscription {
        paybridge_store::subscriptions::insert(&mut *tx, s).await?;
    }
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;

    // One open checkout per order: the older ones are expired, so an order cannot be
    // paid twice through two pages.
    for old in superseded {
        if let Err(e) = expire_checkout(state, &bound, &old).await {
            tracing::warn!(checkout = %old.id, error = %e.message, "could not expire a superseded checkout");
        }
    }

    let customer = provider_customer(state, &bound, p.customer_id.as_deref()).await?;
    let lines: Vec<LineItemView> = serde_json::from_str(&order.line_items).unwrap_or_default();
    let line_items = if p.amount == order.amount_total {
        lines
            .iter()
            .map(|l| LineItem {
                name: l.name.clone(),
                unit_amount: l.unit_amount,
                currency: order.currency.clone(),
                quantity: l.quantity,
                price: l
                    .provider_price_id
                    .clone()
                    .filter(|_| bound.kind == ProviderKind::Stripe),
                recurring: l
                    .recurring
                    .as_ref()
                    .map(|r| (r.interval.clone(), r.interval_count)),
            })
            .collect()
    } else {
        vec![LineItem {
            name: format!("Payment towards order {}", order.id),
            unit_amount: p.amount,
            currency: order.currency.clone(),
            quantity: 1,
            price: None,
            recurring: None,
        }]
    };
    let mut metadata = metadata_for(app, &p, Some(&checkout.id));
    if let Some(s) = &subscription {
        metadata.insert(
            paybridge_core::stripe::event::META_SUBSCRIPTION.into(),
            s.id.clone(),
        );
    }
    let req = NewCheckout {
        mode: checkout.mode.clone(),
        line_items,
        success_url: hosted.success_url,
        cancel_url: hosted.cancel_url,
        expires_at: checkout.expires_at,
        customer,
        client_reference_id: order.id.clone(),
        manual_capture: spec.manual_capture,
        save_card: spec.save_card,
        metadata,
        application_fee_amount: spec.application_fee_amount,
        transfer_destination: spec.transfer_destination.clone(),
        extra: spec.provider_options.clone(),
    };
    let session = match bound
        .provider
        .create_checkout_session(&bound.call(&format!("{}_create", checkout.id)), &req)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let mut p2 = p.clone();
            p2.provider_checkout_session = None;
            record_failure_hosted(state, &checkout, &p2, &e).await?;
            return Err(provider_error(e));
        }
    };
    if session.amount_total.is_some_and(|t| t != p.amount)
        || session
            .currency
            .as_deref()
            .is_some_and(|c| !c.eq_ignore_ascii_case(&p.currency))
    {
        let _ = bound
            .provider
            .expire_checkout_session(&bound.call(&format!("{}_expire", checkout.id)), &session.id)
            .await;
        let e = ProviderError::Invalid {
            code: Some("amount_mismatch".into()),
            param: Some("line_items".into()),
            message: format!(
                "the provider's session totals {:?} {:?}, the payment is {} {} (a provider price differs from the catalog)",
                session.amount_total, session.currency, p.amount, p.currency
            ),
        };
        record_failure_hosted(state, &checkout, &p, &e).await?;
        return Err(provider_error(e));
    }
    let (checkout, p) = record_session(state, &checkout, &p, &session).await?;
    Ok((checkout, p, order))
}

async fn record_failure_hosted(
    state: &AppState,
    c: &CheckoutRow,
    p: &PaymentRow,
    e: &ProviderError,
) -> ApiResult<()> {
    record_failure(state, p, e).await?;
    if !matches!(e, ProviderError::Unavailable { .. }) {
        let mut tx = state.db.begin().await?;
        if let Some(c) = checkouts::lock_by_refs(&mut tx, &c.app_id, Some(&c.id), None).await? {
            ledger::apply_checkout_status(
                &mut tx,
                &c,
                paybridge_core::payment::CheckoutStatus::Expired,
            )
            .await?;
        }
        tx.commit()
            .await
            .map_err(paybridge_store::StoreError::from)?;
    }
    Ok(())
}

async fn record_session(
    state: &AppState,
    c: &CheckoutRow,
    p: &PaymentRow,
    s: &CheckoutSession,
) -> ApiResult<(CheckoutRow, PaymentRow)> {
    let url = s.url.clone().unwrap_or_default();
    let mut tx = state.db.begin().await?;
    checkouts::set_provider(&mut tx, &c.app_id, &c.id, &s.id, &url).await?;
    let before = payments::lock(&mut tx, &p.app_id, &p.id).await?;
    let mut after = before.clone();
    after.provider_checkout_session = Some(s.id.clone());
    after.payment_url = Some(url.clone());
    let after =
        ledger::apply_payment_facts(&mut tx, &before, after, &[PaymentFact::Pending]).await?;
    let checkout = checkouts::get(&mut *tx, &c.app_id, &c.id).await?;
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    Ok((checkout, after))
}

/// Expires a checkout at the provider and records it (the payment becomes `expired`).
pub async fn expire_checkout(state: &AppState, bound: &Bound, c: &CheckoutRow) -> ApiResult<()> {
    let Some(session) = &c.provider_session_id else {
        let mut tx = state.db.begin().await?;
        if let Some(locked) = checkouts::lock_by_refs(&mut tx, &c.app_id, Some(&c.id), None).await?
        {
            ledger::apply_checkout_status(
                &mut tx,
                &locked,
                paybridge_core::payment::CheckoutStatus::Expired,
            )
            .await?;
            let before = payments::lock(&mut tx, &c.app_id, &c.payment_id).await?;
            ledger::apply_payment_facts(&mut tx, &before, before.clone(), &[PaymentFact::Expired])
                .await?;
        }
        tx.commit()
            .await
            .map_err(paybridge_store::StoreError::from)?;
        return Ok(());
    };
    let s = match bound
        .provider
        .expire_checkout_session(&bound.call(&format!("{}_expire", c.id)), session)
        .await
    {
        Ok(s) => s,
        // Already complete: what it became arrives by webhook (or the reconciler).
        Err(ProviderError::Conflict { .. }) => return Ok(()),
        Err(e) => return Err(provider_error(e)),
    };
    apply_session(state, &c.app_id, &s).await
}

/// Applies what a provider's checkout session (fetched or answered) says.
pub async fn apply_session(state: &AppState, app: &str, s: &CheckoutSession) -> ApiResult<()> {
    use paybridge_core::payment::CheckoutStatus;
    let mut facts = Vec::new();
    let status = match s.status.as_deref() {
        Some("expired") => {
            facts.push(PaymentFact::Expired);
            Some(CheckoutStatus::Expired)
        }
        Some("complete") => {
            if s.payment_status.as_deref() == Some("paid") {
                facts.push(PaymentFact::Succeeded {
                    amount_captured: s.amount_total.unwrap_or(0),
                });
            }
            Some(CheckoutStatus::Complete)
        }
        _ => None,
    };
    let pi = s.payment_intent.as_ref().and_then(|p| p.object());
    if let Some(pi) = pi {
        facts.extend(intent_facts(pi, now()));
    }
    let mut tx = state.db.begin().await?;
    let checkout = checkouts::lock_by_refs(&mut tx, app, None, Some(&s.id)).await?;
    if let Some(c) = &checkout {
        let before = payments::lock(&mut tx, app, &c.payment_id).await?;
        let mut after = before.clone();
        if after.provider_payment_intent.is_none() {
            after.provider_payment_intent = s.payment_intent.as_ref().map(|p| p.id().to_owned());
        }
        ledger::apply_payment_facts(&mut tx, &before, after, &facts).await?;
        if let Some(st) = status {
            ledger::apply_checkout_status(&mut tx, c, st).await?;
        }
    }
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    Ok(())
}

/// Creates a payment intent (for a custom card form) or charges a saved card
/// off-session. A declined card is a 402; the payment is recorded as failed.
pub async fn start_intent(
    state: &AppState,
    app: &str,
    new_order: Option<OrderRow>,
    order_id: &str,
    spec: PaymentSpec,
) -> ApiResult<PaymentRow> {
    let bound = bind(state, app).await?;
    let card = if spec.method == "card" {
        let customer = spec
            .customer
            .clone()
            .or_else(|| new_order.as_ref().and_then(|o| o.customer_id.clone()))
            .ok_or_else(|| {
                Invalid::new(
                    "customer",
                    "customer_required",
                    "charging a saved card needs a `customer`",
                )
            })?;
        let c = customers::get(state.db.reader(), app, &customer)
            .await
            .or_404("customer")?;
        let card_id = spec
            .payment_method
            .clone()
            .or(c.default_payment_method.clone())
            .ok_or_else(|| {
                Invalid::new(
                    "payment_method",
                    "payment_method_missing",
                    "the customer has no saved card: give `payment_method` or save one first",
                )
            })?;
        let card = customers::card(&state.db, app, &customer, &card_id)
            .await
            .map_err(|_| ApiError::not_found("payment_method").with_param("payment_method"))?;
        Some(card)
    } else {
        None
    };
    if spec.save_card && spec.customer.is_none() {
        return Err(Invalid::new(
            "save_card",
            "customer_required",
            "saving a card needs a `customer`",
        )
        .into());
    }
    let spec = PaymentSpec {
        payment_method: card.as_ref().map(|c| c.id.clone()),
        ..spec
    };
    let mut tx = state.db.begin().await?;
    let (_, p) = reserve(&mut tx, &bound, new_order.as_ref(), order_id, &spec).await?;
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    let customer = provider_customer(state, &bound, p.customer_id.as_deref()).await?;
    let req = NewPaymentIntent {
        amount: p.amount,
        currency: p.currency.clone(),
        customer,
        payment_method: card.map(|c| c.provider_payment_method_id),
        manual_capture: spec.manual_capture,
        save_card: spec.save_card,
        payment_method_types: spec.payment_method_types.clone(),
        metadata: metadata_for(app, &p, None),
        application_fee_amount: spec.application_fee_amount,
        transfer_destination: spec.transfer_destination.clone(),
        extra: spec.provider_options.clone(),
    };
    match bound
        .provider
        .create_payment_intent(&bound.call(&format!("{}_create", p.id)), &req)
        .await
    {
        Ok(pi) => record_intent(state, app, &p.id, &pi, spec.method == "payment_intent").await,
        Err(e) => {
            if let ProviderError::Card {
                payment_intent: Some(pi),
                ..
            } = &e
            {
                record_intent(state, app, &p.id, pi, false).await?;
            }
            record_failure(state, &p, &e).await?;
            let mut err = provider_error(e);
            err.message = format!("{} (payment {})", err.message, p.id);
            Err(err)
        }
    }
}

/// Captures an authorised payment, fully or partly.
pub async fn capture(
    state: &AppState,
    app: &str,
    id: &str,
    amount: Option<i64>,
) -> ApiResult<PaymentRow> {
    let p = payments::get(state.db.reader(), app, id)
        .await
        .or_404("payment")?;
    let s = ledger::state_of(&p);
    if p.lifecycle == "succeeded" && p.capture_method == "manual" {
        return Ok(p);
    }
    if s.capturable() == 0 {
        return Err(ApiError::conflict(
            "payment_not_capturable",
            format!("payment {id} is {}, not requires_capture", p.status),
        ));
    }
    if let Some(a) = amount {
        if a <= 0 || a > s.capturable() {
            return Err(Invalid::new(
                "amount",
                "amount_too_large",
                format!("capture 1 to {} {}", s.capturable(), p.currency),
            )
            .into());
        }
    }
    let intent = p.provider_payment_intent.clone().ok_or_else(|| {
        ApiError::conflict(
            "payment_not_capturable",
            "the provider has not reported the authorisation yet",
        )
    })?;
    let bound = bind(state, app).await?;
    let mut pi = bound
        .provider
        .capture_payment_intent(&bound.call(&format!("{id}_capture")), &intent, amount)
        .await
        .map_err(provider_error)?;
    // An answer without `amount_received` (older API versions, fakes) captured what
    // was asked for.
    if pi.status == "succeeded" && pi.amount_received.is_none() {
        pi.amount_received = Some(amount.unwrap_or(s.capturable()));
    }
    record_intent(state, app, id, &pi, false).await
}

/// Cancels a payment that has not taken money: voids an authorisation, cancels an
/// intent, or expires its checkout.
pub async fn cancel(state: &AppState, app: &str, id: &str) -> ApiResult<PaymentRow> {
    let p = payments::get(state.db.reader(), app, id)
        .await
        .or_404("payment")?;
    match p.lifecycle.as_str() {
        "canceled" => return Ok(p),
        "initiated" | "pending" | "failed" | "requires_capture" => {}
        _ => {
            return Err(ApiError::conflict(
                "payment_not_cancelable",
                format!("payment {id} is {}", p.status),
            ))
        }
    }
    let bound = bind(state, app).await?;
    if let Some(intent) = &p.provider_payment_intent {
        match bound
            .provider
            .cancel_payment_intent(&bound.call(&format!("{id}_cancel")), intent)
            .await
        {
            Ok(pi) => return record_intent(state, app, id, &pi, false).await,
            Err(ProviderError::Conflict { .. }) if p.provider_checkout_session.is_some() => {}
            Err(e) => return Err(provider_error(e)),
        }
    }
    if p.provider_checkout_session.is_some() {
        let session = p.provider_checkout_session.as_deref().unwrap_or_default();
        let c = checkouts::by_session(&state.db, app, session)
            .await?
            .ok_or_else(|| ApiError::not_found("checkout"))?;
        expire_checkout(state, &bound, &c).await?;
    }
    let mut tx = state.db.begin().await?;
    let before = payments::lock(&mut tx, app, id).await?;
    let after =
        ledger::apply_payment_facts(&mut tx, &before, before.clone(), &[PaymentFact::Canceled])
            .await?;
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    Ok(after)
}
