//! Refunds in the ledger: a refund's status as the provider reports it, the amount it
//! holds on its payment, and the payment's refunded total.

use paybridge_core::ids::RefundId;
use paybridge_core::payment::RefundStatus;
use paybridge_core::stripe::event::{Refs, RefundReading};
use paybridge_store::refunds::{self, RefundRow};
use paybridge_store::{now, payments, Conn, StoreError};

use paybridge_core::invariants::{self, Anomaly, Books};
use paybridge_store::payments::PaymentRow;

use super::{books, event_row, state_of, Outcome, UnitOfWork};
use crate::service::views::RefundView;

impl UnitOfWork {
    /// Applies a refund as the provider reports it (an event, or the answer to our own
    /// call). A refund paybridge did not make is recorded as the provider's truth.
    pub async fn apply_refund(
        &mut self,
        conn: &mut Conn,
        app: &str,
        refs: &Refs,
        rf: &RefundReading,
    ) -> Result<Outcome, StoreError> {
        let row =
            refunds::lock_by_refs(conn, app, rf.ours.as_deref(), Some(&rf.provider_refund)).await?;
        let pid = match &row {
            Some(r) => Some(r.payment_id.clone()),
            None => self.find_payment(app, refs),
        };
        let Some(pid) = pid else {
            return Ok(Outcome::Pending(
                "no payment of this app matches the refund yet".into(),
            ));
        };
        if self.payment(&pid).is_none() {
            let p = payments::lock(conn, app, &pid).await?;
            self.add_payment(p);
        }
        let payment = self.payment(&pid).cloned().ok_or(StoreError::NotFound)?;
        let state = state_of(&payment);
        let b = books(&payment, &state);
        let Some(mut r) = row else {
            // A refund made outside paybridge is the provider's truth only if it can be
            // true of this payment.
            let adds = if rf.status.holds_amount() {
                rf.amount
            } else {
                0
            };
            if let Err(a) = invariants::check_refund(&b, rf.amount, rf.currency.as_deref(), adds) {
                return Ok(self.reject(&payment, &a, rf));
            }
            let ts = now();
            let r = RefundRow {
                id: RefundId::generate().into_string(),
                app_id: app.to_owned(),
                payment_id: pid.clone(),
                order_id: payment.order_id.clone(),
                amount: rf.amount,
                currency: rf.currency.clone().unwrap_or(payment.currency.clone()),
                reason: rf.reason.clone(),
                status: rf.status.as_str().to_owned(),
                failure_reason: rf.failure_reason.clone(),
                provider_refund_id: Some(rf.provider_refund.clone()),
                refund_application_fee: 0,
                reverse_transfer: 0,
                source: "provider".into(),
                metadata: "{}".into(),
                created: ts,
                updated: ts,
            };
            refunds::insert(&mut *conn, &r).await?;
            if rf.status.holds_amount() {
                payments::add_refunding(conn, app, &pid, r.amount).await?;
                self.hold_refunding(&pid, r.amount);
            }
            return self.after_refund(conn, &r, None).await;
        };
        let old = RefundStatus::parse(&r.status).unwrap_or(RefundStatus::Pending);
        if rf.amount != r.amount {
            // The provider gave back another amount than we asked for: its amount is
            // booked (money moved as it says) if it can be true of the payment, and a
            // person is told either way. A refund left pending on a mismatch would hold
            // its amount for ever.
            let held = if old.holds_amount() { r.amount } else { 0 };
            let adds = if rf.status.holds_amount() {
                rf.amount
            } else {
                0
            };
            let relieved = Books {
                refunding: b.refunding - held,
                ..b
            };
            if let Err(a) =
                invariants::check_refund(&relieved, rf.amount, rf.currency.as_deref(), adds)
            {
                return Ok(self.reject(&payment, &a, rf));
            }
            let a = Anomaly {
                code: "refund_amount_differs",
                reason: format!(
                    "refund {} was asked for {} {}; the provider reports {}: its amount is booked",
                    r.id, r.amount, r.currency, rf.amount
                ),
            };
            self.refuse(&payment, &a, "provider", &format!("{rf:?}"));
            if held > 0 {
                payments::release_refund(conn, app, &pid, held).await?;
                self.hold_refunding(&pid, -held);
            }
            if old.holds_amount() {
                payments::add_refunding(conn, app, &pid, rf.amount).await?;
                self.hold_refunding(&pid, rf.amount);
            }
            r.amount = rf.amount;
            refunds::save(conn, &r).await?;
        } else if r.currency
            != rf
                .currency
                .clone()
                .unwrap_or(r.currency.clone())
                .to_ascii_lowercase()
        {
            let a = Anomaly {
                code: "currency_mismatch",
                reason: format!(
                    "refund {} is in {}; the provider reports {:?}",
                    r.id, r.currency, rf.currency
                ),
            };
            return Ok(self.reject(&payment, &a, rf));
        }
        let new = old.apply(rf.status);
        let learned_id = r.provider_refund_id.is_none();
        if new == old && !learned_id {
            return Ok(Outcome::Processed(format!(
                "refund {} is {}",
                r.id, r.status
            )));
        }
        r.provider_refund_id = Some(rf.provider_refund.clone());
        r.status = new.as_str().to_owned();
        if rf.failure_reason.is_some() {
            r.failure_reason = rf.failure_reason.clone();
        }
        refunds::save(conn, &r).await?;
        if old.holds_amount() && !new.holds_amount() {
            payments::release_refund(conn, app, &pid, r.amount).await?;
            self.hold_refunding(&pid, -r.amount);
        }
        if new == old {
            return Ok(Outcome::Processed(format!(
                "refund {} is {}",
                r.id, r.status
            )));
        }
        self.after_refund(conn, &r, Some(old)).await
    }

    /// Refuses a refund fact that breaks the invariants: not booked, told to the app.
    fn reject(&mut self, p: &PaymentRow, a: &Anomaly, rf: &RefundReading) -> Outcome {
        self.refuse(p, a, "provider", &format!("{rf:?}"));
        Outcome::Rejected(a.to_string())
    }

    /// Keeps the loaded payment's `amount_refunding` as the database has it (the
    /// invariants of later facts in the same unit of work are checked against it).
    fn hold_refunding(&mut self, pid: &str, delta: i64) {
        if let Some(p) = self.payments.get_mut(pid) {
            p.amount_refunding = (p.amount_refunding + delta).max(0);
        }
        if let Some(p) = self.payments_before.get_mut(pid) {
            p.amount_refunding = (p.amount_refunding + delta).max(0);
        }
    }

    /// Emits `refund.succeeded` / `refund.failed` and re-totals the payment's refunds.
    async fn after_refund(
        &mut self,
        conn: &mut Conn,
        r: &RefundRow,
        old: Option<RefundStatus>,
    ) -> Result<Outcome, StoreError> {
        let new = RefundStatus::parse(&r.status).unwrap_or(RefundStatus::Pending);
        let kind = paybridge_core::event_types::of_refund(new);
        let customer = self
            .payment(&r.payment_id)
            .and_then(|p| p.customer_id.clone());
        self.events.push(event_row(
            &r.app_id,
            kind,
            &r.id,
            (Some(&r.order_id), Some(&r.payment_id), customer.as_deref()),
            &RefundView::of(r),
        ));
        if new == RefundStatus::Succeeded || old == Some(RefundStatus::Succeeded) {
            let total = refunds::succeeded_total(conn, &r.app_id, &r.payment_id).await?;
            self.set_refunded(&r.payment_id, total);
        }
        Ok(Outcome::Processed(format!(
            "refund {} is {}",
            r.id, r.status
        )))
    }
}
