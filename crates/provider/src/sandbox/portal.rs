//! The sandbox's customer portal: Stripe's `billing_portal.session`, and the page it
//! points to, where the customer sees their subscriptions, cards and payments, cancels a
//! subscription and changes the default card. Each change is the sandbox's own
//! (`cancel_sub`, `set_default_payment_method`), so it emits the events Stripe would
//! and they reach paybridge through the webhook endpoint like any other.

use paybridge_core::stripe::objects::PortalSession;
use paybridge_store::{now, sandbox as store};
use serde_json::{json, Value};

use super::objects::id;
use super::{parse, Change, Sandbox};
use crate::{Call, ProviderError, Result};

/// A portal session is good for this long, as Stripe's (5 minutes to open; we keep the
/// page usable for an hour once made).
pub const PORTAL_TTL_SECS: i64 = 3600;

impl Sandbox {
    pub fn portal_url(&self, app: &str, session: &str) -> String {
        format!("{}/sandbox/portal/{app}/{session}", self.public_url)
    }

    pub(super) async fn create_portal(
        &self,
        call: &Call,
        customer: &str,
        return_url: &str,
    ) -> Result<PortalSession> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed().await? {
            return parse(&r);
        }
        ch.load(customer)
            .await?
            .ok_or_else(|| super::no_such("customer", customer))?;
        let sid = id("bps");
        let s = json!({
            "id": sid, "object": "billing_portal.session", "customer": customer,
            "return_url": return_url, "url": self.portal_url(&call.app_id, &sid),
            "created": now(), "livemode": false, "configuration": null, "flow": null,
            "locale": null, "on_behalf_of": null,
        });
        ch.save("billing_portal.session", &s).await?;
        ch.commit(&s, &self.wake).await?;
        parse(&s)
    }

    /// What the portal page shows: the session, its customer's subscriptions, cards and
    /// payments. An unknown or expired session is `NotFound`.
    pub async fn portal_page(&self, app: &str, session: &str) -> Result<Value> {
        let s = self.stored(app, session, "object").await?;
        if s["object"] != "billing_portal.session"
            || s["created"].as_i64().unwrap_or(0) + PORTAL_TTL_SECS < now()
        {
            return Err(super::no_such("billing_portal.session", session));
        }
        let customer = s["customer"].as_str().unwrap_or_default().to_owned();
        let cus = self.stored(app, &customer, "object").await?;
        let of_customer = |kind: &'static str| {
            let customer = customer.clone();
            async move {
                Ok::<Vec<Value>, ProviderError>(
                    store::list_kind(&self.db, app, kind)
                        .await?
                        .iter()
                        .filter_map(|raw| super::objects::from_rest(raw).ok())
                        .filter(|v| v["customer"] == customer.as_str())
                        .collect(),
                )
            }
        };
        Ok(json!({
            "session": s,
            "customer": cus,
            "subscriptions": of_customer("subscription").await?,
            "payment_methods": of_customer("payment_method").await?,
            "payment_intents": of_customer("payment_intent").await?,
        }))
    }

    /// The portal's actions, for its page: they act as the customer, on the customer's
    /// own objects only.
    pub async fn portal_cancel(&self, app: &str, session: &str, sub: &str) -> Result<()> {
        let page = self.portal_page(app, session).await?;
        owned(&page["subscriptions"], sub)?;
        let call = Call::new(app, None, &format!("{session}_cancel_{sub}"));
        self.cancel_sub(&call, sub, false).await?;
        Ok(())
    }

    pub async fn portal_default_card(&self, app: &str, session: &str, pm: &str) -> Result<()> {
        let page = self.portal_page(app, session).await?;
        owned(&page["payment_methods"], pm)?;
        let customer = page["customer"]["id"].as_str().unwrap_or_default();
        let call = Call::new(app, None, &format!("{session}_default_{pm}_{}", id("n")));
        crate::Provider::set_default_payment_method(self, &call, customer, pm).await
    }
}

fn owned(list: &Value, oid: &str) -> Result<()> {
    if list
        .as_array()
        .is_some_and(|l| l.iter().any(|v| v["id"] == oid))
    {
        Ok(())
    } else {
        Err(super::no_such("object", oid))
    }
}
