//! The ledger: the one place where what the provider tells us moves money state.
//!
//! Facts come from verified webhook events or from the provider's answers to our own
//! calls. Both go through a `UnitOfWork`: the rows involved are loaded (and on
//! PostgreSQL locked) first, the domain's forward-only machine is applied in memory —
//! emitting one of our events per real change — and `flush` writes what changed, in
//! the caller's transaction, so an event exists exactly when its change does. A batch of
//! webhook events is one unit of work: a handful of statements for the lot.
//! Refunds and subscriptions (`refunds`, `billing`) join the same unit of work.

mod billing;
mod refunds;

pub use billing::apply_subscription as apply_subscription_reading;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use paybridge_core::event_types;
use paybridge_core::ids::{CardId, EventId};
use paybridge_core::invariants::{self, Anomaly, Books};
use paybridge_core::payment::{
    apply, CheckoutStatus, Dispute, Failure, Lifecycle, OrderStatus, PaymentFact, PaymentState,
};
use paybridge_core::stripe::event::{self, Event, Refs, SeenCard};
use paybridge_store::checkouts::{self, CheckoutRow};
use paybridge_store::customers::{self, CardRow};
use paybridge_store::events::{self, EventRow};
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::{now, orders, Conn, StoreError};
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

/// One of our events, ready to append.
pub fn event_row(
    app: &str,
    kind: &str,
    object_id: &str,
    links: (Option<&str>, Option<&str>, Option<&str>),
    data: &impl Serialize,
) -> EventRow {
    debug_assert!(
        event_types::ALL.contains(&kind),
        "{kind} is not in paybridge_core::event_types::ALL"
    );
    let (order, payment, customer) = links;
    EventRow {
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
    events::append(conn, &event_row(app, kind, object_id, links, data)).await?;
    Ok(())
}

/// `ledger.anomaly` events committed by this process since it started (exported as
/// `paybridge_ledger_anomalies_total`). Counted once their transaction has committed
/// ([`count_anomalies`] with [`UnitOfWork::anomalies`]): an event built in a
/// transaction that rolls back (a webhook batch that fails and is tried again one
/// event at a time) is not one.
pub static ANOMALIES: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// The type of the event that tells a person about a refused fact.
const ANOMALY: &str = "ledger.anomaly";

/// A fact refused about a payment, as the log tells it.
#[derive(Debug, Clone)]
pub struct Refusal {
    payment: String,
    code: &'static str,
    reason: String,
    source: &'static str,
}

/// Counts and logs anomalies whose transaction has committed.
pub fn count_anomalies(refused: &[Refusal]) {
    for r in refused {
        tracing::warn!(payment = %r.payment, code = r.code, reason = %r.reason, source = r.source, "a fact breaks the ledger's invariants; not applied");
    }
    ANOMALIES.inc_by(refused.len() as u64);
}

/// The `ledger.anomaly` event for a fact refused about a payment: what was refused and
/// why, for a person to look at. It is logged once its transaction has committed
/// ([`count_anomalies`]): a webhook batch may be applied, rolled back and applied again
/// (a repeat among its events), and its log would otherwise tell a refusal twice, or
/// tell one of an event that turned out to be a repeat.
fn anomaly_event(p: &PaymentRow, a: &Anomaly, source: &str, fact: &str) -> EventRow {
    event_row(
        &p.app_id,
        ANOMALY,
        &p.id,
        (Some(&p.order_id), Some(&p.id), p.customer_id.as_deref()),
        &serde_json::json!({
            "object": "ledger_anomaly",
            "code": a.code,
            "reason": a.reason,
            "source": source,
            "fact": fact,
            "payment": PaymentView::of(p),
        }),
    )
}

/// A payment's books, for the invariants.
pub fn books<'a>(p: &'a PaymentRow, s: &'a PaymentState) -> Books<'a> {
    Books {
        amount: p.amount,
        currency: &p.currency,
        state: s,
        refunding: p.amount_refunding,
    }
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
    /// It breaks the ledger's invariants (`paybridge_core::invariants`): not applied,
    /// never retried, and told to the app as `ledger.anomaly`.
    Rejected(String),
}

impl Outcome {
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Outcome::Processed(d) => ("processed", d),
            Outcome::Ignored(d) => ("ignored", d),
            Outcome::Pending(d) => ("pending", d),
            Outcome::Failed(d) => ("failed", d),
            Outcome::Rejected(d) => ("rejected", d),
        }
    }
}

/// Rows loaded for a change, what the change does to them, and the events it emits.
#[derive(Default)]
pub struct UnitOfWork {
    payments: BTreeMap<String, PaymentRow>,
    payments_before: HashMap<String, PaymentRow>,
    checkouts: BTreeMap<String, CheckoutRow>,
    checkout_status_before: HashMap<String, String>,
    by_intent: HashMap<(String, String), String>,
    by_session: HashMap<(String, String), String>,
    checkout_by_session: HashMap<(String, String), String>,
    events: Vec<EventRow>,
    orders: BTreeSet<(String, String)>,
    cards: Vec<(String, SeenCard)>,
    refused: Vec<Refusal>,
}

impl UnitOfWork {
    pub fn new() -> UnitOfWork {
        UnitOfWork::default()
    }

    /// Adds a loaded (and locked) payment.
    pub fn add_payment(&mut self, p: PaymentRow) {
        if self.payments.contains_key(&p.id) {
            return;
        }
        self.index(&p);
        self.payments_before.insert(p.id.clone(), p.clone());
        self.payments.insert(p.id.clone(), p);
    }

    fn index(&mut self, p: &PaymentRow) {
        if let Some(pi) = &p.provider_payment_intent {
            self.by_intent
                .insert((p.app_id.clone(), pi.clone()), p.id.clone());
        }
        if let Some(cs) = &p.provider_checkout_session {
            self.by_session
                .insert((p.app_id.clone(), cs.clone()), p.id.clone());
        }
    }

    pub fn add_checkout(&mut self, c: CheckoutRow) {
        if let Some(s) = &c.provider_session_id {
            self.checkout_by_session
                .insert((c.app_id.clone(), s.clone()), c.id.clone());
        }
        self.checkout_status_before
            .entry(c.id.clone())
            .or_insert_with(|| c.status.clone());
        self.checkouts.entry(c.id.clone()).or_insert(c);
    }

    /// The facts refused so far, each told to the app as a `ledger.anomaly` event that
    /// `flush` writes: for [`count_anomalies`] once the transaction commits.
    pub fn anomalies(&self) -> &[Refusal] {
        &self.refused
    }

    /// Refuses a fact about `p` that breaks the ledger's invariants: it is not applied,
    /// and a `ledger.anomaly` event tells the app what was refused and why.
    pub fn refuse(&mut self, p: &PaymentRow, a: &Anomaly, source: &'static str, fact: &str) {
        self.events.push(anomaly_event(p, a, source, fact));
        self.refused.push(Refusal {
            payment: p.id.clone(),
            code: a.code,
            reason: a.reason.clone(),
            source,
        });
    }

    pub fn payment(&self, id: &str) -> Option<&PaymentRow> {
        self.payments.get(id)
    }

    /// Changes a payment's stored fields other than its money state (provider ids).
    pub fn payment_mut(&mut self, id: &str) -> Option<&mut PaymentRow> {
        self.payments.get_mut(id)
    }

    fn find_payment(&self, app: &str, refs: &Refs) -> Option<String> {
        let key = |v: &Option<String>| v.as_ref().map(|v| (app.to_owned(), v.clone()));
        refs.payment
            .as_ref()
            .filter(|id| self.payments.get(*id).is_some_and(|p| p.app_id == app))
            .cloned()
            .or_else(|| key(&refs.payment_intent).and_then(|k| self.by_intent.get(&k).cloned()))
            .or_else(|| key(&refs.checkout_session).and_then(|k| self.by_session.get(&k).cloned()))
    }

    fn find_checkout(&self, app: &str, refs: &Refs) -> Option<String> {
        refs.checkout
            .as_ref()
            .filter(|id| self.checkouts.get(*id).is_some_and(|c| c.app_id == app))
            .cloned()
            .or_else(|| {
                refs.checkout_session.as_ref().and_then(|s| {
                    self.checkout_by_session
                        .get(&(app.to_owned(), s.clone()))
                        .cloned()
                })
            })
    }

    /// Applies facts to a loaded payment; emits `payment.<status>` when its status
    /// moves, and marks its order for re-totalling when its money moves.
    pub fn apply_facts(&mut self, id: &str, facts: &[PaymentFact]) {
        self.change_state(id, |old| {
            facts.iter().fold(old.clone(), |s, f| apply(&s, f))
        });
    }

    /// Sets what a payment has refunded: the total of its succeeded refunds (a refund
    /// that fails after succeeding lowers it, which no fact can).
    pub fn set_refunded(&mut self, id: &str, total: i64) {
        self.change_state(id, |old| PaymentState {
            amount_refunded: total,
            ..old.clone()
        });
    }

    fn change_state(&mut self, id: &str, f: impl FnOnce(&PaymentState) -> PaymentState) {
        let Some(p) = self.payments.get_mut(id) else {
            return;
        };
        let old = state_of(p);
        let new = f(&old);
        write_state(p, &new);
        let moved = (old.status() != new.status())
            .then(|| event_types::of_payment(new.status()))
            .flatten();
        if let Some(kind) = moved {
            let row = event_row(
                &p.app_id,
                kind,
                &p.id,
                (Some(&p.order_id), Some(&p.id), p.customer_id.as_deref()),
                &PaymentView::of(p),
            );
            self.events.push(row);
        }
        if old.amount_captured != new.amount_captured
            || old.amount_refunded != new.amount_refunded
            || (old.dispute == Dispute::Lost) != (new.dispute == Dispute::Lost)
            || (old.lifecycle == Lifecycle::Succeeded) != (new.lifecycle == Lifecycle::Succeeded)
        {
            self.orders.insert((p.app_id.clone(), p.order_id.clone()));
        }
        let p = p.clone();
        self.index(&p);
    }

    /// Moves a loaded checkout forward; emits `checkout.completed` / `checkout.expired`.
    pub fn apply_checkout(&mut self, id: &str, fact: CheckoutStatus) {
        let Some(c) = self.checkouts.get_mut(id) else {
            return;
        };
        let payment = self.payments.get(&c.payment_id);
        let old = CheckoutStatus::parse(&c.status).unwrap_or(CheckoutStatus::Open);
        let new = old.apply(fact);
        if new == old {
            return;
        }
        c.status = new.as_str().to_owned();
        let Some(kind) = event_types::of_checkout(new) else {
            return;
        };
        let row = event_row(
            &c.app_id,
            kind,
            &c.id,
            (
                Some(&c.order_id),
                Some(&c.payment_id),
                c.customer_id.as_deref(),
            ),
            &CheckoutView::with_payment(c, payment),
        );
        self.events.push(row);
    }

    /// Applies a verified provider event to the loaded rows.
    /// Applies a verified provider event: payments and checkouts in memory, refunds and
    /// subscriptions (which need rows of their own) through `conn`.
    pub async fn apply_event(
        &mut self,
        conn: &mut Conn,
        app: &str,
        ev: &Event,
    ) -> Result<Outcome, StoreError> {
        let Some(r) = event::read(ev) else {
            return Ok(Outcome::Ignored(format!(
                "{} is not an event paybridge acts on",
                ev.kind
            )));
        };
        // paybridge makes every payment, refund and subscription on the platform's own
        // account: an event of a connected account is about that account's objects,
        // whatever metadata they carry, and moves nothing of ours.
        if let Some(account) = &ev.account {
            return Ok(Outcome::Ignored(format!(
                "an event of connected account {account}: paybridge's payments are the platform's"
            )));
        }
        if let Some(rf) = &r.refund {
            return self.apply_refund(conn, app, &r.refs, rf).await;
        }
        if let Some(s) = &r.subscription {
            return billing::apply_subscription(self, conn, app, s).await;
        }
        if let Some(inv) = &r.invoice {
            return billing::apply_invoice(self, conn, app, inv).await;
        }
        Ok(self.apply_payment_event(app, r))
    }

    fn apply_payment_event(&mut self, app: &str, r: event::Reading) -> Outcome {
        let checkout = self.find_checkout(app, &r.refs);
        let payment = self
            .find_payment(app, &r.refs)
            .or_else(|| {
                checkout
                    .as_ref()
                    .and_then(|c| self.checkouts.get(c))
                    .map(|c| c.payment_id.clone())
            })
            .filter(|p| self.payments.contains_key(p));
        let Some(pid) = payment else {
            return if r.refs.is_empty() {
                Outcome::Ignored("the object is not one paybridge created".into())
            } else {
                Outcome::Pending("no payment of this app matches the event yet".into())
            };
        };
        let p = self.payments.get_mut(&pid).expect("checked above");
        let reported = r.amount.as_ref().map(|(a, c)| (*a, c.as_str()));
        let state = state_of(p);
        let checked = invariants::check_reported(&books(p, &state), reported).and_then(|()| {
            r.payment
                .iter()
                .try_for_each(|f| invariants::check_payment_fact(&books(p, &state), None, f))
        });
        if let Err(a) = checked {
            let (p, fact) = (p.clone(), format!("{:?}", r.payment));
            self.refuse(&p, &a, "webhook", &fact);
            return Outcome::Rejected(a.to_string());
        }
        if p.provider_payment_intent.is_none() {
            p.provider_payment_intent = r.refs.payment_intent.clone();
        }
        if p.provider_checkout_session.is_none() {
            p.provider_checkout_session = r.refs.checkout_session.clone();
        }
        if r.refs.charge.is_some() {
            p.provider_charge = r.refs.charge.clone();
        }
        let takes_money = takes_money(&r.payment);
        note_card(p, r.card.as_ref(), takes_money);
        if p.save_card == 1 && takes_money && p.customer_id.is_some() {
            if let Some(card) = &r.card {
                self.cards.push((pid.clone(), card.clone()));
            }
        }
        self.apply_facts(&pid, &r.payment);
        if let (Some(c), Some(status)) = (&checkout, r.checkout) {
            self.apply_checkout(c, status);
        }
        let status = self
            .payments
            .get(&pid)
            .map(|p| p.status.clone())
            .unwrap_or_default();
        Outcome::Processed(format!("payment {pid} is {status}"))
    }

    /// Loads and locks what events need, in one go: checkouts first, then payments
    /// (the lock order everywhere), by our ids and by the provider's.
    pub async fn load_for(
        &mut self,
        conn: &mut Conn,
        app: &str,
        refs: &[Refs],
    ) -> Result<(), StoreError> {
        let pick = |f: fn(&Refs) -> &Option<String>| -> Vec<String> {
            let mut v: Vec<String> = refs.iter().filter_map(|r| f(r).clone()).collect();
            v.sort();
            v.dedup();
            v
        };
        let checkout_ids = pick(|r| &r.checkout);
        let sessions = pick(|r| &r.checkout_session);
        for c in checkouts::lock_many(conn, app, &checkout_ids, &sessions).await? {
            self.add_checkout(c);
        }
        let mut ids = pick(|r| &r.payment);
        ids.extend(
            self.checkouts
                .values()
                .filter(|c| c.app_id == app)
                .map(|c| c.payment_id.clone()),
        );
        ids.sort();
        ids.dedup();
        let intents = pick(|r| &r.payment_intent);
        for p in payments::lock_many(conn, app, &ids, &intents, &sessions).await? {
            self.add_payment(p);
        }
        Ok(())
    }

    /// Writes what changed: payments, checkouts, our events, the orders whose money
    /// moved, and saved cards.
    pub async fn flush(&mut self, conn: &mut Conn) -> Result<(), StoreError> {
        let ts = now();
        for (id, p) in self.payments.iter_mut() {
            if self.payments_before.get(id) != Some(p) {
                p.updated = ts;
                payments::save_state(conn, p).await?;
                self.payments_before.insert(id.clone(), p.clone());
            }
        }
        for (id, c) in &self.checkouts {
            if self.checkout_status_before.get(id) != Some(&c.status) {
                checkouts::set_status(conn, &c.app_id, id, &c.status).await?;
                self.checkout_status_before
                    .insert(id.clone(), c.status.clone());
            }
        }
        let mut cards = std::mem::take(&mut self.cards);
        for (pid, card) in cards.drain(..) {
            if let Some(p) = self.payments.get(&pid).cloned() {
                if let Some(saved) = save_card(conn, &p, &card).await? {
                    if let Some(p) = self.payments.get_mut(&pid) {
                        p.payment_method_id = Some(saved);
                        payments::save_state(conn, p).await?;
                    }
                }
            }
        }
        let evs = std::mem::take(&mut self.events);
        events::append_many(conn, &evs).await?;
        for (app, order) in std::mem::take(&mut self.orders) {
            refresh_order(conn, &app, &order).await?;
        }
        Ok(())
    }
}

/// Applies facts to one payment already locked in this transaction (`after` may carry
/// provider references the caller filled in) and writes the result.
pub async fn apply_payment_facts(
    conn: &mut Conn,
    before: &PaymentRow,
    after: PaymentRow,
    facts: &[PaymentFact],
) -> Result<PaymentRow, StoreError> {
    let mut uow = UnitOfWork::new();
    let id = before.id.clone();
    uow.add_payment(before.clone());
    let state = state_of(before);
    let refused = facts.iter().find_map(|f| {
        invariants::check_payment_fact(&books(before, &state), None, f)
            .err()
            .map(|a| (a, f))
    });
    if let Some((a, f)) = refused {
        // Facts from the provider's answer to our own call (or the reconciler's
        // question): none of them is applied, the provider ids neither.
        uow.refuse(before, &a, "provider_answer", &format!("{f:?}"));
        uow.flush(conn).await?;
        // Counted as written: the callers' transactions hold one payment's answer and
        // are not tried again as a batch (they do not report the count back).
        count_anomalies(uow.anomalies());
        return Ok(before.clone());
    }
    if let Some(p) = uow.payment_mut(&id) {
        *p = after;
    }
    uow.apply_facts(&id, facts);
    uow.flush(conn).await?;
    Ok(uow.payment(&id).cloned().unwrap_or_else(|| before.clone()))
}

/// Moves one checkout forward and writes it.
pub async fn apply_checkout_status(
    conn: &mut Conn,
    c: &CheckoutRow,
    fact: CheckoutStatus,
) -> Result<(), StoreError> {
    let mut uow = UnitOfWork::new();
    uow.add_checkout(c.clone());
    // Its payment, so the event tells what the checkout charges (read only: unchanged
    // rows are not written back).
    if let Ok(p) = payments::get(&mut *conn, &c.app_id, &c.payment_id).await {
        uow.add_payment(p);
    }
    uow.apply_checkout(&c.id, fact);
    uow.flush(conn).await
}

/// Applies one verified provider event inside the caller's transaction. Returns its
/// outcome and the facts it refused, each written as a `ledger.anomaly` event
/// ([`count_anomalies`] once the transaction commits).
pub async fn apply_event(
    conn: &mut Conn,
    app: &str,
    ev: &Event,
) -> Result<(Outcome, Vec<Refusal>), StoreError> {
    let mut uow = UnitOfWork::new();
    if let Some(r) = event::read(ev) {
        uow.load_for(conn, app, &[r.refs]).await?;
    }
    let outcome = uow.apply_event(conn, app, ev).await?;
    uow.flush(conn).await?;
    Ok((outcome, uow.refused))
}

/// Re-totals an order from its payments; emits `order.<status>` when its status moves.
///
/// Money given back counts refunds and lost disputes. Money that paid the order twice
/// (two ways to pay both succeeded before one could be ended) is refunded: a `surplus`
/// refund is opened on the latest payments for the excess, sent to the provider by the
/// reconciler at once, and the order says so (`order.overpaid`). A surplus given back
/// does not count against the order's status.
///
/// On PostgreSQL the order's payments are locked before the order, in id order, as in
/// every transaction (`payments::lock_of_order`): the surplus refund reserves its
/// amount on one of them while the order is locked.
pub async fn refresh_order(conn: &mut Conn, app: &str, order_id: &str) -> Result<(), StoreError> {
    let mut ps = payments::lock_of_order(conn, app, order_id).await?;
    let order = orders::lock(conn, app, order_id).await?;
    let paid: i64 = ps
        .iter()
        .filter(|p| p.lifecycle == "succeeded")
        .map(|p| p.amount_captured)
        .sum();
    let lost: i64 = ps
        .iter()
        .filter(|p| p.lifecycle == "succeeded" && p.dispute == "lost")
        .map(|p| (p.amount_captured - p.amount_refunded).max(0))
        .sum();
    let refunded: i64 = ps.iter().map(|p| p.amount_refunded).sum::<i64>() + lost;
    let rs = paybridge_store::refunds::of_order(&mut *conn, app, order_id).await?;
    let surplus_sum = |status: &str| -> i64 {
        rs.iter()
            .filter(|r| r.source == "surplus" && r.status == status)
            .map(|r| r.amount)
            .sum()
    };
    let (surplus_given, surplus_pending) = (surplus_sum("succeeded"), surplus_sum("pending"));
    let over = invariants::surplus(order.amount_total, paid, refunded);
    if over > surplus_pending {
        ps.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
        refund_surplus(conn, &order, &ps, over - surplus_pending, paid, refunded).await?;
    }
    let status = OrderStatus::derive(
        order.amount_total,
        paid - surplus_given,
        refunded - surplus_given,
    );
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
    let moved = (status.as_str() != order.status)
        .then(|| event_types::of_order(status))
        .flatten();
    if let Some(kind) = moved {
        let mut after = order.clone();
        after.amount_paid = paid;
        after.amount_refunded = refunded;
        after.status = status.as_str().to_owned();
        emit(
            conn,
            app,
            kind,
            order_id,
            (Some(order_id), None, order.customer_id.as_deref()),
            &OrderView::of(&after),
        )
        .await?;
    }
    Ok(())
}

/// Opens refunds of `excess` on an overpaid order's payments, latest first, each
/// admitted like any refund (within what its payment captured), and emits
/// `order.overpaid`.
async fn refund_surplus(
    conn: &mut Conn,
    order: &orders::OrderRow,
    newest_first: &[PaymentRow],
    excess: i64,
    paid: i64,
    refunded: i64,
) -> Result<(), StoreError> {
    use paybridge_store::refunds::{self, RefundRow};
    let mut left = excess;
    let mut opened = Vec::new();
    for p in newest_first {
        if left == 0 {
            break;
        }
        if p.lifecycle != "succeeded" || matches!(p.dispute.as_str(), "open" | "lost") {
            continue;
        }
        let take = left.min(p.amount_captured - p.amount_refunding);
        if take <= 0 {
            continue;
        }
        if payments::reserve_refund(conn, &order.app_id, &p.id, take)
            .await?
            .is_none()
        {
            continue;
        }
        let ts = now();
        let r = RefundRow {
            id: paybridge_core::ids::RefundId::generate().into_string(),
            app_id: order.app_id.clone(),
            payment_id: p.id.clone(),
            order_id: order.id.clone(),
            amount: take,
            currency: p.currency.clone(),
            reason: Some("duplicate".into()),
            status: "pending".into(),
            failure_reason: None,
            provider_refund_id: None,
            refund_application_fee: 0,
            reverse_transfer: 0,
            source: "surplus".into(),
            metadata: "{}".into(),
            created: ts,
            updated: ts,
        };
        refunds::insert(&mut *conn, &r).await?;
        emit(
            conn,
            &order.app_id,
            "refund.pending",
            &r.id,
            (Some(&order.id), Some(&p.id), p.customer_id.as_deref()),
            &super::views::RefundView::of(&r),
        )
        .await?;
        left -= take;
        opened.push(r.id);
    }
    if left > 0 {
        tracing::warn!(order = %order.id, left, "an overpaid order's surplus cannot all be refunded automatically");
    }
    let mut view = OrderView::of(order);
    view.amount_paid = paid;
    view.amount_refunded = refunded;
    emit(
        conn,
        &order.app_id,
        "order.overpaid",
        &order.id,
        (Some(&order.id), None, order.customer_id.as_deref()),
        &serde_json::json!({
            "object": "order_surplus",
            "surplus": excess,
            "refunding": excess - left,
            "refunds": opened,
            "order": view,
        }),
    )
    .await?;
    Ok(())
}

/// Notes on a payment the card the provider reported (its brand and last 4), before the
/// facts reported with it are applied. The card that took the money is the payment's
/// for good: a card reported with a fact that takes money replaces any other, and one
/// reported otherwise (a decline, an event arriving late) only while no money was
/// taken. Money taken after a decline, with no card reported yet, forgets the declined
/// card: the one that paid is told by its charge.
pub fn note_card(p: &mut PaymentRow, card: Option<&SeenCard>, takes_money: bool) {
    let took = matches!(p.lifecycle.as_str(), "succeeded" | "requires_capture");
    match card.and_then(|c| Some((c.last4.as_ref()?, c))) {
        Some((last4, c)) if takes_money || !took => {
            p.card_last4 = Some(last4.clone());
            p.card_brand = c.brand.clone();
        }
        None if takes_money && p.lifecycle == "failed" => {
            p.card_last4 = None;
            p.card_brand = None;
        }
        _ => {}
    }
}

/// Whether facts take money (the card reported with them is the one that paid).
pub fn takes_money(facts: &[PaymentFact]) -> bool {
    facts.iter().any(|f| {
        matches!(
            f,
            PaymentFact::Succeeded { .. } | PaymentFact::RequiresCapture { .. }
        )
    })
}

/// Saves the card a payment was made with as its customer's default (`save_card`).
pub async fn save_card(
    conn: &mut Conn,
    p: &PaymentRow,
    card: &SeenCard,
) -> Result<Option<String>, StoreError> {
    let (Some(customer), Some(payment_method)) =
        (p.customer_id.as_deref(), card.payment_method.as_ref())
    else {
        return Ok(None);
    };
    let row = customers::save_card(
        &mut *conn,
        &CardRow {
            id: CardId::generate().into_string(),
            app_id: p.app_id.clone(),
            customer_id: customer.to_owned(),
            provider_payment_method_id: payment_method.clone(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use paybridge_core::event_types::ALL;

    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read the server's source") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with("_tests.rs")
            {
                let mut text = std::fs::read_to_string(&path).expect("read a source file");
                // Tests emit nothing: what follows a file's test module is not read.
                if let Some(at) = text.find("#[cfg(test)]") {
                    text.truncate(at);
                }
                out.push((path.display().to_string(), text));
            }
        }
    }

    /// The string literals of `text` shaped as `word.word`.
    fn dotted_literals(text: &str) -> Vec<&str> {
        let b = text.as_bytes();
        let word = |mut i: usize| {
            while i < b.len() && (b[i].is_ascii_lowercase() || b[i] == b'_') {
                i += 1;
            }
            i
        };
        let mut found = Vec::new();
        for (i, _) in text.match_indices('"') {
            let dot = word(i + 1);
            if dot == i + 1 || b.get(dot) != Some(&b'.') {
                continue;
            }
            let end = word(dot + 1);
            if end > dot + 1 && b.get(end) == Some(&b'"') {
                found.push(&text[i + 1..end]);
            }
        }
        found
    }

    /// Every event type the server emits is listed in `event_types::ALL` (which callback
    /// endpoints may ask for and `GET /v1/events?type=` accepts): the types that follow
    /// a status come from `event_types::of_*` (checked in core); the others are
    /// literals, collected here from the server's source. A type built at run time (a
    /// `format!` of a prefix and a status) would escape both checks, so none may be.
    #[test]
    fn every_event_type_the_server_names_is_listed() {
        let prefixes: BTreeSet<&str> = ALL
            .iter()
            .filter_map(|t| t.split_once('.'))
            .map(|(p, _)| p)
            .collect();
        // Names that share a prefix with our event types: an object's, and Stripe's
        // own event types.
        let not_events = ["checkout.session", "refund.created", "refund.updated"];
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut named = BTreeSet::new();
        for (path, text) in &files {
            for p in &prefixes {
                assert!(
                    !text.contains(&format!("\"{p}.{{")),
                    "{path} builds a {p}.… event type at run time: use event_types::of_*"
                );
            }
            for lit in dotted_literals(text) {
                let prefix = lit.split_once('.').map_or(lit, |(p, _)| p);
                if prefixes.contains(prefix) && !not_events.contains(&lit) {
                    assert!(
                        ALL.contains(&lit),
                        "{path} names {lit}, which is not in event_types::ALL"
                    );
                    named.insert(lit);
                }
            }
        }
        // The scan sees the literal types (it would pass vacuously otherwise).
        for t in [
            "ledger.anomaly",
            "order.overpaid",
            "callback_endpoint.disabled",
            "subscription.payment_failed",
        ] {
            assert!(
                named.contains(t),
                "{t} was not found in the server's source"
            );
        }
    }

    /// The dashboard offers callback endpoints every event type, and only those.
    #[test]
    fn the_dashboard_offers_every_event_type() {
        let setup = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("web/admin/setup.js"),
        )
        .expect("read setup.js");
        let list = setup
            .split_once("const EVENT_TYPES = [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| list)
            .expect("setup.js has EVENT_TYPES");
        let offered: BTreeSet<&str> = list
            .split(',')
            .map(|t| t.trim().trim_matches('"'))
            .filter(|t| !t.is_empty())
            .collect();
        let all: BTreeSet<&str> = ALL.iter().copied().collect();
        assert_eq!(offered, all);
    }
}
