//! Hosted payments: a checkout session (or payment link) page at the provider, its
//! expiry, and what a fetched or answered session says.

use paybridge_core::ids::CheckoutId;
use paybridge_core::payment::PaymentFact;
use paybridge_core::stripe::event::intent_facts;
use paybridge_core::stripe::objects::CheckoutSession;
use paybridge_core::{Invalid, ProviderKind};
use paybridge_provider::{LineItem, NewCheckout, ProviderError};
use paybridge_store::checkouts::{self, CheckoutRow};
use paybridge_store::now;
use paybridge_store::orders::OrderRow;
use paybridge_store::payments::{self, PaymentRow};

use super::{metadata_for, provider_customer, record_failure, reserve, validate_url, PaymentSpec};
use crate::error::ApiResult;
use crate::service::ledger;
use crate::service::provider::{bind, provider_error, Bound};
use crate::service::views::LineItemView;
use crate::state::AppState;

/// Checkout sessions live 30 minutes to 24 hours (Stripe's limits); 24 h by default.
pub const MIN_EXPIRES_IN: i64 = 30 * 60;
pub const MAX_EXPIRES_IN: i64 = 24 * 3600;

/// The placeholder for the checkout's own id in its success and cancel URLs.
pub const CHECKOUT_ID: &str = "{CHECKOUT_ID}";

pub struct HostedSpec {
    pub success_url: String,
    pub cancel_url: String,
    pub expires_in: i64,
    /// For a checkout in `subscription` mode: the subscription it starts.
    pub subscription: Option<paybridge_store::subscriptions::SubscriptionRow>,
}

/// Starts a hosted payment (a checkout session, or a payment link) for an order.
pub async fn start_hosted(
    state: &AppState,
    app: &str,
    new_order: Option<OrderRow>,
    order_id: &str,
    spec: PaymentSpec,
    mut hosted: HostedSpec,
) -> ApiResult<(CheckoutRow, PaymentRow, OrderRow)> {
    // `{CHECKOUT_ID}` in either URL becomes this checkout's id (Stripe fills in
    // `{CHECKOUT_SESSION_ID}`, its own id, and only in the success URL): a return page
    // can then ask paybridge about, or end, the checkout the customer came back from.
    let checkout_id = CheckoutId::generate().into_string();
    for url in [&mut hosted.success_url, &mut hosted.cancel_url] {
        *url = url.replace(CHECKOUT_ID, &checkout_id);
    }
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
    // One open page per order: the older ones are expired at the provider before this
    // one is admitted, so an order cannot be paid twice through two pages. An order
    // made by this request (its id new) has none.
    if super::made_here(new_order.as_ref(), app, order_id).is_none() {
        super::supersede::supersede(state, &bound, order_id, spec.amount, true).await?;
    }
    let mut tx = state.db.begin().await?;
    let (order, p) = reserve(&mut tx, &bound, new_order.as_ref(), order_id, &spec).await?;
    let ts = now();
    let checkout = CheckoutRow {
        id: checkout_id,
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
    // Made, not yet synced: a call to Stripe waits until it is durable (the fence), and
    // so does the answer; the sandbox's state follows it in the same database.
    tx.commit_visible()
        .await
        .map_err(paybridge_store::StoreError::from)?;

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
    let checkout = checkouts::set_provider(&mut tx, &c.app_id, &c.id, &s.id, &url).await?;
    let before = payments::lock_in_order(&mut tx, &p.app_id, &p.id, &p.order_id).await?;
    let mut after = before.clone();
    after.provider_checkout_session = Some(s.id.clone());
    after.payment_url = Some(url.clone());
    let after =
        ledger::apply_payment_facts(&mut tx, &before, after, &[PaymentFact::Pending]).await?;
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    Ok((checkout, after))
}

/// What expiring a checkout found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Expired (at the provider, or only ours if it never reached the provider).
    Expired,
    /// The provider reports it complete: it cannot be expired. What it became has been
    /// fetched and applied.
    Complete,
}

/// Expires a checkout at the provider and records it (the payment becomes `expired`).
/// One the provider reports complete is fetched and applied instead (`Complete`).
pub async fn expire_checkout(
    state: &AppState,
    bound: &Bound,
    c: &CheckoutRow,
) -> ApiResult<Expiry> {
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
            let before =
                payments::lock_in_order(&mut tx, &c.app_id, &c.payment_id, &c.order_id).await?;
            ledger::apply_payment_facts(&mut tx, &before, before.clone(), &[PaymentFact::Expired])
                .await?;
        }
        tx.commit()
            .await
            .map_err(paybridge_store::StoreError::from)?;
        return Ok(Expiry::Expired);
    };
    let s = match bound
        .provider
        .expire_checkout_session(&bound.call(&format!("{}_expire", c.id)), session)
        .await
    {
        Ok(s) => s,
        // Already complete: what it became is fetched and applied now, not left to a
        // webhook's latency (the order is paid, or being paid, through it).
        Err(ProviderError::Conflict { .. }) => {
            let s = bound
                .provider
                .retrieve_checkout_session(&bound.call(&format!("{}_retrieve", c.id)), session)
                .await
                .map_err(provider_error)?;
            apply_session(state, &c.app_id, &s).await?;
            return Ok(if s.status.as_deref() == Some("expired") {
                Expiry::Expired
            } else {
                Expiry::Complete
            });
        }
        Err(e) => return Err(provider_error(e)),
    };
    apply_session(state, &c.app_id, &s).await?;
    Ok(if s.status.as_deref() == Some("complete") {
        Expiry::Complete
    } else {
        Expiry::Expired
    })
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
        let before = payments::lock_in_order(&mut tx, app, &c.payment_id, &c.order_id).await?;
        let mut after = before.clone();
        if after.provider_payment_intent.is_none() {
            after.provider_payment_intent = s.payment_intent.as_ref().map(|p| p.id().to_owned());
        }
        let card = pi.and_then(paybridge_core::stripe::event::intent_card);
        ledger::note_card(&mut after, card.as_ref(), ledger::takes_money(&facts));
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
