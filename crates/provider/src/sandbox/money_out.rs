//! The sandbox's refunds and disputes. Refunds are checked against what the charge
//! has left, as Stripe checks them (paybridge's own limit holds before this one).

use serde_json::{json, Value};

use super::objects::{id, shape};
use super::{conflict, no_such, parse, Change, Sandbox};
use crate::{Call, NewRefund, ProviderError, Result};
use paybridge_core::stripe::objects::Refund;
use paybridge_store::now;

impl Sandbox {
    pub(super) async fn refund(&self, call: &Call, r: &NewRefund) -> Result<Refund> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(done) = ch.replayed().await? {
            return parse(&done);
        }
        let pi = ch
            .load(&r.payment_intent)
            .await?
            .ok_or_else(|| no_such("payment_intent", &r.payment_intent))?;
        let charge_id = pi["latest_charge"].as_str().unwrap_or_default().to_owned();
        let mut charge = match ch.load(&charge_id).await? {
            Some(c) if pi["status"] == "succeeded" => c,
            _ => {
                return Err(ProviderError::Invalid {
                    code: Some("charge_not_captured".into()),
                    param: Some("payment_intent".into()),
                    message: "This PaymentIntent has no captured charge to refund.".into(),
                })
            }
        };
        let left = charge["amount_captured"].as_i64().unwrap_or(0)
            - charge["amount_refunded"].as_i64().unwrap_or(0);
        if r.amount <= 0 || r.amount > left {
            return Err(ProviderError::Invalid {
                code: Some("amount_too_large".into()),
                param: Some("amount".into()),
                message: format!(
                    "Refund amount ({}) is greater than the charge's unrefunded amount ({left}).",
                    r.amount
                ),
            });
        }
        let refund = shape(
            "refund",
            json!({
                "id": id("re"),
                "object": "refund",
                "amount": r.amount,
                "currency": pi["currency"],
                "status": "succeeded",
                "reason": r.reason,
                "payment_intent": pi["id"],
                "charge": charge_id,
                "metadata": r.metadata,
                "created": now(),
            }),
        );
        ch.save("refund", &refund).await?;
        let refunded = charge["amount_refunded"].as_i64().unwrap_or(0) + r.amount;
        charge["amount_refunded"] = json!(refunded);
        charge["refunded"] = json!(refunded >= charge["amount_captured"].as_i64().unwrap_or(0));
        ch.save("charge", &charge).await?;
        ch.emit("charge.refunded", &charge).await?;
        ch.emit("refund.created", &refund).await?;
        ch.commit(&refund, &self.wake).await?;
        parse(&refund)
    }

    pub(super) async fn get_refund(&self, call: &Call, id: &str) -> Result<Refund> {
        parse(&self.stored(&call.app_id, id, "refund").await?)
    }

    /// Opens a dispute on a payment intent's charge, or (with `close`, `won` or `lost`)
    /// closes the open one: the test helper for a customer's chargeback.
    pub async fn dispute(&self, app: &str, intent: &str, close: Option<&str>) -> Result<Value> {
        let mut ch = Change::begin(self, app, None).await?;
        let pi = ch
            .load(intent)
            .await?
            .ok_or_else(|| no_such("payment_intent", intent))?;
        let charge_id = pi["latest_charge"].as_str().unwrap_or_default().to_owned();
        let mut charge = match ch.load(&charge_id).await? {
            Some(c) if c["paid"] == true => c,
            _ => {
                return Err(conflict(
                    "charge_not_disputable",
                    "Only a paid charge can be disputed.",
                ))
            }
        };
        let open = charge[super::PRIVATE]["dispute"]
            .as_str()
            .map(str::to_owned);
        let dispute = match (open, close) {
            (None, None) => {
                let d = shape(
                    "dispute",
                    json!({
                        "id": id("dp"), "object": "dispute", "amount": charge["amount"], "currency": charge["currency"],
                        "status": "needs_response", "reason": "fraudulent", "charge": charge_id,
                        "payment_intent": pi["id"], "created": now(), "livemode": false,
                    }),
                );
                charge["disputed"] = json!(true);
                charge[super::PRIVATE]["dispute"] = d["id"].clone();
                ch.save("charge", &charge).await?;
                ch.save("dispute", &d).await?;
                ch.emit("charge.dispute.created", &d).await?;
                d
            }
            (Some(dp), Some(outcome @ ("won" | "lost"))) => {
                let mut d = ch.load(&dp).await?.ok_or_else(|| no_such("dispute", &dp))?;
                if d["status"] == "won" || d["status"] == "lost" {
                    return Err(conflict(
                        "dispute_closed",
                        "This dispute is already closed.",
                    ));
                }
                d["status"] = json!(outcome);
                ch.save("dispute", &d).await?;
                ch.emit("charge.dispute.closed", &d).await?;
                d
            }
            (Some(_), None) => {
                return Err(conflict(
                    "charge_disputed",
                    "This charge already has an open dispute.",
                ))
            }
            (None, Some(_)) => {
                return Err(conflict(
                    "no_dispute",
                    "This charge has no dispute to close.",
                ))
            }
            (Some(_), Some(other)) => {
                return Err(ProviderError::Invalid {
                    code: Some("parameter_invalid".into()),
                    param: Some("close".into()),
                    message: format!("a dispute closes `won` or `lost`, not `{other}`"),
                })
            }
        };
        ch.commit(&dispute, &self.wake).await?;
        Ok(super::public(&dispute))
    }
}
