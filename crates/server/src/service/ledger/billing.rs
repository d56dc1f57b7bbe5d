//! Subscriptions in the ledger: their status as the provider reports it (the latest
//! report wins, cancellation is final), and each paid or failed invoice as an order
//! with its payment — Momen's "recurring payment charge".

use paybridge_core::ids::{OrderId, PaymentId};
use paybridge_core::payment::{
    apply_subscription as next_status, Failure, PaymentFact, SubscriptionStatus,
};
use paybridge_core::stripe::event::{InvoiceReading, SubscriptionReading};
use paybridge_store::orders::{self, OrderRow};
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::subscriptions::{self, SubscriptionRow};
use paybridge_store::{checkouts, now, products, Conn, StoreError};

use super::{event_row, Outcome, UnitOfWork};
use crate::service::views::{LineItemView, RecurringView, SubscriptionView};

/// Applies a subscription's state; emits `subscription.created` when the provider's
/// subscription is first linked, `subscription.canceled` when it ends, and
/// `subscription.updated` for any other change.
pub async fn apply_subscription(
    uow: &mut UnitOfWork,
    conn: &mut Conn,
    app: &str,
    s: &SubscriptionReading,
) -> Result<Outcome, StoreError> {
    let Some(mut row) = subscriptions::lock_by_refs(
        conn,
        app,
        s.ours.as_deref(),
        Some(&s.provider_subscription),
        None,
    )
    .await?
    else {
        return Ok(Outcome::Pending(
            "no subscription of this app matches yet".into(),
        ));
    };
    let before = row.clone();
    let current = SubscriptionStatus::parse(&row.status).unwrap_or(SubscriptionStatus::Incomplete);
    let newer = s.at >= row.status_at;
    let (status, at) = next_status(current, row.status_at, s.status, s.at);
    row.status = status.as_str().to_owned();
    row.status_at = at;
    if row.provider_subscription_id.is_none() {
        row.provider_subscription_id = Some(s.provider_subscription.clone());
    }
    if newer {
        row.current_period_start = s.current_period_start.or(row.current_period_start);
        row.current_period_end = s.current_period_end.or(row.current_period_end);
        row.cancel_at_period_end = i64::from(s.cancel_at_period_end);
    }
    if status == SubscriptionStatus::Canceled && row.canceled_at.is_none() {
        row.canceled_at = Some(s.canceled_at.unwrap_or(s.at));
    }
    if row == before {
        return Ok(Outcome::Processed(format!(
            "subscription {} is {}",
            row.id, row.status
        )));
    }
    subscriptions::save(conn, &row).await?;
    let kind = if before.provider_subscription_id.is_none() {
        "subscription.created"
    } else if row.status == "canceled" && before.status != "canceled" {
        "subscription.canceled"
    } else {
        "subscription.updated"
    };
    uow.events.push(event_row(
        app,
        kind,
        &row.id,
        (None, None, row.customer_id.as_deref()),
        &SubscriptionView::of(&row),
    ));
    Ok(Outcome::Processed(format!(
        "subscription {} is {}",
        row.id, row.status
    )))
}

/// Records an invoice of a subscription. The first invoice of a subscription started
/// by a checkout is that checkout's order; every other invoice makes an order of its
/// own, with one payment: succeeded when the invoice is paid, failed when it is not,
/// `requires_action` while its payment awaits the customer's authentication (3-D
/// Secure: `invoice.payment_action_required`). An invoice is recorded once, whichever
/// of its events arrive and how often; its later events move that payment forward.
pub(super) async fn apply_invoice(
    uow: &mut UnitOfWork,
    conn: &mut Conn,
    app: &str,
    inv: &InvoiceReading,
) -> Result<Outcome, StoreError> {
    let Some(provider_sub) = &inv.provider_subscription else {
        return Ok(Outcome::Ignored("not a subscription invoice".into()));
    };
    let Some(sub) = subscriptions::lock_by_refs(
        conn,
        app,
        inv.subscription.as_deref(),
        Some(provider_sub),
        None,
    )
    .await?
    else {
        return Ok(Outcome::Pending(
            "no subscription of this app matches the invoice yet".into(),
        ));
    };
    // The subscription's own event, when the invoice is paid or failed (an invoice
    // awaiting authentication is told by its payment's `payment.requires_action`).
    let kind = match (inv.paid, inv.action_required) {
        (true, _) => Some("subscription.payment_succeeded"),
        (false, false) => Some("subscription.payment_failed"),
        (false, true) => None,
    };
    let fact = if inv.paid {
        PaymentFact::Succeeded {
            amount_captured: inv.amount,
        }
    } else if inv.action_required {
        PaymentFact::RequiresAction
    } else {
        PaymentFact::Failed(Failure {
            at: inv.at,
            code: Some("invoice_payment_failed".into()),
            decline_code: None,
            message: Some("The subscription's renewal payment failed.".into()),
        })
    };
    if let Some(order) = orders::by_invoice(conn, app, &inv.provider_invoice).await? {
        // Seen before: a failed or unauthenticated invoice paid later settles its
        // payment now; one awaiting authentication fails when authentication does.
        // Locked (on PostgreSQL, with its order's other payments, in the lock order of
        // every transaction), and the unit of work's copy if this batch already holds
        // it: an earlier event of the batch may have moved it (Stripe sends
        // `invoice.paid` and `invoice.payment_succeeded` together), and a copy read from
        // the database would tell the subscription a second time.
        let found = payments::lock_of_order(conn, app, &order.id)
            .await?
            .into_iter()
            .find(|p| p.method == "subscription");
        if let Some(found) = found {
            let id = found.id.clone();
            uow.add_payment(found);
            let p = uow.payment(&id).cloned().expect("just added");
            if p.lifecycle != "succeeded" {
                let state = super::state_of(&p);
                if let Err(a) = paybridge_core::invariants::check_payment_fact(
                    &super::books(&p, &state),
                    Some((inv.amount, inv.currency.as_str())),
                    &fact,
                ) {
                    uow.refuse(&p, &a, "webhook", &format!("{fact:?}"));
                    return Ok(Outcome::Rejected(a.to_string()));
                }
                let before = p.status.clone();
                uow.apply_facts(&id, &[fact]);
                let moved = uow.payment(&id).is_some_and(|p| p.status != before);
                if let (Some(kind), true) = (kind, moved) {
                    uow.events.push(event_row(
                        app,
                        kind,
                        &sub.id,
                        (Some(&order.id), Some(&id), sub.customer_id.as_deref()),
                        &SubscriptionView::of(&sub),
                    ));
                }
            }
        }
        return Ok(Outcome::Processed(format!(
            "invoice {} is order {}",
            inv.provider_invoice, order.id
        )));
    }
    if inv.billing_reason.as_deref() == Some("subscription_create") {
        if let Some(checkout) = &sub.checkout_id {
            let c = checkouts::get(&mut *conn, app, checkout).await?;
            orders::set_invoice(conn, app, &c.order_id, &inv.provider_invoice, Some(&sub.id))
                .await?;
            if let Some(kind) = kind {
                uow.events.push(event_row(
                    app,
                    kind,
                    &sub.id,
                    (
                        Some(&c.order_id),
                        Some(&c.payment_id),
                        sub.customer_id.as_deref(),
                    ),
                    &SubscriptionView::of(&sub),
                ));
            }
            return Ok(Outcome::Processed(format!(
                "invoice {} is the checkout's order {}",
                inv.provider_invoice, c.order_id
            )));
        }
    }
    if inv.amount <= 0 {
        return Ok(Outcome::Ignored("an invoice with nothing to pay".into()));
    }
    let (order, payment) = recurring_charge(conn, &sub, inv).await?;
    let pid = payment.id.clone();
    uow.add_payment(payment);
    uow.apply_facts(&pid, &[fact]);
    if let Some(kind) = kind {
        uow.events.push(event_row(
            app,
            kind,
            &sub.id,
            (Some(&order.id), Some(&pid), sub.customer_id.as_deref()),
            &SubscriptionView::of(&sub),
        ));
    }
    Ok(Outcome::Processed(format!(
        "invoice {} is order {}",
        inv.provider_invoice, order.id
    )))
}

/// Stores the order and payment of one recurring charge.
async fn recurring_charge(
    conn: &mut Conn,
    sub: &SubscriptionRow,
    inv: &InvoiceReading,
) -> Result<(OrderRow, PaymentRow), StoreError> {
    let name = match &sub.product_id {
        Some(p) => products::get_in(&mut *conn, &sub.app_id, p)
            .await
            .map(|p| p.name)
            .unwrap_or_else(|_| "Subscription".into()),
        None => "Subscription".into(),
    };
    let ts = now();
    let order_id = OrderId::generate();
    let line = LineItemView {
        product: sub.product_id.clone(),
        name,
        unit_amount: sub.unit_amount,
        quantity: sub.quantity,
        amount: inv.amount,
        provider_price_id: sub.provider_price_id.clone(),
        recurring: None::<RecurringView>,
    };
    let order = OrderRow {
        client_secret: String::new(),
        id: order_id.into_string(),
        app_id: sub.app_id.clone(),
        customer_id: sub.customer_id.clone(),
        currency: inv.currency.to_lowercase(),
        amount_total: inv.amount,
        amount_paid: 0,
        amount_refunded: 0,
        status: "open".into(),
        line_items: serde_json::to_string(&[line]).unwrap_or_else(|_| "[]".into()),
        metadata: "{}".into(),
        subscription_id: Some(sub.id.clone()),
        provider_invoice_id: Some(inv.provider_invoice.clone()),
        created: ts,
        updated: ts,
    };
    orders::insert(&mut *conn, &order).await?;
    let provider = paybridge_store::config::provider_of(conn, &sub.app_id)
        .await?
        .unwrap_or_default();
    let payment = PaymentRow {
        customer_id: sub.customer_id.clone(),
        method: "subscription".into(),
        provider,
        provider_payment_intent: inv.payment_intent.clone(),
        provider_charge: inv.charge.clone(),
        ..PaymentRow::initiated(
            PaymentId::generate().into_string(),
            sub.app_id.clone(),
            order.id.clone(),
            inv.amount,
            order.currency.clone(),
            ts,
        )
    };
    payments::insert(&mut *conn, &payment).await?;
    Ok((order, payment))
}
