//! The ledger: the one place where what the provider tells us moves money state.
//!
//! Facts come from a verified webhook event or from the provider's answer to our own
//! call; both pass through `apply_payment_facts`, inside the caller's transaction,
//! which runs the domain's forward-only machine, writes the payment, re-totals the
//! order, and appends our events — one per real change, in the same transaction, so an
//! event exists exactly when its change does.

use paybridge_core::ids::{CardId, EventId};
use paybridge_core::payment::{
    apply, CheckoutStatus, Dispute, Failure, Lifecycle, OrderStatus, PaymentFact, PaymentState,
};
use paybridge_core::stripe::event::{self, Event, SeenCard};
use paybridge_store::customers::{self, CardRow};
use paybridge_store::events::{self, EventRow};
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::{checkouts, now, orders, Conn, StoreError};
use serde::Serialize;

use super::views::{CheckoutView, OrderView, PaymentView};

/// The state machine's view of a stored payment.
pub fn state_of(p: &PaymentRow) -> PaymentState {
    PaymentState {
        lifecycle: Lifecycle::parse(&p.lifecycle).unwrap_or(Lifecycle::Initiated),
        amount_capturable: p.amount_capturable,
        amount_captured: p.amount_captured,
        amount_refunded: p.amount_refunded,
        dispute: Dispute::parse(&p.dispute).unwrap_or_default(),
        failure: p.failure_at.map(|at| Failure {
            at,
            code: p.failure_code.clone(),
            decline_code: p.decline_code.clone(),
            message: p.failure_message.clone(),
        }),
    }
}

fn write_state(p: &mut PaymentRow, s: &PaymentState) {
    p.lifecycle = s.lifecycle.as_str().to_owned();
    p.status = s.status().as_str().to_owned();
    p.amount_capturable = s.amount_capturable;
    p.amount_captured = s.amount_captured;
    p.amount_refunded = s.amount_refunded;
    p.dispute = s.dispute.as_str().to_owned();
    if let Some(f) = &s.failure {
        p.failure_at = Some(f.at);
        p.failure_code = f.code.clone();
        p.decline_code = f.decline_code.clone();
        p.failure_message = f.message.clone();
    }
}

/// Appends one of our events.
pub async fn emit(
    conn: &mut Conn,
    app: &str,
    kind: &str,
    object_id: &str,
    links: (Option<&str>, Option<&str>, Option<&str>),
    data: &impl Serialize,
) -> Result<(), StoreError> {
    let (order, payment, customer) = links;
    events::append(
        conn,
        &EventRow {
            seq: 0,
            id: EventId::generate().into_string(),
            app_id: app.to_owned(),
            kind: kind.to_owned(),
            object_id: object_id.to_owned(),
            order_id: order.map(str::to_owned),
            payment_id: payment.map(str::to_owned),
            customer_id: customer.map(str::to_owned),
            data: serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
            created: now(),
        },
    )
    .await?;
    Ok(())
}

/// Applies facts to a payment already locked in this transaction (its provider
/// references may have been filled in by the caller), saves it if anything changed,
/// re-totals its order, and emits `payment.<status>` when the status changed.
pub async fn apply_payment_facts(
    conn: &mut Conn,
    before: &PaymentRow,
    mut p: PaymentRow,
    facts: &[PaymentFact],
) -> Result<PaymentRow, StoreError> {
    let old = state_of(before);
    let new = facts.iter().fold(old.clone(), |s, f| apply(&s, f));
    write_state(&mut p, &new);
    if before != &p {
        p.updated = now();
        payments::save_state(conn, &p).await?;
    }
    if old.status() != new.status() {
        emit(
            conn,
            &p.app_id,
            &format!("payment.{}", new.status().as_str()),
            &p.id,
            (Some(&p.order_id), Some(&p.id), p.customer_id.as_deref()),
            &PaymentView::of(&p),
        )
        .await?;
    }
    if old.amount_captured != new.amount_captured
        || old.amount_refunded != new.amount_refunded
        || (old.lifecycle == Lifecycle::Succeeded) != (new.lifecycle == Lifecycle::Succeeded)
    {
        refresh_order(conn, &p.app_id, &p.order_id).await?;
    }
    Ok(p)
}

/// Re-totals an order from its payments; emits `order.<status>` when its status moves.
pub async fn refresh_order(conn: &mut Conn, app: &str, order_id: &str) -> Result<(), StoreError> {
    let order = orders::lock(conn, app, order_id).await?;
    let ps = payments::of_order(&mut *conn, app, order_id).await?;
    let paid: i64 = ps
        .iter()
        .filter(|p| p.lifecycle == "succeeded")
        .map(|p| p.amount_captured)
        .sum();
    let refunded: i64 = ps.iter().map(|p| p.amount_refunded).sum();
    let status = OrderStatus::derive(order.amount_total, paid, refunded);
    if (paid, refunded, status.as_str())
        == (
            order.amount_paid,
            order.amount_refunded,
            order.status.as_str(),
        )
    {
        return Ok(());
    }
    orders::set_amounts(conn, app, order_id, paid, refunded, status.as_str()).await?;
    if status.as_str() != order.status {
        let mut after = order.clone();
        after.amount_paid = paid;
        after.amount_refunded = refunded;
        after.status = status.as_str().to_owned();
        emit(
            conn,
            app,
            &format!("order.{}", status.as_str()),
            order_id,
            (Some(order_id), None, order.customer_id.as_deref()),
            &OrderView::of(&after),
        )
        .await?;
    }
    Ok(())
}

/// Moves a checkout forward (open → complete | expired); emits `checkout.<status>`.
pub async fn apply_checkout_status(
    conn: &mut Conn,
    c: &checkouts::CheckoutRow,
    fact: CheckoutStatus,
) -> Result<(), StoreError> {
    let old = CheckoutStatus::parse(&c.status).unwrap_or(CheckoutStatus::Open);
    let new = old.apply(fact);
    if new == old {
        return Ok(());
    }
    checkouts::set_status(conn, &c.app_id, &c.id, new.as_str()).await?;
    let mut after = c.clone();
    after.status = new.as_str().to_owned();
    emit(
        conn,
        &c.app_id,
        match new {
            CheckoutStatus::Complete => "checkout.completed",
            CheckoutStatus::Expired => "checkout.expired",
            CheckoutStatus::Open => "checkout.opened",
        },
        &c.id,
        (
            Some(&c.order_id),
            Some(&c.payment_id),
            c.customer_id.as_deref(),
        ),
        &CheckoutView::of(&after),
    )
    .await
}

/// Saves the card a payment was made with as its customer's default (`save_card`).
pub async fn save_card(
    conn: &mut Conn,
    p: &PaymentRow,
    card: &SeenCard,
) -> Result<Option<String>, StoreError> {
    let Some(customer) = p.customer_id.as_deref() else {
        return Ok(None);
    };
    let row = customers::save_card(
        &mut *conn,
        &CardRow {
            id: CardId::generate().into_string(),
            app_id: p.app_id.clone(),
            customer_id: customer.to_owned(),
            provider_payment_method_id: card.payment_method.clone(),
            brand: card.brand.clone(),
            last4: card.last4.clone(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            detached: 0,
            created: now(),
        },
    )
    .await?;
    customers::set_default_payment_method(&mut *conn, &p.app_id, customer, Some(&row.id)).await?;
    Ok(Some(row.id))
}

/// What processing made of a provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Processed(String),
    /// An event type or object paybridge does not act on.
    Ignored(String),
    /// About an object of ours not known yet: kept, and applied when it can be.
    Pending(String),
    /// Refused by a check (an amount that does not match); kept for inspection.
    Failed(String),
}

impl Outcome {
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Outcome::Processed(d) => ("processed", d),
            Outcome::Ignored(d) => ("ignored", d),
            Outcome::Pending(d) => ("pending", d),
            Outcome::Failed(d) => ("failed", d),
        }
    }
}

/// Applies a verified provider event, inside the caller's transaction.
pub async fn apply_event(conn: &mut Conn, app: &str, ev: &Event) -> Result<Outcome, StoreError> {
    let Some(r) = event::read(ev) else {
        return Ok(Outcome::Ignored(format!(
            "{} is not an event paybridge acts on",
            ev.kind
        )));
    };
    let checkout = checkouts::lock_by_refs(
        conn,
        app,
        r.refs.checkout.as_deref(),
        r.refs.checkout_session.as_deref(),
    )
    .await?;
    let mut payment = payments::lock_by_refs(
        conn,
        app,
        r.refs.payment.as_deref(),
        r.refs.payment_intent.as_deref(),
        r.refs.checkout_session.as_deref(),
    )
    .await?;
    if payment.is_none() {
        if let Some(c) = &checkout {
            payment = Some(payments::lock(conn, app, &c.payment_id).await?);
        }
    }
    let Some(before) = payment else {
        return Ok(if r.refs.is_empty() {
            Outcome::Ignored("the object is not one paybridge created".into())
        } else {
            Outcome::Pending("no payment of this app matches the event yet".into())
        });
    };
    if let Some((amount, currency)) = &r.amount {
        if !currency.eq_ignore_ascii_case(&before.currency) || *amount != before.amount {
            return Ok(Outcome::Failed(format!(
                "the event is about {amount} {currency}, the payment is {} {}",
                before.amount, before.currency
            )));
        }
    }
    let mut p = before.clone();
    if p.provider_payment_intent.is_none() {
        p.provider_payment_intent = r.refs.payment_intent.clone();
    }
    if p.provider_checkout_session.is_none() {
        p.provider_checkout_session = r.refs.checkout_session.clone();
    }
    if r.refs.charge.is_some() {
        p.provider_charge = r.refs.charge.clone();
    }
    let takes_money = r.payment.iter().any(|f| {
        matches!(
            f,
            PaymentFact::Succeeded { .. } | PaymentFact::RequiresCapture { .. }
        )
    });
    if p.save_card == 1 && takes_money {
        if let Some(card) = &r.card {
            if let Some(id) = save_card(conn, &p, card).await? {
                p.payment_method_id = Some(id);
            }
        }
    }
    let p = apply_payment_facts(conn, &before, p, &r.payment).await?;
    if let (Some(c), Some(status)) = (&checkout, r.checkout) {
        apply_checkout_status(conn, c, status).await?;
    }
    Ok(Outcome::Processed(format!(
        "payment {} is {}",
        p.id, p.status
    )))
}
