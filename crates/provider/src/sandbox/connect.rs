//! The sandbox's Stripe Connect: express accounts, their persons, transfers, payout
//! transactions, and the account's webhook endpoint.

use serde_json::{json, Value};

use super::objects::{id, shape};
use super::{no_such, parse, Change, Sandbox};
use crate::{Call, NewAccount, NewTransfer, Result};
use paybridge_core::stripe::objects::{Account, Transfer};
use paybridge_store::now;

impl Sandbox {
    pub(super) async fn new_account(&self, call: &Call, a: &NewAccount) -> Result<Account> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(done) = ch.replayed().await? {
            return parse(&done);
        }
        let acct = shape(
            "account",
            json!({
                "id": id("acct"), "object": "account", "type": "express", "email": a.email,
                "country": a.country.clone().unwrap_or_else(|| "US".into()), "default_currency": "usd",
                "charges_enabled": false, "payouts_enabled": false, "details_submitted": false,
                "metadata": a.metadata, "created": now(),
            }),
        );
        ch.save("account", &acct).await?;
        ch.emit("account.updated", &acct).await?;
        ch.commit(&acct, &self.wake).await?;
        parse(&acct)
    }

    async fn account_json(&self, app: &str, id: &str) -> Result<Value> {
        let v = self.stored(app, id, "account").await?;
        if v["deleted"] == true {
            return Err(no_such("account", id));
        }
        Ok(v)
    }

    pub(super) async fn get_account(&self, call: &Call, id: &str) -> Result<Account> {
        parse(&self.account_json(&call.app_id, id).await?)
    }

    pub(super) async fn remove_account(&self, call: &Call, id: &str) -> Result<()> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if ch.replayed().await?.is_some() {
            return Ok(());
        }
        let mut acct = ch.load(id).await?.ok_or_else(|| no_such("account", id))?;
        acct["deleted"] = json!(true);
        ch.save("account", &acct).await?;
        let answer = json!({"id": id, "object": "account", "deleted": true});
        ch.commit(&answer, &self.wake).await?;
        Ok(())
    }

    pub(super) async fn persons(&self, call: &Call, account: &str) -> Result<Vec<Value>> {
        self.account_json(&call.app_id, account).await?;
        Ok(vec![shape(
            "person",
            json!({"id": id("person"), "object": "person", "account": account, "first_name": "Jenny", "last_name": "Rosen",
                   "relationship": {"representative": true, "owner": true, "title": "CEO"}, "created": now()}),
        )])
    }

    pub(super) async fn transfer(&self, call: &Call, t: &NewTransfer) -> Result<Transfer> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(done) = ch.replayed().await? {
            return parse(&done);
        }
        self.account_json(&call.app_id, &t.destination).await?;
        let tr = shape(
            "transfer",
            json!({"id": id("tr"), "object": "transfer", "amount": t.amount, "currency": t.currency,
                   "destination": t.destination, "metadata": t.metadata, "reversed": false, "created": now(), "livemode": false}),
        );
        ch.save("transfer", &tr).await?;
        ch.emit("transfer.created", &tr).await?;
        ch.commit(&tr, &self.wake).await?;
        parse(&tr)
    }

    pub(super) async fn payout_transactions(
        &self,
        call: &Call,
        payout: &str,
    ) -> Result<Vec<Value>> {
        if let Some(acct) = &call.account {
            self.account_json(&call.app_id, acct).await?;
        }
        // The sandbox pays no money out: a payout settles one charge and itself.
        let t = now();
        Ok(vec![
            shape(
                "balance_transaction",
                json!({"id": id("txn"), "object": "balance_transaction", "type": "charge", "amount": 1000,
                "fee": 59, "net": 941, "currency": "usd", "source": id("ch"), "created": t}),
            ),
            shape(
                "balance_transaction",
                json!({"id": id("txn"), "object": "balance_transaction", "type": "payout", "amount": -941,
                "fee": 0, "net": -941, "currency": "usd", "source": payout, "created": t}),
            ),
        ])
    }

    pub(super) fn webhook_endpoints(&self, call: &Call) -> Vec<Value> {
        vec![shape(
            "webhook_endpoint",
            json!({"id": format!("we_sandbox_{}", call.app_id), "object": "webhook_endpoint", "status": "enabled",
                   "url": format!("{}/v1/webhooks/stripe/{}", self.public_url, call.app_id), "enabled_events": ["*"],
                   "api_version": crate::stripe::STRIPE_VERSION, "livemode": false}),
        )]
    }
}
