//! Superseding: before a new way to pay is admitted for an order, the ways to pay that
//! hold it without having taken money yet (open hosted pages, intents awaiting their
//! customer) are ended at the provider — first, so that two can never both be paid.
//!
//! A page the provider reports complete, or an intent it will not cancel because it
//! has taken the money, is not superseded: its outcome is fetched and applied, and the
//! new payment is refused (409 `order_payment_in_progress`). Any other failure to end
//! the old one refuses the new one too: both payable at once is what this prevents.

use paybridge_core::payment::Hold;
use paybridge_provider::ProviderError;
use paybridge_store::{checkouts, orders, StoreError};

use super::hosted::{expire_checkout, Expiry};
use super::record_intent;
use crate::error::{ApiError, ApiResult};
use crate::service::orders::held_payments;
use crate::service::provider::{provider_error, Bound};
use crate::state::AppState;

/// Ends, at the provider, what the new payment of `amount` (default: all that is left)
/// needs ended. A hosted payment supersedes every open page of the order whatever its
/// amount (one open page per order); any payment supersedes open intents when the order
/// would otherwise not admit it.
pub async fn supersede(
    state: &AppState,
    bound: &Bound,
    order_id: &str,
    amount: Option<i64>,
    hosted: bool,
) -> ApiResult<()> {
    let app = bound.app_id.as_str();
    let mut conn = state
        .db
        .reader()
        .pool()
        .acquire()
        .await
        .map_err(StoreError::from)?;
    let order = match orders::get(&mut *conn, app, order_id).await {
        Ok(o) => o,
        // A new order holds nothing yet; a missing one is refused by `reserve`.
        Err(StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let held = held_payments(&mut conn, &order).await?;
    let open_pages = checkouts::open_of_order(&mut *conn, app, order_id).await?;
    drop(conn);
    // What is ended at the provider below is decided on these reads: on durable ones.
    state.db.durable().await?;
    let committed: i64 = held
        .iter()
        .filter(|(h, _)| *h == Hold::Committed)
        .map(|(_, p)| p.amount)
        .sum();
    let promised: i64 = held
        .iter()
        .filter(|(h, _)| *h == Hold::Open)
        .map(|(_, p)| p.amount)
        .sum();
    let free = order.amount_total - order.amount_paid - committed - promised;
    let needed = amount.unwrap_or(order.amount_total - order.amount_paid - committed);
    // Ended only if that makes the new payment fit (one too large is refused anyway).
    let end_intents = needed > free && needed <= free + promised;
    for c in &open_pages {
        if !hosted && !end_intents {
            break;
        }
        match expire_checkout(state, bound, c).await {
            Ok(Expiry::Expired) => {}
            Ok(Expiry::Complete) => {
                return Err(refused(state, app, order_id, &format!("checkout {}", c.id)).await)
            }
            Err(e) => {
                return Err(not_superseded(&format!("checkout {}", c.id), e));
            }
        }
    }
    if !end_intents {
        return Ok(());
    }
    for (h, p) in &held {
        if *h != Hold::Open || p.method != "payment_intent" {
            continue;
        }
        let Some(intent) = &p.provider_payment_intent else {
            continue;
        };
        let call = bound.call(&format!("{}_cancel", p.id));
        match bound.provider.cancel_payment_intent(&call, intent).await {
            Ok(pi) => {
                let after = record_intent(state, app, &p.id, &pi, false).await?;
                if after.lifecycle != "canceled" {
                    return Err(refused(state, app, order_id, &format!("payment {}", p.id)).await);
                }
            }
            // Too late to cancel: it took (or is taking) the money. Its state is fetched
            // and applied, and the new payment waits for its outcome.
            Err(ProviderError::Conflict { .. }) => {
                let call = bound.call(&format!("{}_retrieve", p.id));
                if let Ok(pi) = bound.provider.retrieve_payment_intent(&call, intent).await {
                    record_intent(state, app, &p.id, &pi, false).await?;
                }
                return Err(refused(state, app, order_id, &format!("payment {}", p.id)).await);
            }
            Err(e) => {
                return Err(not_superseded(
                    &format!("payment {}", p.id),
                    provider_error(e),
                ))
            }
        }
    }
    Ok(())
}

/// The refusal once the old way to pay's outcome is applied: the order is paid now
/// (409 `order_already_paid`), or its money is on its way (409
/// `order_payment_in_progress`).
async fn refused(state: &AppState, app: &str, order_id: &str, what: &str) -> ApiError {
    match orders::get(state.db.reader(), app, order_id).await {
        Ok(o) if o.amount_total > 0 && o.amount_paid >= o.amount_total => ApiError::conflict(
            "order_already_paid",
            format!("order {order_id} is already paid (through {what})"),
        )
        .with_param("order"),
        _ => in_progress(what),
    }
}

fn in_progress(what: &str) -> ApiError {
    ApiError::conflict(
        "order_payment_in_progress",
        format!(
            "{what} of this order has been paid (or is being paid) at the provider; its outcome has been fetched and applied: look at the order before paying again"
        ),
    )
    .with_param("order")
}

fn not_superseded(what: &str, e: ApiError) -> ApiError {
    let mut err = e;
    err.message = format!(
        "{what} of this order could not be ended at the provider, so a new way to pay is not opened (both would be payable): {}",
        err.message
    );
    err
}
