//! A deterministic simulation of payments' lives, seeded, checked against a reference.
//!
//! Each seed makes one payment and plays it out. The **provider** has a true history for
//! it: pending, perhaps processing, then failed or succeeded, or authorised and then
//! captured or canceled, perhaps disputed. Refunds run their own course: pending, then
//! succeeded or failed, and sometimes failed after succeeding. Every step of that
//! history is an event on a **network** that delays, reorders and duplicates them.
//!
//! **paybridge's side** is the ledger's rules over durable rows:
//! - a payment's state moves by `paybridge_core::payment::apply`;
//! - a refund is admitted by the conditional reservation
//!   (`refunding + amount <= captured`) and moves by `RefundStatus::apply`;
//! - the reservation is released when a refund stops holding its amount;
//! - the refunded total is the sum of succeeded refunds;
//! - the order's status comes from `OrderStatus::derive`;
//! - one event of ours is written per change of status.
//!
//! Steps that write are transactions that may **crash** before they commit, so nothing
//! of theirs is kept and the event is delivered again. API calls may crash between
//! admission, the provider call and recording its answer. Several refunds are
//! requested at once and interleave. A reconciler asks the provider for the truth.
//!
//! At every step the invariants hold: never more held or refunded than captured; the
//! reservation equals the refunds that hold an amount; the provider never has to refuse
//! an over-refund; a copy of an event already applied changes nothing. At the end,
//! after the network drains, the payment, its refunds and its order match the
//! reference: the provider's own final truth.
//!
//! Facts that cannot be true are sent too, as a buggy or forged provider would: a
//! capture beyond the amount, negative amounts, a refund in another currency or beyond
//! the capture, an object about another amount. Every fact enters through the
//! ledger's invariants (`paybridge_core::invariants`), as in the server; each forged one
//! must be rejected, every true one admitted (else the end state would not match the
//! reference), and the books' invariants are checked after every step.
//!
//! A failure names its seed; `paybridge-sim --seed N` replays it exactly. The random
//! numbers come from SplitMix64, written out below, so a seed means the same run on
//! any machine and after any dependency upgrade.

use paybridge_core::invariants::{self, Books};
use paybridge_core::payment::{
    apply, Dispute, Failure, Lifecycle, OrderStatus, PaymentFact, PaymentState, PaymentStatus,
    RefundStatus,
};

/// SplitMix64: tiny, fast, and fixed forever (replays must not change).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the provider says about something.
#[derive(Debug, Clone, PartialEq)]
enum Fact {
    Payment(PaymentFact),
    /// The provider's refund `provider`, made for our refund `ours` (its `pb_refund`
    /// metadata), is now `status`.
    Refund {
        provider: usize,
        ours: usize,
        status: RefundStatus,
    },
}

#[derive(Debug, Clone)]
struct Event {
    id: u64,
    fact: Fact,
}

/// The provider's side: the truth.
struct Provider {
    amount: i64,
    /// The payment's history still to happen, in order.
    script: Vec<PaymentFact>,
    state: PaymentState,
    /// Its refunds: amount, status, and what is still to happen to each.
    refunds: Vec<(i64, RefundStatus, Vec<RefundStatus>)>,
    /// Our refund id → its refund (idempotency keys: one refund per id).
    keys: Vec<(usize, usize)>,
    next_event: u64,
    refused_over_refunds: u32,
}

impl Provider {
    fn emit(&mut self, fact: Fact, net: &mut Network, rng: &mut Rng) {
        self.next_event += 1;
        net.send(
            Event {
                id: self.next_event,
                fact,
            },
            rng,
        );
    }

    /// Creates our refund `ours` (once, however often asked), or refuses it.
    fn create_refund(
        &mut self,
        ours: usize,
        amount: i64,
        rng: &mut Rng,
        net: &mut Network,
    ) -> Result<usize, ()> {
        if let Some((_, i)) = self.keys.iter().find(|(o, _)| *o == ours) {
            return Ok(*i);
        }
        let held: i64 = self
            .refunds
            .iter()
            .filter(|r| r.1.holds_amount())
            .map(|r| r.0)
            .sum();
        if self.state.lifecycle != Lifecycle::Succeeded
            || held + amount > self.state.amount_captured
        {
            self.refused_over_refunds += 1;
            return Err(());
        }
        let mut future = vec![if rng.chance(80) {
            RefundStatus::Succeeded
        } else {
            RefundStatus::Failed
        }];
        if future[0] == RefundStatus::Succeeded && rng.chance(10) {
            future.push(RefundStatus::Failed); // returned by the bank days later
        }
        future.reverse();
        self.refunds.push((amount, RefundStatus::Pending, future));
        let i = self.refunds.len() - 1;
        self.keys.push((ours, i));
        self.emit(
            Fact::Refund {
                provider: i,
                ours,
                status: RefundStatus::Pending,
            },
            net,
            rng,
        );
        Ok(i)
    }

    /// One step of the payment's or a refund's history; false if nothing is left.
    fn advance(&mut self, rng: &mut Rng, net: &mut Network) -> bool {
        let pending: Vec<usize> = (0..self.refunds.len())
            .filter(|i| !self.refunds[*i].2.is_empty())
            .collect();
        if !self.script.is_empty() && (pending.is_empty() || rng.chance(50)) {
            let f = self.script.remove(0);
            self.state = apply(&self.state, &f);
            self.emit(Fact::Payment(f), net, rng);
            return true;
        }
        let Some(&i) = pending.get(rng.below(pending.len().max(1) as u64) as usize) else {
            return false;
        };
        let next = self.refunds[i].2.pop().expect("a step");
        self.refunds[i].1 = self.refunds[i].1.apply(next);
        let ours = self
            .keys
            .iter()
            .find(|(_, p)| *p == i)
            .map(|(o, _)| *o)
            .expect("every refund is ours");
        self.emit(
            Fact::Refund {
                provider: i,
                ours,
                status: next,
            },
            net,
            rng,
        );
        true
    }
}

/// Delivers events late, out of order, and more than once.
#[derive(Default)]
struct Network {
    queue: Vec<Event>,
}

impl Network {
    fn send(&mut self, e: Event, rng: &mut Rng) {
        if rng.chance(25) {
            self.queue.push(e.clone());
        }
        self.queue.push(e);
    }

    fn take(&mut self, rng: &mut Rng) -> Option<Event> {
        if self.queue.is_empty() {
            return None;
        }
        let i = rng.below(self.queue.len() as u64) as usize;
        Some(self.queue.swap_remove(i))
    }
}

#[derive(Debug, Clone)]
struct RefundRow {
    amount: i64,
    status: RefundStatus,
    /// The provider's refund, once learned.
    provider: Option<usize>,
}

/// paybridge's durable rows for the payment and its order.
#[derive(Clone)]
struct Ledger {
    payment: PaymentState,
    /// Held by refunds that are pending or succeeded (the conditional reservation).
    refunding: i64,
    refunds: Vec<RefundRow>,
    order_total: i64,
    order_status: OrderStatus,
    /// Our events, in order: (object, type).
    events: Vec<(String, String)>,
    /// Provider events applied (by id), to tell a copy from a first delivery.
    applied: Vec<u64>,
    /// What the payment is for.
    amount: i64,
    /// Facts refused by the invariants.
    rejected: u64,
}

impl Ledger {
    fn payment_changed(&mut self, old: &PaymentState) {
        if old.status() != self.payment.status() {
            self.events.push((
                "payment".into(),
                format!("payment.{}", self.payment.status().as_str()),
            ));
        }
        let paid = if self.payment.lifecycle == Lifecycle::Succeeded {
            self.payment.amount_captured
        } else {
            0
        };
        let status = OrderStatus::derive(self.order_total, paid, self.payment.amount_refunded);
        if status != self.order_status {
            self.order_status = status;
            self.events
                .push(("order".into(), format!("order.{}", status.as_str())));
        }
    }

    fn books(&self) -> Books<'_> {
        Books {
            amount: self.amount,
            currency: "usd",
            state: &self.payment,
            refunding: self.refunding,
        }
    }

    /// A fact about the payment, checked where it enters (ledger/mod.rs). Returns
    /// whether it was admitted.
    fn apply_payment_checked(&mut self, f: &PaymentFact, reported: Option<(i64, &str)>) -> bool {
        if invariants::check_payment_fact(&self.books(), reported, f).is_err() {
            self.rejected += 1;
            return false;
        }
        self.apply_payment(f);
        true
    }

    /// A refund made outside paybridge, checked where it enters (ledger/refunds.rs):
    /// only forged ones are sent here, so it must be refused.
    fn foreign_refund(&mut self, amount: i64, currency: &str) -> bool {
        if invariants::check_refund(&self.books(), amount, Some(currency), amount).is_err() {
            self.rejected += 1;
            return false;
        }
        true
    }

    fn apply_payment(&mut self, f: &PaymentFact) {
        let old = self.payment.clone();
        self.payment = apply(&old, f);
        self.payment_changed(&old);
    }

    /// A refund's status as the provider reports it (ledger/refunds.rs).
    fn apply_refund(&mut self, ours: usize, provider: usize, reported: RefundStatus) {
        let old = self.refunds[ours].status;
        let new = old.apply(reported);
        self.refunds[ours].provider = Some(provider);
        if new == old {
            return;
        }
        self.refunds[ours].status = new;
        if old.holds_amount() && !new.holds_amount() {
            self.refunding -= self.refunds[ours].amount;
        }
        let kind = match new {
            RefundStatus::Pending => "refund.pending",
            RefundStatus::Succeeded => "refund.succeeded",
            RefundStatus::Failed | RefundStatus::Canceled => "refund.failed",
        };
        self.events.push((format!("refund{ours}"), kind.into()));
        if new == RefundStatus::Succeeded || old == RefundStatus::Succeeded {
            let total = self
                .refunds
                .iter()
                .filter(|r| r.status == RefundStatus::Succeeded)
                .map(|r| r.amount)
                .sum();
            let before = self.payment.clone();
            self.payment.amount_refunded = total;
            self.payment_changed(&before);
        }
    }

    /// The conditional reservation: admitted only if it fits in what was captured.
    fn admit(&mut self, amount: i64) -> Option<usize> {
        if self.payment.lifecycle != Lifecycle::Succeeded
            || amount <= 0
            || self.refunding + amount > self.payment.amount_captured
        {
            return None;
        }
        self.refunding += amount;
        self.refunds.push(RefundRow {
            amount,
            status: RefundStatus::Pending,
            provider: None,
        });
        Some(self.refunds.len() - 1)
    }

    fn check(&self, provider: &Provider) -> Result<(), String> {
        let held: i64 = self
            .refunds
            .iter()
            .filter(|r| r.status.holds_amount())
            .map(|r| r.amount)
            .sum();
        if held != self.refunding {
            return Err(format!(
                "reservation {} but refunds hold {held}",
                self.refunding
            ));
        }
        if self.refunding > self.payment.amount_captured.max(0) && !self.refunds.is_empty() {
            return Err(format!(
                "{} held against {} captured",
                self.refunding, self.payment.amount_captured
            ));
        }
        if self.payment.amount_refunded > self.payment.amount_captured {
            return Err(format!(
                "{} refunded of {} captured",
                self.payment.amount_refunded, self.payment.amount_captured
            ));
        }
        invariants::check_books(&self.books()).map_err(|a| a.to_string())?;
        if provider.refused_over_refunds > 0 {
            return Err("the provider had to refuse an over-refund".into());
        }
        for w in self.events.windows(2) {
            if w[0] == w[1] && !w[0].1.starts_with("order.") {
                return Err(format!("two events for one change: {:?}", w[0]));
            }
        }
        Ok(())
    }
}

/// What one run did, for the totals.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub steps: u64,
    pub crashes: u64,
    pub duplicates_applied: u64,
    pub refunds: u64,
    /// Facts that cannot be true, sent and rejected.
    pub rejected: u64,
}

/// One payment's life under `seed`. `Err` says what broke, and where.
pub fn run(seed: u64) -> Result<Stats, String> {
    let mut rng = Rng::new(seed);
    let amount = 100 + rng.below(100_000) as i64;
    let manual = rng.chance(30);
    let mut script = vec![PaymentFact::Pending];
    if rng.chance(40) {
        script.push(PaymentFact::Processing);
    }
    let captured = if manual {
        amount - rng.below(amount as u64 / 2) as i64
    } else {
        amount
    };
    let failed = Failure {
        at: 1,
        code: Some("card_declined".into()),
        decline_code: Some("generic_decline".into()),
        message: None,
    };
    match rng.below(10) {
        0 => script.push(PaymentFact::Failed(failed)),
        1 if manual => {
            script.push(PaymentFact::RequiresCapture {
                amount_capturable: amount,
            });
            script.push(PaymentFact::Canceled);
        }
        2 => script.push(PaymentFact::Expired),
        _ => {
            if manual {
                script.push(PaymentFact::RequiresCapture {
                    amount_capturable: amount,
                });
            }
            script.push(PaymentFact::Succeeded {
                amount_captured: captured,
            });
            if rng.chance(10) {
                script.push(PaymentFact::Dispute(Dispute::Open));
                script.push(PaymentFact::Dispute(if rng.chance(50) {
                    Dispute::Won
                } else {
                    Dispute::Lost
                }));
            }
        }
    }
    let mut provider = Provider {
        amount,
        script,
        state: PaymentState::new(),
        refunds: Vec::new(),
        keys: Vec::new(),
        next_event: 0,
        refused_over_refunds: 0,
    };
    let mut net = Network::default();
    let mut ours = Ledger {
        payment: PaymentState::new(),
        refunding: 0,
        refunds: Vec::new(),
        order_total: amount,
        order_status: OrderStatus::Open,
        events: Vec::new(),
        applied: Vec::new(),
        amount,
        rejected: 0,
    };
    let mut stats = Stats::default();
    let crash_rate = 5 + rng.below(20);
    let steps = 20 + rng.below(80);
    let fail = |step: u64, why: String| format!("seed {seed}, step {step}: {why}");

    for step in 0..steps {
        stats.steps += 1;
        match rng.below(10) {
            // The provider moves on.
            0..=2 => {
                provider.advance(&mut rng, &mut net);
            }
            // An event arrives; its transaction may crash before the commit.
            3..=6 => {
                let Some(e) = net.take(&mut rng) else {
                    continue;
                };
                if rng.chance(crash_rate) {
                    stats.crashes += 1;
                    net.queue.push(e); // not acknowledged: sent again
                    continue;
                }
                let before = ours.events.len();
                let copy = ours.applied.contains(&e.id);
                deliver(&mut ours, &e);
                if copy {
                    stats.duplicates_applied += 1;
                    if ours.events.len() != before {
                        return Err(fail(step, format!("a copy of event {} wrote events", e.id)));
                    }
                }
                ours.applied.push(e.id);
            }
            // Refunds requested: admitted, sent, answered; crashes anywhere between.
            7 | 8 => {
                let left = ours.payment.amount_captured;
                let want = 1 + rng.below(left.max(1) as u64) as i64;
                let mut tx = ours.clone();
                let Some(id) = tx.admit(want) else { continue };
                if rng.chance(crash_rate) {
                    stats.crashes += 1;
                    continue; // crashed before the admission committed: nothing happened
                }
                ours = tx;
                stats.refunds += 1;
                if rng.chance(crash_rate) {
                    stats.crashes += 1;
                    continue; // crashed before calling the provider: pending, for the reconciler
                }
                let answer = provider.create_refund(id, want, &mut rng, &mut net);
                if rng.chance(crash_rate) {
                    stats.crashes += 1;
                    continue; // the answer was lost
                }
                match answer {
                    Ok(i) => {
                        let status = provider.refunds[i].1;
                        ours.apply_refund(id, i, status);
                    }
                    Err(()) => ours.apply_refund(id, usize::MAX, RefundStatus::Failed),
                }
            }
            // A fact that cannot be true arrives (a bug at the provider, or a forged
            // event signed with a leaked secret): it must be refused, changing nothing.
            9 if rng.chance(30) => {
                let before = (ours.payment.clone(), ours.refunding, ours.events.len());
                let r = 1 + rng.below(1_000_000) as i64;
                let left = ours.payment.amount_captured - ours.refunding;
                let admitted = match rng.below(6) {
                    0 => ours.apply_payment_checked(
                        &PaymentFact::Succeeded {
                            amount_captured: amount + r,
                        },
                        None,
                    ),
                    1 => ours.apply_payment_checked(
                        &PaymentFact::RequiresCapture {
                            amount_capturable: -r,
                        },
                        None,
                    ),
                    2 => ours
                        .apply_payment_checked(&PaymentFact::Processing, Some((amount + r, "usd"))),
                    3 => ours.foreign_refund(-r + 1, "usd"),
                    4 => ours.foreign_refund(r, "jpy"),
                    _ => ours.foreign_refund(left + r, "usd"),
                };
                if admitted || before != (ours.payment.clone(), ours.refunding, ours.events.len()) {
                    return Err(fail(step, "a fact that cannot be true was booked".into()));
                }
                stats.rejected += 1;
            }
            // The reconciler asks the provider.
            _ => reconcile(&mut ours, &mut provider, &mut rng, &mut net),
        }
        ours.check(&provider).map_err(|e| fail(step, e))?;
    }

    // Drain: the provider finishes, the network delivers everything, the reconciler
    // settles the rest. No more crashes.
    while provider.advance(&mut rng, &mut net) {}
    reconcile(&mut ours, &mut provider, &mut rng, &mut net);
    while provider.advance(&mut rng, &mut net) {}
    while let Some(e) = net.take(&mut rng) {
        deliver(&mut ours, &e);
        ours.applied.push(e.id);
    }
    ours.check(&provider).map_err(|e| fail(steps, e))?;

    // The reference: the provider's own final truth.
    let want = &provider.state;
    let got = &ours.payment;
    if got.lifecycle != want.lifecycle
        || got.amount_captured != want.amount_captured
        || got.dispute != want.dispute
    {
        return Err(fail(steps, format!("payment {got:?}, provider {want:?}")));
    }
    let refunded: i64 = provider
        .refunds
        .iter()
        .filter(|r| r.1 == RefundStatus::Succeeded)
        .map(|r| r.0)
        .sum();
    if got.amount_refunded != refunded {
        return Err(fail(
            steps,
            format!(
                "refunded {} but the provider refunded {refunded}",
                got.amount_refunded
            ),
        ));
    }
    for (i, r) in ours.refunds.iter().enumerate() {
        let truth = match r.provider {
            Some(p) if p != usize::MAX => provider.refunds[p].1,
            _ => RefundStatus::Failed,
        };
        if r.status != truth {
            return Err(fail(
                steps,
                format!("refund {i} is {:?}, the provider says {truth:?}", r.status),
            ));
        }
    }
    let paid = if want.lifecycle == Lifecycle::Succeeded {
        want.amount_captured
    } else {
        0
    };
    let order = OrderStatus::derive(amount, paid, refunded);
    if ours.order_status != order {
        return Err(fail(
            steps,
            format!("order {:?}, expected {order:?}", ours.order_status),
        ));
    }
    // The last payment event tells its final status.
    let last = ours
        .events
        .iter()
        .rev()
        .find(|e| e.0 == "payment")
        .map(|e| e.1.clone());
    let status = got.status();
    if status != PaymentStatus::Initiated && last != Some(format!("payment.{}", status.as_str())) {
        return Err(fail(
            steps,
            format!("last payment event {last:?}, status {status:?}"),
        ));
    }
    let _ = provider.amount;
    Ok(stats)
}

fn deliver(ours: &mut Ledger, e: &Event) {
    match &e.fact {
        // The object's own amount comes with it, as a payment intent's does.
        Fact::Payment(f) => {
            let amount = ours.amount;
            ours.apply_payment_checked(f, Some((amount, "usd")));
        }
        // Found by its `pb_refund` metadata. Our row is written before the provider is
        // called, so even an event that beats the call's answer finds it.
        Fact::Refund {
            provider,
            ours: id,
            status,
        } => ours.apply_refund(*id, *provider, *status),
    }
}

/// Asks the provider about the payment and every unsettled refund, and applies the
/// answers (service/reconcile.rs, service/refunds.rs).
fn reconcile(ours: &mut Ledger, provider: &mut Provider, rng: &mut Rng, net: &mut Network) {
    let truth = provider.state.clone();
    for f in facts_of(&truth) {
        ours.apply_payment_checked(&f, None);
    }
    for id in 0..ours.refunds.len() {
        if ours.refunds[id].status != RefundStatus::Pending {
            continue;
        }
        let answer = match ours.refunds[id].provider {
            Some(p) if p != usize::MAX => Ok(p),
            _ => provider.create_refund(id, ours.refunds[id].amount, rng, net),
        };
        match answer {
            Ok(i) => {
                let status = provider.refunds[i].1;
                ours.apply_refund(id, i, status);
            }
            Err(()) => ours.apply_refund(id, usize::MAX, RefundStatus::Failed),
        }
    }
}

/// A retrieved object read as facts (what `record_intent` makes of an answer).
fn facts_of(s: &PaymentState) -> Vec<PaymentFact> {
    let mut v = Vec::new();
    match s.lifecycle {
        Lifecycle::Initiated => {}
        Lifecycle::Pending => v.push(PaymentFact::Pending),
        Lifecycle::RequiresAction => v.push(PaymentFact::RequiresAction),
        Lifecycle::Processing => v.push(PaymentFact::Processing),
        Lifecycle::Failed => v.extend(s.failure.clone().map(PaymentFact::Failed)),
        Lifecycle::RequiresCapture => v.push(PaymentFact::RequiresCapture {
            amount_capturable: s.amount_capturable,
        }),
        Lifecycle::Expired => v.push(PaymentFact::Expired),
        Lifecycle::Canceled => v.push(PaymentFact::Canceled),
        Lifecycle::Succeeded => v.push(PaymentFact::Succeeded {
            amount_captured: s.amount_captured,
        }),
    }
    if s.dispute != Dispute::None {
        v.push(PaymentFact::Dispute(s.dispute));
    }
    v
}

/// Runs seeds `from..from + count` on every core; stops at the first failure.
pub fn run_many(from: u64, count: u64) -> Result<Stats, String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let chunk = count.div_ceil(threads);
    let results: Vec<Result<Stats, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut total = Stats::default();
                    let start = from + t * chunk;
                    for seed in start..(start + chunk).min(from + count) {
                        let r = run(seed)?;
                        total.steps += r.steps;
                        total.crashes += r.crashes;
                        total.duplicates_applied += r.duplicates_applied;
                        total.refunds += r.refunds;
                        total.rejected += r.rejected;
                    }
                    Ok(total)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a simulation thread"))
            .collect()
    });
    let mut total = Stats::default();
    for r in results {
        let r = r?;
        total.steps += r.steps;
        total.crashes += r.crashes;
        total.duplicates_applied += r.duplicates_applied;
        total.refunds += r.refunds;
        total.rejected += r.rejected;
    }
    Ok(total)
}
