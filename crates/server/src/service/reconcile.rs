//! The reconciler: for payments left `pending` or `processing` (a webhook missed or
//! not sent), ask the provider what became of them and apply the answer through the
//! same machine as a webhook. A payment whose provider object we never learned (the
//! call that created it timed out) is asked again with the same idempotency key, so
//! the provider answers with what it did the first time.

use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::{checkouts, now};

use super::payments::{apply_session, record_intent};
use super::provider::{bind, provider_error};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub checked: usize,
    pub changed: usize,
    pub failed: usize,
}

/// The payments the reconciler would look at now.
pub async fn candidates(state: &AppState, limit: i64) -> ApiResult<Vec<PaymentRow>> {
    let before = now() - state.settings.reconcile_after.as_secs() as i64;
    Ok(payments::stuck(&state.db, &["pending", "processing"], before + 1, limit).await?)
}

/// Asks the provider about one payment and applies the answer; true if it changed.
pub async fn reconcile_one(state: &AppState, p: &PaymentRow) -> ApiResult<bool> {
    let bound = bind(state, &p.app_id).await?;
    let after = if let Some(intent) = &p.provider_payment_intent {
        let pi = bound
            .provider
            .retrieve_payment_intent(&bound.call(&format!("{}_retrieve", p.id)), intent)
            .await
            .map_err(provider_error)?;
        record_intent(state, &p.app_id, &p.id, &pi, false).await?
    } else if let Some(session) = &p.provider_checkout_session {
        let s = bound
            .provider
            .retrieve_checkout_session(&bound.call(&format!("{}_retrieve", p.id)), session)
            .await
            .map_err(provider_error)?;
        apply_session(state, &p.app_id, &s).await?;
        payments::get(state.db.reader(), &p.app_id, &p.id).await?
    } else {
        // Nothing to ask about: an expired checkout that never reached the provider.
        match checkouts_of(state, p).await? {
            Some(c) if c.expires_at < now() => {
                super::payments::expire_checkout(state, &bound, &c).await?;
                payments::get(state.db.reader(), &p.app_id, &p.id).await?
            }
            _ => return Ok(false),
        }
    };
    Ok(after.status != p.status)
}

async fn checkouts_of(
    state: &AppState,
    p: &PaymentRow,
) -> ApiResult<Option<checkouts::CheckoutRow>> {
    Ok(
        checkouts::open_of_order(state.db.reader(), &p.app_id, &p.order_id)
            .await?
            .into_iter()
            .find(|c| c.payment_id == p.id),
    )
}

/// One round over everything stuck (refunds, then payments); `progress` is told
/// after each.
pub async fn run_once(
    state: &AppState,
    limit: i64,
    progress: impl Fn(usize, usize),
) -> ApiResult<Report> {
    let list = candidates(state, limit).await?;
    let before = now() - state.settings.reconcile_after.as_secs() as i64;
    let refunds = paybridge_store::refunds::stuck(&state.db, before + 1, limit).await?;
    let total = list.len() + refunds.len();
    let mut r = Report::default();
    for (i, rf) in refunds.iter().enumerate() {
        r.checked += 1;
        match super::refunds::reconcile(state, rf).await {
            Ok(true) => r.changed += 1,
            Ok(false) => {}
            Err(ApiError { message, .. }) => {
                r.failed += 1;
                tracing::warn!(refund = %rf.id, %message, "reconciling a refund failed; will retry");
            }
        }
        progress(i + 1, total);
    }
    let done = refunds.len();
    for (i, p) in list.iter().enumerate() {
        r.checked += 1;
        match reconcile_one(state, p).await {
            Ok(true) => r.changed += 1,
            Ok(false) => {}
            Err(ApiError { message, .. }) => {
                r.failed += 1;
                tracing::warn!(payment = %p.id, %message, "reconciling a payment failed; will retry");
            }
        }
        progress(done + i + 1, total);
    }
    Ok(r)
}

/// Expires checkouts whose time is up (the provider expires its own; the sandbox has
/// no clock, and a missed `checkout.session.expired` leaves ours open).
pub async fn expire_overdue(state: &AppState) -> ApiResult<usize> {
    let mut n = 0;
    for c in checkouts::overdue(&state.db, now(), 100).await? {
        let bound = bind(state, &c.app_id).await?;
        if let Some(session) = &c.provider_session_id {
            let s = bound
                .provider
                .retrieve_checkout_session(&bound.call(&format!("{}_retrieve", c.id)), session)
                .await
                .map_err(provider_error)?;
            if s.status.as_deref() != Some("open") {
                apply_session(state, &c.app_id, &s).await?;
                n += 1;
                continue;
            }
        }
        super::payments::expire_checkout(state, &bound, &c).await?;
        n += 1;
    }
    Ok(n)
}
