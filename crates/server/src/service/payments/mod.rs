//! Taking money: hosted checkouts (checkout sessions and payment links), payment
//! intents for custom card forms, off-session charges of saved cards, capture and
//! cancel.
//!
//! Every flow writes our records first (the payment as `initiated`), then calls the
//! provider with metadata naming our records and an idempotency key derived from our
//! id, then records the provider's answer through the ledger. So a webhook that beats
//! our own call's answer still finds its payment, and a retried call cannot charge
//! twice. No transaction is held across a provider call.

mod direct;
mod hosted;
mod options;
mod supersede;

use std::collections::BTreeMap;

use paybridge_core::ids::PaymentId;
use paybridge_core::payment::{Failure, PaymentFact};
use paybridge_core::stripe::event::{
    intent_facts, META_APP, META_CHECKOUT, META_ORDER, META_PAYMENT,
};
use paybridge_core::stripe::objects::PaymentIntent;
use paybridge_core::{Currency, Invalid, Money};
use paybridge_provider::ProviderError;
use paybridge_store::checkouts::{self, CheckoutRow};
use paybridge_store::orders::{self, OrderRow};
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::{customers, now, Conn};

pub use direct::{cancel, capture, start_intent};
pub use hosted::{
    apply_session, expire_checkout, start_hosted, Expiry, HostedSpec, MAX_EXPIRES_IN,
    MIN_EXPIRES_IN,
};
pub use options::{describe as describe_options, provider_options, validate_url, Target, Trust};

use super::ledger;
use super::orders::outstanding;
use super::provider::Bound;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::state::AppState;

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
    /// The saved card charged (`card`): shown on the payment before the provider answers.
    pub saved_card: Option<customers::CardRow>,
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

/// The order this request made, if `order_id` is it: no payment, page or intent can
/// hold it yet, so it needs neither superseding nor reading back.
fn made_here<'a>(
    new_order: Option<&'a OrderRow>,
    app: &str,
    order_id: &str,
) -> Option<&'a OrderRow> {
    new_order.filter(|o| o.id == order_id && o.app_id == app)
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
    // An order inserted just now, in this transaction, is the row given (every column
    // is written), and no payment can hold it yet: it is not read back, nor are its
    // payments (three statements fewer on the writer for a checkout of a new order).
    let fresh = made_here(new_order, app, order_id);
    if let Some(o) = new_order {
        orders::insert(&mut *conn, o).await?;
    }
    let order = match fresh {
        Some(o) => o.clone(),
        None => orders::lock(conn, app, order_id).await.or_404("order")?,
    };
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
    let left = if fresh.is_some() {
        (order.amount_total - order.amount_paid).max(0)
    } else {
        outstanding(conn, &order).await?
    };
    if left == 0 && order.amount_total > 0 {
        return Err(ApiError::conflict(
            "order_payment_in_progress",
            format!(
                "order {} is held in full by payments in flight or open (a page or an intent another request opened meanwhile)",
                order.id
            ),
        )
        .with_param("order"));
    }
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
    let p = PaymentRow {
        customer_id: spec.customer.clone().or_else(|| order.customer_id.clone()),
        method: spec.method.to_owned(),
        capture_method: if spec.manual_capture {
            "manual"
        } else {
            "automatic"
        }
        .to_owned(),
        provider: bound.kind.as_str().to_owned(),
        save_card: i64::from(spec.save_card),
        payment_method_id: spec.payment_method.clone(),
        application_fee_amount: spec.application_fee_amount,
        transfer_destination: spec.transfer_destination.clone(),
        metadata: serde_json::to_string(&spec.metadata).unwrap_or_else(|_| "{}".into()),
        card_brand: spec.saved_card.as_ref().and_then(|c| c.brand.clone()),
        card_last4: spec.saved_card.as_ref().and_then(|c| c.last4.clone()),
        ..PaymentRow::initiated(
            PaymentId::generate().into_string(),
            app.clone(),
            order.id.clone(),
            amount,
            order.currency.clone(),
            now(),
        )
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
    let before = payments::lock_in_order(&mut tx, &p.app_id, &p.id, &p.order_id).await?;
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
    let card = paybridge_core::stripe::event::intent_card(pi);
    ledger::note_card(&mut p, card.as_ref(), ledger::takes_money(&facts));
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
