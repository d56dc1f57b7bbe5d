//! Refunds. The sum of a payment's refunds can never exceed what it captured: a
//! refund is admitted by one conditional update of the payment row
//! (`payments::reserve_refund`), so concurrent refunds, on one node or many, cannot
//! race past the capture — whatever the provider would have allowed. The provider call
//! carries an idempotency key derived from our refund id; its answer, or its events
//! (also when they beat the answer), settle the refund through the ledger.

use std::collections::BTreeMap;

use paybridge_core::ids::RefundId;
use paybridge_core::stripe::event::{
    refund_reading, Refs, META_APP, META_ORDER, META_PAYMENT, META_REFUND,
};
use paybridge_core::stripe::objects::Refund;
use paybridge_core::{catalog, Invalid};
use paybridge_provider::{NewRefund, ProviderError};
use paybridge_store::refunds::{self, RefundRow};
use paybridge_store::{now, payments, StoreError};

use super::ledger::UnitOfWork;
use super::provider::{bind, provider_error};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::state::AppState;

pub struct RefundInput {
    pub payment: String,
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub refund_application_fee: bool,
    pub reverse_transfer: bool,
}

const REASONS: &[&str] = &["duplicate", "fraudulent", "requested_by_customer"];

/// Refunds (part of) a payment. Answers the refund as it stands after the provider's
/// answer: `succeeded`, or `pending` when the provider could not be reached (the
/// reconciler settles it with the same idempotency key).
pub async fn create(state: &AppState, app: &str, input: RefundInput) -> ApiResult<RefundRow> {
    if let Some(r) = &input.reason {
        if !REASONS.contains(&r.as_str()) {
            return Err(Invalid::new(
                "reason",
                "parameter_invalid",
                "reason is duplicate, fraudulent or requested_by_customer",
            )
            .into());
        }
    }
    catalog::validate_metadata(&input.metadata)?;
    let p = payments::get(state.db.reader(), app, &input.payment)
        .await
        .or_404("payment")?;
    if input.refund_application_fee && p.application_fee_amount.is_none() {
        return Err(Invalid::new(
            "refund_application_fee",
            "parameter_invalid",
            "this payment carries no application fee",
        )
        .into());
    }
    if input.reverse_transfer && p.transfer_destination.is_none() {
        return Err(Invalid::new(
            "reverse_transfer",
            "parameter_invalid",
            "this payment was not transferred to a connected account",
        )
        .into());
    }
    // A disputed charge is the bank's to settle: the provider refuses to refund it
    // while the dispute is open, and a lost one has given the money back already.
    if matches!(p.dispute.as_str(), "open" | "lost") {
        return Err(ApiError::conflict(
            "payment_disputed",
            format!(
                "payment {} is disputed ({}): it cannot be refunded",
                p.id, p.dispute
            ),
        ));
    }
    let intent = p.provider_payment_intent.clone().ok_or_else(|| {
        ApiError::conflict(
            "payment_not_refundable",
            format!("payment {} has taken no money", p.id),
        )
    })?;
    let bound = bind(state, app).await?;
    if let Some(a) = input.amount {
        let currency = paybridge_core::Currency::parse(&p.currency)?;
        paybridge_core::Money::part(a, currency, "amount")?;
        // More than was ever captured is refused here, before any sum is formed.
        if a > p.amount_captured {
            return Err(not_refundable(&p).with_param("amount"));
        }
    }
    let amount = input
        .amount
        .unwrap_or(p.amount_captured - p.amount_refunding);
    if amount <= 0 {
        return Err(not_refundable(&p));
    }
    let ts = now();
    let refund = RefundRow {
        id: RefundId::generate().into_string(),
        app_id: app.to_owned(),
        payment_id: p.id.clone(),
        order_id: p.order_id.clone(),
        amount,
        currency: p.currency.clone(),
        reason: input.reason.clone(),
        status: "pending".into(),
        failure_reason: None,
        provider_refund_id: None,
        refund_application_fee: i64::from(input.refund_application_fee),
        reverse_transfer: i64::from(input.reverse_transfer),
        source: "api".into(),
        metadata: serde_json::to_string(&input.metadata).unwrap_or_else(|_| "{}".into()),
        created: ts,
        updated: ts,
    };
    let mut tx = state.db.begin().await?;
    let Some(admitted) = payments::reserve_refund(&mut tx, app, &p.id, amount).await? else {
        drop(tx);
        let now_p = payments::get(state.db.reader(), app, &p.id).await?;
        return Err(not_refundable(&now_p).with_param("amount"));
    };
    refunds::insert(&mut *tx, &refund).await?;
    // Made, not yet synced: the call to the provider and the answer wait until it is
    // durable (`Tx::commit_visible`).
    tx.commit_visible().await.map_err(StoreError::from)?;

    let mut metadata = input.metadata.clone();
    metadata.insert(META_APP.into(), app.into());
    metadata.insert(META_ORDER.into(), admitted.order_id.clone());
    metadata.insert(META_PAYMENT.into(), admitted.id.clone());
    metadata.insert(META_REFUND.into(), refund.id.clone());
    let req = NewRefund {
        payment_intent: intent,
        amount,
        reason: input.reason,
        metadata,
        refund_application_fee: input.refund_application_fee,
        reverse_transfer: input.reverse_transfer,
    };
    match bound
        .provider
        .create_refund(&bound.call(&format!("{}_create", refund.id)), &req)
        .await
    {
        Ok(answer) => record(state, app, &refund.id, &answer).await,
        // The outcome is unknown: the refund stays pending, its amount held.
        Err(ProviderError::Unavailable { message }) => {
            tracing::warn!(refund = %refund.id, %message, "refund left pending; the reconciler will settle it");
            Ok(refunds::get(state.db.reader(), app, &refund.id).await?)
        }
        Err(e) => {
            fail(state, app, &refund.id, &e.to_string()).await?;
            Err(provider_error(e))
        }
    }
}

fn not_refundable(p: &payments::PaymentRow) -> ApiError {
    if p.lifecycle != "succeeded" {
        return ApiError::conflict(
            "payment_not_refundable",
            format!("payment {} is {}, not succeeded", p.id, p.status),
        );
    }
    let left = (p.amount_captured - p.amount_refunding).max(0);
    ApiError::unprocessable(
        "amount_too_large",
        format!(
            "payment {} has {left} {} left to refund (refunds in flight count against it)",
            p.id, p.currency
        ),
    )
}

/// Applies the provider's answer about a refund.
pub async fn record(
    state: &AppState,
    app: &str,
    refund: &str,
    answer: &Refund,
) -> ApiResult<RefundRow> {
    let reading = refund_reading(answer).ok_or_else(|| {
        ApiError::internal(format!("unreadable refund status {:?}", answer.status))
    })?;
    let mut tx = state.db.begin().await?;
    let row = refunds::get(&mut *tx, app, refund).await?;
    let mut uow = UnitOfWork::new();
    let p = payments::lock(&mut tx, app, &row.payment_id).await?;
    uow.add_payment(p);
    let mut reading = reading;
    reading.ours = Some(refund.to_owned());
    uow.apply_refund(&mut tx, app, &Refs::default(), &reading)
        .await?;
    uow.flush(&mut tx).await?;
    let row = refunds::get(&mut *tx, app, refund).await?;
    tx.commit().await.map_err(StoreError::from)?;
    super::ledger::count_anomalies(uow.anomalies());
    Ok(row)
}

/// Fails a refund the provider refused, releasing its amount.
async fn fail(state: &AppState, app: &str, refund: &str, why: &str) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    // The payment is locked before the refund, as everywhere else (the opposite order
    // could deadlock against a webhook applying the refund on PostgreSQL).
    let row = refunds::get(&mut *tx, app, refund).await?;
    payments::lock(&mut tx, app, &row.payment_id).await?;
    if let Some(mut r) = refunds::lock_by_refs(&mut tx, app, Some(refund), None).await? {
        if r.status == "pending" {
            r.status = "failed".into();
            r.failure_reason = Some(why.chars().take(500).collect());
            refunds::save(&mut tx, &r).await?;
            payments::release_refund(&mut tx, app, &r.payment_id, r.amount).await?;
            super::ledger::emit(
                &mut tx,
                app,
                "refund.failed",
                &r.id,
                (Some(&r.order_id), Some(&r.payment_id), None),
                &super::views::RefundView::of(&r),
            )
            .await?;
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// Settles a refund left pending: asks the provider about it, or (if we never learned
/// its id) makes the same call again with the same idempotency key.
pub async fn reconcile(state: &AppState, r: &RefundRow) -> ApiResult<bool> {
    let bound = bind(state, &r.app_id).await?;
    let answer = match &r.provider_refund_id {
        Some(id) => {
            bound
                .provider
                .retrieve_refund(&bound.call(&format!("{}_retrieve", r.id)), id)
                .await
        }
        None => {
            let p = payments::get(state.db.reader(), &r.app_id, &r.payment_id).await?;
            let mut metadata: BTreeMap<String, String> =
                serde_json::from_str(&r.metadata).unwrap_or_default();
            metadata.insert(META_APP.into(), r.app_id.clone());
            metadata.insert(META_ORDER.into(), r.order_id.clone());
            metadata.insert(META_PAYMENT.into(), r.payment_id.clone());
            metadata.insert(META_REFUND.into(), r.id.clone());
            let req = NewRefund {
                payment_intent: p.provider_payment_intent.clone().unwrap_or_default(),
                amount: r.amount,
                reason: r.reason.clone(),
                metadata,
                refund_application_fee: r.refund_application_fee == 1,
                reverse_transfer: r.reverse_transfer == 1,
            };
            bound
                .provider
                .create_refund(&bound.call(&format!("{}_create", r.id)), &req)
                .await
        }
    };
    match answer {
        Ok(a) => {
            let after = record(state, &r.app_id, &r.id, &a).await?;
            Ok(after.status != r.status)
        }
        // Only the provider refusing the refund itself settles it as failed, and only
        // when it was never made (a refund it knows by id is asked about, not made). A
        // refused key or an unknown object says nothing about the refund: the key may
        // be mid-rotation, or the app moved to another account. It stays pending, its
        // amount held, and is asked about again; failing it would free the amount
        // while the money may already be on its way back.
        Err(
            e @ (ProviderError::Invalid { .. }
            | ProviderError::Card { .. }
            | ProviderError::Conflict { .. }),
        ) if r.provider_refund_id.is_none() => {
            fail(state, &r.app_id, &r.id, &e.to_string()).await?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(refund = %r.id, error = %e, "cannot settle a pending refund now; it stays pending");
            Ok(false)
        }
    }
}

/// A refund's view is reachable by its id only in its own app.
pub async fn get(state: &AppState, app: &str, id: &str) -> ApiResult<RefundRow> {
    refunds::get(state.db.reader(), app, id)
        .await
        .or_404("refund")
}
