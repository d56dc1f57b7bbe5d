//! The reconciler: for payments left `pending`, `processing` or `requires_action` (a
//! webhook missed or not sent), ask the provider what became of them and apply the
//! answer through the same machine as a webhook. A payment waiting for its customer to
//! authenticate (3-D Secure) can wait for days; those are looked at in a list of their
//! own, so a backlog of them never crowds out the payments whose money is moving.
//!
//! A direct payment whose create call never got an answer (every attempt timed out or
//! failed; or the server died during the call, leaving it `initiated`) has no provider
//! id to ask about. The reconciler looks for the intent by our payment id in its
//! metadata, in the provider's list of intents created around that time. Found, it is
//! recorded like any answer. Not found, the create never took effect, and the payment
//! fails (`provider_unavailable`), which frees the order for another payment. Should
//! the intent surface later after all, its webhook still applies: the machine only
//! climbs, and `succeeded` is above `failed`.

use paybridge_core::payment::{Failure, PaymentFact};
use paybridge_provider::IntentLookup;
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::{checkouts, customers, now};

use super::ledger;
use super::payments::{apply_session, record_intent};
use super::provider::{bind, provider_error, Bound};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub checked: usize,
    pub changed: usize,
    pub failed: usize,
}

/// How far a provider's clock may be from ours, when looking for an intent by the time
/// it was created.
const CLOCK_SKEW_SECS: i64 = 300;

/// The payments the reconciler would look at now.
pub async fn candidates(state: &AppState, limit: i64) -> ApiResult<Vec<PaymentRow>> {
    let after = state.settings.reconcile_after.as_secs() as i64;
    let mut list = payments::stuck(
        &state.db,
        &["pending", "processing"],
        now() - after + 1,
        limit,
    )
    .await?;
    list.extend(payments::stuck(&state.db, &["requires_action"], now() - after + 1, limit).await?);
    let orphaned = now() - state.settings.reconcile_initiated_after.as_secs() as i64 + 1;
    list.extend(payments::stuck(&state.db, &["initiated"], orphaned, limit).await?);
    Ok(list)
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
    } else if matches!(p.method.as_str(), "card" | "payment_intent") {
        match find_intent(state, &bound, p).await? {
            // For the app's own card form, the client secret is kept as the create's
            // answer would have kept it, so the server key can still fetch it.
            Some(pi) => {
                let keep_secret = p.method == "payment_intent";
                record_intent(state, &p.app_id, &p.id, &pi, keep_secret).await?
            }
            None => never_created(state, p).await?,
        }
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

/// The intent a direct payment's unanswered create call may have made.
async fn find_intent(
    state: &AppState,
    bound: &Bound,
    p: &PaymentRow,
) -> ApiResult<Option<paybridge_core::stripe::objects::PaymentIntent>> {
    let customer = match &p.customer_id {
        Some(c) => {
            customers::get(state.db.reader(), &p.app_id, c)
                .await?
                .provider_customer_id
        }
        None => None,
    };
    let q = IntentLookup {
        payment: p.id.clone(),
        customer,
        created_from: p.created - CLOCK_SKEW_SECS,
        // A `pending` payment was marked so once its call had failed for the last time;
        // an `initiated` one's call (the server died during it) lasted at most until now.
        created_to: if p.lifecycle == "initiated" {
            now()
        } else {
            p.updated
        } + CLOCK_SKEW_SECS,
    };
    bound
        .provider
        .find_payment_intent(&bound.call(&format!("{}_find", p.id)), &q)
        .await
        .map_err(provider_error)
}

/// Fails a direct payment whose create call the provider never acted on, unless
/// meanwhile it learned its intent (a webhook, a late answer).
async fn never_created(state: &AppState, p: &PaymentRow) -> ApiResult<PaymentRow> {
    let mut tx = state.db.begin().await?;
    let before = payments::lock_in_order(&mut tx, &p.app_id, &p.id, &p.order_id).await?;
    if before.provider_payment_intent.is_some()
        || !matches!(before.lifecycle.as_str(), "initiated" | "pending")
    {
        return Ok(before);
    }
    let fact = PaymentFact::Failed(Failure {
        at: now(),
        code: Some("provider_unavailable".into()),
        decline_code: None,
        message: Some(
            "the provider never created this payment: no attempt to create it got through".into(),
        ),
    });
    let after = ledger::apply_payment_facts(&mut tx, &before, before.clone(), &[fact]).await?;
    tx.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    tracing::warn!(payment = %p.id, "the provider has no intent for this payment; it failed");
    Ok(after)
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
