//! 3-D Secure in the sandbox. A test card whose bank asks for authentication
//! (`cards::Authentication`) leaves its intent `requires_action`, as Stripe does, with
//! `payment_intent.requires_action` (and for an invoice, `invoice.payment_action_required`).
//! The customer then completes or fails the challenge on paybridge's authentication page,
//! which calls `authenticate`: completed, the charge is made and the intent succeeds
//! (and its invoice is paid, its subscription active again); failed, the intent goes back
//! to `requires_payment_method` with Stripe's `payment_intent_authentication_failure`
//! (and its invoice's payment failed). Each step sends Stripe's events, so paybridge
//! learns the outcome through its webhook like any other.

use paybridge_core::stripe::objects::PaymentIntent;
use serde_json::{json, Value};

use super::cards;
use super::{no_such, parse, Change, Sandbox, PRIVATE};
use crate::Result;

impl Sandbox {
    /// Leaves `pi` waiting for the customer to authenticate a charge with
    /// `payment_method`, and sends `payment_intent.requires_action`.
    pub(super) async fn require_action(
        &self,
        ch: &mut Change,
        pi: &mut Value,
        payment_method: &Value,
    ) -> Result<()> {
        pi["status"] = json!("requires_action");
        pi["payment_method"] = payment_method["id"].clone();
        pi["last_payment_error"] = Value::Null;
        pi["next_action"] = json!({"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}});
        ch.save("payment_intent", pi).await?;
        ch.emit("payment_intent.requires_action", pi).await?;
        Ok(())
    }

    /// What the authentication page shows of an intent: its amount, currency and
    /// status, and the card's brand and last 4 (nothing about the customer).
    pub async fn authentication_page(&self, app: &str, intent: &str) -> Result<Value> {
        let pi = self.stored(app, intent, "object").await?;
        if pi["object"] != "payment_intent" {
            return Err(no_such("payment_intent", intent));
        }
        let card = match pi["payment_method"].as_str() {
            Some(pm) => self
                .stored(app, pm, "object")
                .await
                .ok()
                .map(|pm| pm["card"].clone()),
            None => None,
        };
        Ok(json!({
            "amount": pi["amount"],
            "currency": pi["currency"],
            "status": pi["status"],
            "brand": card.as_ref().map(|c| c["brand"].clone()),
            "last4": card.as_ref().map(|c| c["last4"].clone()),
        }))
    }

    /// The customer completed (`complete`) or failed the challenge of an intent that
    /// awaits it. On an intent that no longer awaits authentication it does nothing and
    /// answers the intent as it is: a second completion is harmless.
    pub async fn authenticate(
        &self,
        app: &str,
        intent: &str,
        complete: bool,
    ) -> Result<PaymentIntent> {
        let mut ch = Change::begin(self, app, None).await?;
        let mut pi = ch
            .load(intent)
            .await?
            .ok_or_else(|| no_such("payment_intent", intent))?;
        if pi["status"] != "requires_action" {
            drop(ch);
            return parse(&pi);
        }
        pi["next_action"] = Value::Null;
        let pm = match pi["payment_method"].as_str().map(str::to_owned) {
            Some(id) => ch.load(&id).await?,
            None => None,
        };
        let paid = if complete {
            let card = match &pm {
                Some(pm) => cards::lookup(pm[PRIVATE]["number"].as_str().unwrap_or_default()),
                None => Err(cards::Decline {
                    code: "payment_method_missing",
                    decline_code: None,
                    message: "The intent has no payment method to charge.",
                }),
            };
            self.attempt(&mut ch, &mut pi, card, pm.as_ref())
                .await?
                .is_none()
        } else {
            pi["status"] = json!("requires_payment_method");
            pi["last_payment_error"] = json!({
                "type": "invalid_request_error",
                "code": "payment_intent_authentication_failure",
                "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
                "payment_method": pm.as_ref().map(super::public),
            });
            ch.save("payment_intent", &pi).await?;
            ch.emit("payment_intent.payment_failed", &pi).await?;
            false
        };
        if let Some(invoice) = pi["invoice"].as_str().map(str::to_owned) {
            self.settle_invoice(&mut ch, &invoice, &pi, paid).await?;
        }
        ch.commit(&pi, &self.wake).await?;
        parse(&pi)
    }

    /// An invoice whose payment was authenticated (paid; its subscription active again)
    /// or not (its payment failed; it stays open).
    async fn settle_invoice(
        &self,
        ch: &mut Change,
        invoice: &str,
        pi: &Value,
        paid: bool,
    ) -> Result<()> {
        let Some(mut inv) = ch.load(invoice).await? else {
            return Ok(());
        };
        inv["attempt_count"] = json!(inv["attempt_count"].as_i64().unwrap_or(1) + 1);
        if !paid {
            ch.save("invoice", &inv).await?;
            ch.emit("invoice.payment_failed", &inv).await?;
            return Ok(());
        }
        let amount = inv["amount_due"].as_i64().unwrap_or(0);
        inv["status"] = json!("paid");
        inv["paid"] = json!(true);
        inv["amount_paid"] = json!(amount);
        inv["amount_remaining"] = json!(0);
        inv["charge"] = pi["latest_charge"].clone();
        ch.save("invoice", &inv).await?;
        ch.emit("invoice.paid", &inv).await?;
        ch.emit("invoice.payment_succeeded", &inv).await?;
        if let Some(sub_id) = inv["subscription"].as_str().map(str::to_owned) {
            if let Some(mut sub) = ch.load(&sub_id).await? {
                if sub["status"] != "canceled" && sub["status"] != "active" {
                    sub["status"] = json!("active");
                    ch.save("subscription", &sub).await?;
                    ch.emit("customer.subscription.updated", &sub).await?;
                }
            }
        }
        Ok(())
    }
}
