//! The `stripe` provider: Stripe's REST API, through a thin client of our own.
//!
//! Why not `async-stripe`: it generates the whole API (a long compile for the dozen
//! endpoints used here), its strict types reject the shapes local fakes send and would
//! reject fields of API versions it does not know, and it leaves idempotency keys and
//! retry policy to the caller anyway. A thin client gives exact control over form
//! encoding, idempotency keys derived from our operation ids, which failures are
//! retried, and lenient parsing into the same object types webhooks use.

mod client;

use std::time::Duration;

use async_trait::async_trait;
use paybridge_core::stripe::objects::{
    Account, CheckoutSession, Customer, List, PaymentIntent, PaymentMethod, PortalSession, Price,
    Refund, Subscription, Transfer, WebhookEndpoint,
};
use serde_json::Value;

pub use client::{Client, RetryPolicy, STRIPE_VERSION};

use crate::{
    Call, EventPage, Form, IntentLookup, NewAccount, NewCheckout, NewCustomer, NewPaymentIntent,
    NewRefund, NewSubscription, NewTransfer, NewWebhookEndpoint, Provider, Result,
};

/// Pages of 100 read when looking for an intent whose create call got no answer.
const MAX_LOOKUP_PAGES: usize = 20;

pub struct Stripe {
    client: Client,
}

impl Stripe {
    pub fn new(base: &str, timeout: Duration, retry: RetryPolicy) -> Stripe {
        Stripe {
            client: Client::new(base, timeout, retry),
        }
    }
}

/// The form Stripe expects for a Checkout Session.
pub fn checkout_form(s: &NewCheckout) -> Form {
    let mut f = Form::new();
    f.push("mode", &s.mode)
        .push("success_url", &s.success_url)
        .push("cancel_url", &s.cancel_url)
        .push("expires_at", s.expires_at)
        .push("client_reference_id", &s.client_reference_id)
        .push_opt("customer", s.customer.as_ref());
    for (i, li) in s.line_items.iter().enumerate() {
        let p = format!("line_items[{i}]");
        match &li.price {
            Some(price) => {
                f.push(format!("{p}[price]"), price);
            }
            None => {
                f.push(format!("{p}[price_data][currency]"), &li.currency)
                    .push(format!("{p}[price_data][unit_amount]"), li.unit_amount)
                    .push(format!("{p}[price_data][product_data][name]"), &li.name);
                if let Some((interval, count)) = &li.recurring {
                    f.push(format!("{p}[price_data][recurring][interval]"), interval)
                        .push(format!("{p}[price_data][recurring][interval_count]"), count);
                }
            }
        }
        f.push(format!("{p}[quantity]"), li.quantity);
    }
    f.push_map("metadata", &s.metadata);
    if s.mode == "payment" {
        if s.manual_capture {
            f.push("payment_intent_data[capture_method]", "manual");
        }
        if s.save_card {
            f.push("payment_intent_data[setup_future_usage]", "off_session");
            if s.customer.is_none() {
                f.push("customer_creation", "always");
            }
        }
        f.push_map("payment_intent_data[metadata]", &s.metadata)
            .push_opt(
                "payment_intent_data[application_fee_amount]",
                s.application_fee_amount,
            )
            .push_opt(
                "payment_intent_data[transfer_data][destination]",
                s.transfer_destination.as_ref(),
            );
    } else {
        f.push_map("subscription_data[metadata]", &s.metadata);
    }
    for (k, v) in &s.extra {
        f.push(k.clone(), v);
    }
    f
}

/// The form Stripe expects for a PaymentIntent. With a saved card it is confirmed at
/// once, off-session (the customer is not there to authenticate).
pub fn payment_intent_form(p: &NewPaymentIntent) -> Form {
    let mut f = Form::new();
    f.push("amount", p.amount)
        .push("currency", &p.currency)
        .push_opt("customer", p.customer.as_ref());
    let types: Vec<&str> = if p.payment_method_types.is_empty() {
        vec!["card"]
    } else {
        p.payment_method_types.iter().map(String::as_str).collect()
    };
    for (i, t) in types.iter().enumerate() {
        f.push(format!("payment_method_types[{i}]"), t);
    }
    if let Some(pm) = &p.payment_method {
        f.push("payment_method", pm)
            .push("confirm", "true")
            .push("off_session", "true");
    } else if p.save_card {
        f.push("setup_future_usage", "off_session");
    }
    if p.manual_capture {
        f.push("capture_method", "manual");
    }
    f.push_map("metadata", &p.metadata)
        .push_opt("application_fee_amount", p.application_fee_amount)
        .push_opt(
            "transfer_data[destination]",
            p.transfer_destination.as_ref(),
        );
    for (k, v) in &p.extra {
        f.push(k.clone(), v);
    }
    f
}

#[async_trait]
impl Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn create_customer(&self, call: &Call, c: &NewCustomer) -> Result<Customer> {
        let mut f = Form::new();
        f.push_opt("email", c.email.as_ref())
            .push_opt("name", c.name.as_ref())
            .push_map("metadata", &c.metadata);
        self.client.post(call, "/v1/customers", &f).await
    }

    async fn attach_payment_method(
        &self,
        call: &Call,
        customer: &str,
        payment_method: &str,
    ) -> Result<PaymentMethod> {
        let mut f = Form::new();
        f.push("customer", customer);
        self.client
            .post(
                call,
                &format!("/v1/payment_methods/{payment_method}/attach"),
                &f,
            )
            .await
    }

    async fn detach_payment_method(&self, call: &Call, payment_method: &str) -> Result<()> {
        let _: PaymentMethod = self
            .client
            .post(
                call,
                &format!("/v1/payment_methods/{payment_method}/detach"),
                &Form::new(),
            )
            .await?;
        Ok(())
    }

    async fn set_default_payment_method(
        &self,
        call: &Call,
        customer: &str,
        payment_method: &str,
    ) -> Result<()> {
        let mut f = Form::new();
        f.push("invoice_settings[default_payment_method]", payment_method);
        let _: Customer = self
            .client
            .post(call, &format!("/v1/customers/{customer}"), &f)
            .await?;
        Ok(())
    }

    async fn create_checkout_session(
        &self,
        call: &Call,
        s: &NewCheckout,
    ) -> Result<CheckoutSession> {
        self.client
            .post(call, "/v1/checkout/sessions", &checkout_form(s))
            .await
    }

    async fn retrieve_checkout_session(&self, call: &Call, id: &str) -> Result<CheckoutSession> {
        let mut q = Form::new();
        q.push("expand[]", "payment_intent");
        self.client
            .get(call, &format!("/v1/checkout/sessions/{id}"), &q)
            .await
    }

    async fn expire_checkout_session(&self, call: &Call, id: &str) -> Result<CheckoutSession> {
        self.client
            .post(
                call,
                &format!("/v1/checkout/sessions/{id}/expire"),
                &Form::new(),
            )
            .await
    }

    async fn create_payment_intent(
        &self,
        call: &Call,
        p: &NewPaymentIntent,
    ) -> Result<PaymentIntent> {
        self.client
            .post(call, "/v1/payment_intents", &payment_intent_form(p))
            .await
    }

    async fn retrieve_payment_intent(&self, call: &Call, id: &str) -> Result<PaymentIntent> {
        self.client
            .get(call, &format!("/v1/payment_intents/{id}"), &Form::new())
            .await
    }

    async fn capture_payment_intent(
        &self,
        call: &Call,
        id: &str,
        amount: Option<i64>,
    ) -> Result<PaymentIntent> {
        let mut f = Form::new();
        f.push_opt("amount_to_capture", amount);
        self.client
            .post(call, &format!("/v1/payment_intents/{id}/capture"), &f)
            .await
    }

    async fn cancel_payment_intent(&self, call: &Call, id: &str) -> Result<PaymentIntent> {
        self.client
            .post(
                call,
                &format!("/v1/payment_intents/{id}/cancel"),
                &Form::new(),
            )
            .await
    }

    async fn find_payment_intent(
        &self,
        call: &Call,
        q: &IntentLookup,
    ) -> Result<Option<PaymentIntent>> {
        // The list, not `/search`: search is eventually consistent (Stripe: "up to an
        // hour behind during outages"), and an intent it had not indexed yet would be
        // taken for one never made.
        let mut after: Option<String> = None;
        for _ in 0..MAX_LOOKUP_PAGES {
            let mut f = Form::new();
            f.push("limit", 100)
                .push("created[gte]", q.created_from)
                .push("created[lte]", q.created_to);
            f.push_opt("customer", q.customer.as_ref());
            f.push_opt("starting_after", after.as_ref());
            let page: List<PaymentIntent> =
                self.client.get(call, "/v1/payment_intents", &f).await?;
            let found = page.data.iter().find(|pi| {
                pi.metadata
                    .as_ref()
                    .and_then(|m| m.get(paybridge_core::stripe::event::META_PAYMENT))
                    == Some(&q.payment)
            });
            if let Some(pi) = found {
                return Ok(Some(pi.clone()));
            }
            after = page.data.last().map(|pi| pi.id.clone());
            if !page.has_more || after.is_none() {
                return Ok(None);
            }
        }
        Err(crate::ProviderError::Unavailable {
            message: format!(
                "more than {} payment intents were created around payment {}; not all could be read",
                MAX_LOOKUP_PAGES * 100,
                q.payment
            ),
        })
    }

    async fn list_prices(&self, call: &Call) -> Result<Vec<Price>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut q = Form::new();
            q.push("active", "true")
                .push("limit", 100)
                .push("expand[]", "data.product");
            q.push_opt("starting_after", after.as_ref());
            let page: List<Price> = self.client.get(call, "/v1/prices", &q).await?;
            after = page.data.last().map(|p| p.id.clone());
            let more = page.has_more && after.is_some();
            out.extend(page.data);
            if !more || out.len() >= 10_000 {
                return Ok(out);
            }
        }
    }

    async fn create_refund(&self, call: &Call, r: &NewRefund) -> Result<Refund> {
        self.client.post(call, "/v1/refunds", &refund_form(r)).await
    }

    async fn retrieve_refund(&self, call: &Call, id: &str) -> Result<Refund> {
        self.client
            .get(call, &format!("/v1/refunds/{id}"), &Form::new())
            .await
    }

    async fn create_subscription(&self, call: &Call, s: &NewSubscription) -> Result<Subscription> {
        self.client
            .post(call, "/v1/subscriptions", &subscription_form(s))
            .await
    }

    async fn retrieve_subscription(&self, call: &Call, id: &str) -> Result<Subscription> {
        self.client
            .get(call, &format!("/v1/subscriptions/{id}"), &Form::new())
            .await
    }

    async fn cancel_subscription(
        &self,
        call: &Call,
        id: &str,
        at_period_end: bool,
    ) -> Result<Subscription> {
        if at_period_end {
            let mut f = Form::new();
            f.push("cancel_at_period_end", "true");
            self.client
                .post(call, &format!("/v1/subscriptions/{id}"), &f)
                .await
        } else {
            self.client
                .delete(call, &format!("/v1/subscriptions/{id}"))
                .await
        }
    }

    async fn create_account(&self, call: &Call, a: &NewAccount) -> Result<Account> {
        let mut f = Form::new();
        f.push("type", "express")
            .push("email", &a.email)
            .push_opt("country", a.country.as_ref())
            .push("capabilities[card_payments][requested]", "true")
            .push("capabilities[transfers][requested]", "true")
            .push_map("metadata", &a.metadata);
        self.client.post(call, "/v1/accounts", &f).await
    }

    async fn retrieve_account(&self, call: &Call, id: &str) -> Result<Account> {
        self.client
            .get(call, &format!("/v1/accounts/{id}"), &Form::new())
            .await
    }

    async fn delete_account(&self, call: &Call, id: &str) -> Result<()> {
        let _: Value = self
            .client
            .delete(call, &format!("/v1/accounts/{id}"))
            .await?;
        Ok(())
    }

    async fn list_persons(&self, call: &Call, account: &str) -> Result<Vec<Value>> {
        let mut q = Form::new();
        q.push("limit", 100);
        let page: List<Value> = self
            .client
            .get(call, &format!("/v1/accounts/{account}/persons"), &q)
            .await?;
        Ok(page.data)
    }

    async fn create_transfer(&self, call: &Call, t: &NewTransfer) -> Result<Transfer> {
        let mut f = Form::new();
        f.push("amount", t.amount)
            .push("currency", &t.currency)
            .push("destination", &t.destination)
            .push_map("metadata", &t.metadata);
        for (k, v) in &t.extra {
            f.push(k.clone(), v);
        }
        self.client.post(call, "/v1/transfers", &f).await
    }

    async fn list_payout_transactions(&self, call: &Call, payout: &str) -> Result<Vec<Value>> {
        let mut q = Form::new();
        q.push("payout", payout).push("limit", 100);
        let page: List<Value> = self
            .client
            .get(call, "/v1/balance_transactions", &q)
            .await?;
        Ok(page.data)
    }

    async fn list_webhook_endpoints(&self, call: &Call) -> Result<Vec<Value>> {
        let mut q = Form::new();
        q.push("limit", 100);
        let page: List<Value> = self.client.get(call, "/v1/webhook_endpoints", &q).await?;
        Ok(page.data)
    }

    async fn create_webhook_endpoint(
        &self,
        call: &Call,
        e: &NewWebhookEndpoint,
    ) -> Result<WebhookEndpoint> {
        self.client
            .post(call, "/v1/webhook_endpoints", &webhook_endpoint_form(e))
            .await
    }

    async fn update_webhook_endpoint(
        &self,
        call: &Call,
        id: &str,
        url: &str,
        enabled_events: &[String],
    ) -> Result<WebhookEndpoint> {
        let mut f = Form::new();
        f.push("url", url);
        for (i, t) in enabled_events.iter().enumerate() {
            f.push(format!("enabled_events[{i}]"), t);
        }
        self.client
            .post(call, &format!("/v1/webhook_endpoints/{id}"), &f)
            .await
    }

    async fn delete_webhook_endpoint(&self, call: &Call, id: &str) -> Result<()> {
        let _: Value = self
            .client
            .delete(call, &format!("/v1/webhook_endpoints/{id}"))
            .await?;
        Ok(())
    }

    async fn list_events(
        &self,
        call: &Call,
        created_gte: i64,
        starting_after: Option<&str>,
    ) -> Result<EventPage> {
        let mut q = Form::new();
        q.push("created[gte]", created_gte)
            .push("limit", 100)
            .push_opt("starting_after", starting_after);
        self.client.get(call, "/v1/events", &q).await
    }

    async fn create_portal_session(
        &self,
        call: &Call,
        customer: &str,
        return_url: &str,
    ) -> Result<PortalSession> {
        let mut f = Form::new();
        f.push("customer", customer).push("return_url", return_url);
        self.client
            .post(call, "/v1/billing_portal/sessions", &f)
            .await
    }
}

/// The form Stripe expects for a new webhook endpoint.
pub fn webhook_endpoint_form(e: &NewWebhookEndpoint) -> Form {
    let mut f = Form::new();
    f.push("url", &e.url)
        .push("api_version", &e.api_version)
        .push("description", &e.description);
    for (i, t) in e.enabled_events.iter().enumerate() {
        f.push(format!("enabled_events[{i}]"), t);
    }
    f.push_map("metadata", &e.metadata);
    f
}

/// The form Stripe expects for a refund of a payment intent.
pub fn refund_form(r: &NewRefund) -> Form {
    let mut f = Form::new();
    f.push("payment_intent", &r.payment_intent)
        .push("amount", r.amount)
        .push_opt("reason", r.reason.as_ref())
        .push_map("metadata", &r.metadata);
    if r.refund_application_fee {
        f.push("refund_application_fee", "true");
    }
    if r.reverse_transfer {
        f.push("reverse_transfer", "true");
    }
    f
}

/// The form Stripe expects for a subscription. A price id that is not a `price_…` is
/// sent as a legacy Plan (`items[0][plan]`), which Stripe still accepts.
pub fn subscription_form(s: &NewSubscription) -> Form {
    let mut f = Form::new();
    f.push("customer", &s.customer);
    match &s.price {
        Some(p) if p.starts_with("price_") => {
            f.push("items[0][price]", p);
        }
        Some(p) => {
            f.push("items[0][plan]", p);
        }
        None => {
            f.push("items[0][price_data][currency]", &s.currency)
                .push("items[0][price_data][unit_amount]", s.unit_amount)
                .push("items[0][price_data][recurring][interval]", &s.interval)
                .push(
                    "items[0][price_data][recurring][interval_count]",
                    s.interval_count,
                );
        }
    }
    f.push("items[0][quantity]", s.quantity)
        .push_map("metadata", &s.metadata);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LineItem;

    #[test]
    fn checkout_form_carries_prices_inline_and_our_metadata() {
        let s = NewCheckout {
            mode: "payment".into(),
            line_items: vec![
                LineItem {
                    name: "Tea".into(),
                    unit_amount: 500,
                    currency: "jpy".into(),
                    quantity: 2,
                    price: None,
                    recurring: None,
                },
                LineItem {
                    name: "Mug".into(),
                    unit_amount: 100,
                    currency: "jpy".into(),
                    quantity: 1,
                    price: Some("price_123".into()),
                    recurring: None,
                },
            ],
            success_url: "https://a/s".into(),
            cancel_url: "https://a/c".into(),
            expires_at: 1_800_000_000,
            customer: Some("cus_1".into()),
            client_reference_id: "order_1".into(),
            manual_capture: true,
            save_card: true,
            metadata: [("pb_payment".to_string(), "payment_1".to_string())].into(),
            application_fee_amount: Some(10),
            transfer_destination: Some("acct_1".into()),
            extra: vec![("locale".into(), "fr".into())],
        };
        let f = checkout_form(&s);
        assert_eq!(f.get("line_items[0][price_data][unit_amount]"), Some("500"));
        assert_eq!(
            f.get("line_items[0][price_data][product_data][name]"),
            Some("Tea")
        );
        assert_eq!(f.get("line_items[0][quantity]"), Some("2"));
        assert_eq!(f.get("line_items[1][price]"), Some("price_123"));
        assert_eq!(f.get("payment_intent_data[capture_method]"), Some("manual"));
        assert_eq!(
            f.get("payment_intent_data[setup_future_usage]"),
            Some("off_session")
        );
        assert_eq!(
            f.get("payment_intent_data[metadata][pb_payment]"),
            Some("payment_1")
        );
        assert_eq!(f.get("metadata[pb_payment]"), Some("payment_1"));
        assert_eq!(
            f.get("payment_intent_data[transfer_data][destination]"),
            Some("acct_1")
        );
        assert_eq!(f.get("locale"), Some("fr"));
        assert_eq!(
            f.get("customer_creation"),
            None,
            "a known customer needs none created"
        );
    }

    #[test]
    fn saved_cards_are_charged_off_session() {
        let p = NewPaymentIntent {
            amount: 1000,
            currency: "usd".into(),
            customer: Some("cus_1".into()),
            payment_method: Some("pm_1".into()),
            manual_capture: false,
            save_card: false,
            payment_method_types: vec![],
            metadata: Default::default(),
            application_fee_amount: None,
            transfer_destination: None,
            extra: vec![],
        };
        let f = payment_intent_form(&p);
        assert_eq!(f.get("confirm"), Some("true"));
        assert_eq!(f.get("off_session"), Some("true"));
        assert_eq!(f.get("payment_method_types[0]"), Some("card"));
        assert_eq!(f.get("capture_method"), None);
    }
}
