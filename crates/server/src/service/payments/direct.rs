//! Direct payments: a payment intent for the app's own card form, an off-session
//! charge of a saved card, and capturing or cancelling what was authorised.

use paybridge_core::payment::PaymentFact;
use paybridge_core::Invalid;
use paybridge_provider::{NewPaymentIntent, ProviderError};
use paybridge_store::checkouts;
use paybridge_store::customers;
use paybridge_store::orders::OrderRow;
use paybridge_store::payments::{self, PaymentRow};

use super::hosted::expire_checkout;
use super::{metadata_for, provider_customer, record_failure, record_intent, reserve, PaymentSpec};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::service::ledger;
use crate::service::provider::{bind, provider_error};
use crate::state::AppState;

/// Creates a payment intent (for a custom card form) or charges a saved card
/// off-session. A declined card is a 402; the payment is recorded as failed. A charge
/// the bank wants authenticated (3-D Secure) answers the payment as `requires_action`,
/// with the link of the page where the customer does it.
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
        saved_card: card.clone(),
        ..spec
    };
    // A new way to pay ends the order's open ones at the provider first, if the order
    // would not admit it otherwise. An order made by this request has none.
    if super::made_here(new_order.as_ref(), app, order_id).is_none() {
        super::supersede::supersede(state, &bound, order_id, spec.amount, false).await?;
    }
    let mut tx = state.db.begin().await?;
    let (_, p) = reserve(&mut tx, &bound, new_order.as_ref(), order_id, &spec).await?;
    // Made, not yet synced: the call to the provider and the answer wait until it is
    // durable (`Tx::commit_visible`).
    tx.commit_visible()
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
                let recorded = record_intent(state, app, &p.id, pi, false).await?;
                // Stripe refuses an off-session charge the bank wants authenticated
                // (`authentication_required`); the customer can still authenticate
                // it on our page, so it is not a failure: the payment answers
                // `requires_action` with the page's link.
                if recorded.lifecycle == "requires_action" {
                    return Ok(recorded);
                }
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
        let currency = paybridge_core::Currency::parse(&p.currency)?;
        paybridge_core::Money::part(a, currency, "amount")?;
        if a > s.capturable() {
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
        "initiated" | "pending" | "requires_action" | "failed" | "requires_capture" => {}
        _ => {
            return Err(ApiError::conflict(
                "payment_not_cancelable",
                format!("payment {id} is {}", p.status),
            ))
        }
    }
    // A direct charge with no intent known is either still being made, or its answer
    // was lost and the reconciler is finding out: cancelling it here would not stop
    // the money, only our record of it.
    if p.provider_payment_intent.is_none()
        && matches!(p.method.as_str(), "card" | "payment_intent")
        && matches!(p.lifecycle.as_str(), "initiated" | "pending")
    {
        return Err(ApiError::conflict(
            "payment_in_flight",
            format!(
                "payment {id} is still being made at the provider; try again once it has settled"
            ),
        ));
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
        if expire_checkout(state, &bound, &c).await? == super::hosted::Expiry::Complete {
            return Err(ApiError::conflict(
                "payment_not_cancelable",
                format!("payment {id}'s checkout is complete at the provider; its outcome has been applied"),
            ));
        }
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
