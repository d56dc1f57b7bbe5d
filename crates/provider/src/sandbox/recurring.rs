//! The sandbox's subscriptions: started by a checkout in subscription mode or directly
//! with a saved card, renewed by a test helper (each period an invoice, paid or
//! failed), cancelled now or at the period's end. Each step sends the events Stripe's
//! Billing sends: `customer.subscription.*`, `invoice.paid` / `invoice.payment_succeeded`
//! / `invoice.payment_failed`, and the invoice's own intent and charge events.

use serde_json::{json, Value};

use super::cards::{self, Decline};
use super::objects::{id, shape};
use super::{
    card_error, conflict, new_payment_method, no_such, parse, Change, IntentSpec, Sandbox, PRIVATE,
};
use crate::{Call, NewSubscription, ProviderError, Result};
use paybridge_core::stripe::objects::{CheckoutSession, Subscription};
use paybridge_store::now;

/// What one subscription charges each period.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub price: String,
    pub name: String,
    pub unit_amount: i64,
    pub currency: String,
    pub interval: String,
    pub interval_count: i64,
    pub quantity: i64,
}

impl Plan {
    fn amount(&self) -> i64 {
        self.unit_amount.saturating_mul(self.quantity)
    }

    /// The sandbox has no calendar: a month is 30 days, a year 365.
    fn period_secs(&self) -> i64 {
        let unit = match self.interval.as_str() {
            "day" => 86_400,
            "week" => 7 * 86_400,
            "year" => 365 * 86_400,
            _ => 30 * 86_400,
        };
        unit * self.interval_count.max(1)
    }

    fn to_json(&self) -> Value {
        json!({"price": self.price, "name": self.name, "unit_amount": self.unit_amount, "currency": self.currency,
               "interval": self.interval, "interval_count": self.interval_count, "quantity": self.quantity})
    }

    fn from_json(v: &Value) -> Plan {
        Plan {
            price: v["price"].as_str().unwrap_or_default().to_owned(),
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            unit_amount: v["unit_amount"].as_i64().unwrap_or(0),
            currency: v["currency"].as_str().unwrap_or("usd").to_owned(),
            interval: v["interval"].as_str().unwrap_or("month").to_owned(),
            interval_count: v["interval_count"].as_i64().unwrap_or(1),
            quantity: v["quantity"].as_i64().unwrap_or(1),
        }
    }
}

/// How an invoice is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Charging {
    /// The customer is there (a checkout's first invoice): no challenge is asked for.
    OnSession,
    /// Without the customer (renewals, subscriptions started by the API): a card whose
    /// bank asks for 3-D Secure off-session waits for them.
    OffSession,
    /// Declined whatever the card (the renewal helper's `succeed: false`).
    Declined,
}

impl Sandbox {
    /// Charges one invoice of a subscription with its card (or declines it, when
    /// `Charging::Declined`); writes the invoice and sends its events. True if paid. A
    /// card whose bank asks for 3-D Secure when charged without the customer leaves the
    /// invoice open and its intent waiting for them (`invoice.payment_action_required`).
    async fn invoice(
        &self,
        ch: &mut Change,
        sub: &Value,
        plan: &Plan,
        reason: &str,
        period: (i64, i64),
        charging: Charging,
    ) -> Result<bool> {
        let force_decline = charging == Charging::Declined;
        let off_session = charging == Charging::OffSession;
        let customer = sub["customer"].as_str().map(str::to_owned);
        let pm_id = sub[PRIVATE]["payment_method"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let pm = ch.load(&pm_id).await?;
        let in_id = id("in");
        let mut pi = self.new_intent(IntentSpec {
            amount: plan.amount(),
            currency: &plan.currency,
            customer: customer.as_deref(),
            manual: false,
            save_card: false,
            metadata: &json!({}),
            fee: None,
            destination: None,
        });
        pi["invoice"] = json!(in_id);
        let card = match (&pm, force_decline) {
            (_, true) => Err(Decline {
                code: "card_declined",
                decline_code: Some("generic_decline"),
                message: "Your card was declined.",
            }),
            (Some(pm), false) => cards::lookup(pm[PRIVATE]["number"].as_str().unwrap_or_default()),
            (None, false) => Err(Decline {
                code: "payment_method_missing",
                decline_code: None,
                message: "The customer has no payment method to charge.",
            }),
        };
        let action = match (&card, &pm) {
            (Ok(c), Some(pm)) if c.needs_authentication(off_session) => {
                self.require_action(ch, &mut pi, pm).await?;
                true
            }
            _ => false,
        };
        let paid = !action
            && self
                .attempt(ch, &mut pi, card, pm.as_ref())
                .await?
                .is_none();
        let invoice = shape(
            "invoice",
            json!({
                "id": in_id,
                "object": "invoice",
                "status": if paid { "paid" } else { "open" },
                "billing_reason": reason,
                "subscription": sub["id"],
                "customer": customer,
                "currency": plan.currency,
                "amount_due": plan.amount(),
                "amount_paid": if paid { plan.amount() } else { 0 },
                "amount_remaining": if paid { 0 } else { plan.amount() },
                "payment_intent": pi["id"],
                "charge": pi["latest_charge"],
                "paid": paid,
                "subscription_details": {"metadata": sub["metadata"]},
                "period_start": period.0,
                "period_end": period.1,
                "attempt_count": 1,
                "created": now(),
                "livemode": false,
                "metadata": {},
            }),
        );
        ch.save("invoice", &invoice).await?;
        if paid {
            ch.emit("invoice.paid", &invoice).await?;
            ch.emit("invoice.payment_succeeded", &invoice).await?;
        } else if action {
            ch.emit("invoice.payment_action_required", &invoice).await?;
        } else {
            ch.emit("invoice.payment_failed", &invoice).await?;
        }
        Ok(paid)
    }

    /// A new subscription for `customer`, its first invoice charged at once.
    pub(super) async fn start_subscription(
        &self,
        ch: &mut Change,
        customer: &str,
        plan: &Plan,
        payment_method: &str,
        metadata: &Value,
        charging: Charging,
    ) -> Result<Value> {
        let start = now();
        let end = start + plan.period_secs();
        let sub_id = id("sub");
        let mut sub = shape(
            "subscription",
            json!({
                "id": sub_id,
                "object": "subscription",
                "status": "incomplete",
                "customer": customer,
                "current_period_start": start,
                "current_period_end": end,
                "cancel_at_period_end": false,
                "canceled_at": null,
                "collection_method": "charge_automatically",
                "default_payment_method": payment_method,
                "items": {"object": "list", "has_more": false, "data": [{
                    "id": id("si"), "object": "subscription_item", "quantity": plan.quantity,
                    "current_period_start": start, "current_period_end": end,
                    "price": {"id": plan.price, "object": "price", "currency": plan.currency, "unit_amount": plan.unit_amount,
                              "recurring": {"interval": plan.interval, "interval_count": plan.interval_count}, "product": id("prod")},
                }]},
                "metadata": metadata,
                "created": start,
                "livemode": false,
                PRIVATE: {"plan": plan.to_json(), "payment_method": payment_method},
            }),
        );
        // As Stripe: the subscription is created (incomplete), its first invoice is
        // charged, and the subscription becomes active.
        ch.save("subscription", &sub).await?;
        ch.emit("customer.subscription.created", &sub).await?;
        let paid = self
            .invoice(
                ch,
                &sub,
                plan,
                "subscription_create",
                (start, end),
                charging,
            )
            .await?;
        if paid {
            sub["status"] = json!("active");
            ch.save("subscription", &sub).await?;
            ch.emit("customer.subscription.updated", &sub).await?;
        }
        Ok(sub)
    }

    /// Completes a checkout in subscription mode: a customer (made if the session had
    /// none), the card, the subscription and its first invoice.
    pub(super) async fn complete_subscription_checkout(
        &self,
        mut ch: Change,
        mut cs: Value,
        card_number: &str,
    ) -> Result<CheckoutSession> {
        let card = cards::lookup(card_number).map_err(|d| card_error(d, None))?;
        if let Some(d) = card.on_charge {
            return Err(card_error(d, None));
        }
        let customer = match cs["customer"].as_str() {
            Some(c) => c.to_owned(),
            None => {
                let c = self.new_customer(&mut ch, None, None, &json!({})).await?;
                c["id"].as_str().unwrap_or_default().to_owned()
            }
        };
        let pm = new_payment_method(&card, Some(&customer));
        ch.save("payment_method", &pm).await?;
        ch.emit("payment_method.attached", &pm).await?;
        let line = &cs[PRIVATE]["line_items"][0];
        let plan = Plan {
            price: line["price"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| id("price")),
            name: line["name"].as_str().unwrap_or_default().to_owned(),
            unit_amount: line["unit_amount"].as_i64().unwrap_or(0),
            currency: cs["currency"].as_str().unwrap_or("usd").to_owned(),
            interval: line["interval"].as_str().unwrap_or("month").to_owned(),
            interval_count: line["interval_count"].as_i64().unwrap_or(1),
            quantity: line["quantity"].as_i64().unwrap_or(1),
        };
        let metadata = cs["metadata"].clone();
        let sub = self
            .start_subscription(
                &mut ch,
                &customer,
                &plan,
                pm["id"].as_str().unwrap_or_default(),
                &metadata,
                // On Stripe's page the customer is there to authenticate.
                Charging::OnSession,
            )
            .await?;
        cs["customer"] = json!(customer);
        cs["subscription"] = sub["id"].clone();
        cs["status"] = json!("complete");
        cs["payment_status"] = json!(if sub["status"] == "active" {
            "paid"
        } else {
            "unpaid"
        });
        ch.save("checkout.session", &cs).await?;
        ch.emit("checkout.session.completed", &cs).await?;
        ch.commit(&cs, &self.wake).await?;
        parse(&cs)
    }

    pub(super) async fn subscribe(&self, call: &Call, s: &NewSubscription) -> Result<Subscription> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed().await? {
            return parse(&r);
        }
        let customer = ch
            .load(&s.customer)
            .await?
            .ok_or_else(|| no_such("customer", &s.customer))?;
        let pm = customer["invoice_settings"]["default_payment_method"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::Invalid {
                code: Some("resource_missing".into()),
                param: Some("default_payment_method".into()),
                message: "This customer has no attached payment source or default payment method."
                    .into(),
            })?;
        let plan = Plan {
            price: s.price.clone().unwrap_or_else(|| id("price")),
            name: s.name.clone(),
            unit_amount: s.unit_amount,
            currency: s.currency.clone(),
            interval: s.interval.clone(),
            interval_count: s.interval_count,
            quantity: s.quantity,
        };
        let sub = self
            .start_subscription(
                &mut ch,
                &s.customer,
                &plan,
                &pm,
                &json!(s.metadata),
                Charging::OffSession,
            )
            .await?;
        ch.commit(&sub, &self.wake).await?;
        parse(&sub)
    }

    pub(super) async fn cancel_sub(
        &self,
        call: &Call,
        id: &str,
        at_period_end: bool,
    ) -> Result<Subscription> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed().await? {
            return parse(&r);
        }
        let mut sub = ch
            .load(id)
            .await?
            .ok_or_else(|| no_such("subscription", id))?;
        if sub["status"] == "canceled" {
            return Err(conflict(
                "subscription_canceled",
                "This subscription is already canceled.",
            ));
        }
        if at_period_end {
            sub["cancel_at_period_end"] = json!(true);
            ch.save("subscription", &sub).await?;
            ch.emit("customer.subscription.updated", &sub).await?;
        } else {
            sub["status"] = json!("canceled");
            sub["canceled_at"] = json!(now());
            sub["ended_at"] = json!(now());
            ch.save("subscription", &sub).await?;
            ch.emit("customer.subscription.deleted", &sub).await?;
        }
        ch.commit(&sub, &self.wake).await?;
        parse(&sub)
    }

    /// Moves a subscription to its next period and charges it (the test helper for
    /// Stripe's renewal). A subscription set to cancel at the period's end ends instead.
    pub async fn renew_subscription(
        &self,
        app: &str,
        id: &str,
        succeed: bool,
    ) -> Result<Subscription> {
        let mut ch = Change::begin(self, app, None).await?;
        let mut sub = ch
            .load(id)
            .await?
            .ok_or_else(|| no_such("subscription", id))?;
        if sub["status"] == "canceled" {
            return Err(conflict(
                "subscription_canceled",
                "This subscription is canceled.",
            ));
        }
        let plan = Plan::from_json(&sub[PRIVATE]["plan"]);
        let start = sub["current_period_end"].as_i64().unwrap_or_else(now);
        let end = start + plan.period_secs();
        if sub["cancel_at_period_end"] == true {
            sub["status"] = json!("canceled");
            sub["canceled_at"] = json!(now());
            sub["ended_at"] = json!(start);
            ch.save("subscription", &sub).await?;
            ch.emit("customer.subscription.deleted", &sub).await?;
            ch.commit(&sub, &self.wake).await?;
            return parse(&sub);
        }
        sub["current_period_start"] = json!(start);
        sub["current_period_end"] = json!(end);
        if let Some(item) = sub["items"]["data"].get_mut(0) {
            item["current_period_start"] = json!(start);
            item["current_period_end"] = json!(end);
        }
        let paid = self
            .invoice(
                &mut ch,
                &sub,
                &plan,
                "subscription_cycle",
                (start, end),
                if succeed {
                    Charging::OffSession
                } else {
                    Charging::Declined
                },
            )
            .await?;
        sub["status"] = json!(if paid { "active" } else { "past_due" });
        ch.save("subscription", &sub).await?;
        ch.emit("customer.subscription.updated", &sub).await?;
        ch.commit(&sub, &self.wake).await?;
        parse(&sub)
    }
}
