//! What paybridge needs from a payment provider (`Provider`), with two
//! implementations: `stripe` (Stripe's REST API over reqwest + rustls) and `sandbox`
//! (an offline test mode that behaves like Stripe's test mode and sends Stripe-shaped
//! signed events through the same webhook endpoint).
//!
//! Both answer with Stripe's own object shapes (`paybridge_core::stripe::objects`), so
//! everything from the answer or the webhook on is one code path. Every creating or
//! money-moving call carries an idempotency key derived from our own operation id: a
//! retry of the same operation can never charge, capture or refund twice.

mod form;
pub mod sandbox;
pub mod stripe;

use async_trait::async_trait;
use paybridge_core::stripe::objects::{
    Account, CheckoutSession, Customer, List, Metadata, PaymentIntent, PaymentMethod,
    PortalSession, Price, Refund, Subscription, Transfer, WebhookEndpoint,
};
use secrecy::SecretString;
use serde_json::Value;

pub use form::Form;

/// What a call that changes something at Stripe waits for before it leaves: that
/// whatever the caller read to decide on it is durable. (The sandbox keeps its state in
/// paybridge's own database and does not wait.) paybridge's SQLite store
/// lets readers see a commit up to one fsync before it is durable (commit pipelining,
/// the store's `read.rs`); a call made on such a read would outlive a power cut that
/// loses the read.
pub trait Fence: Send + Sync {
    /// Resolves once the call may leave, or with why it may not.
    fn wait(&self) -> FenceWait<'_>;
}

/// What [`Fence::wait`] returns.
pub type FenceWait<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<(), String>> + Send + 'a>,
>;

/// One call to the provider: which app, with which key, under which idempotency key.
pub struct Call {
    pub app_id: String,
    /// The app's provider secret key (Stripe); the sandbox needs none.
    pub secret_key: Option<SecretString>,
    /// Derived from our operation id (`pb_<our id>_<operation>`); the same operation
    /// always sends the same key.
    pub idempotency_key: String,
    /// Act as this connected account (Stripe's `Stripe-Account` header).
    pub account: Option<String>,
    /// Waited for before a call that changes something leaves (see [`Fence`]).
    pub fence: Option<std::sync::Arc<dyn Fence>>,
}

impl Call {
    pub fn new(app_id: &str, secret_key: Option<SecretString>, operation: &str) -> Call {
        Call {
            app_id: app_id.to_owned(),
            secret_key,
            idempotency_key: format!("pb_{operation}"),
            account: None,
            fence: None,
        }
    }

    /// The same call, sent only once `fence` lets it.
    pub fn fenced(mut self, fence: std::sync::Arc<dyn Fence>) -> Call {
        self.fence = Some(fence);
        self
    }

    /// The same call, made as a connected account.
    pub fn on_behalf_of(mut self, account: &str) -> Call {
        self.account = Some(account.to_owned());
        self
    }

    /// The same app and key, for another operation.
    pub fn op(&self, operation: &str) -> Call {
        Call {
            app_id: self.app_id.clone(),
            secret_key: self.secret_key.clone(),
            idempotency_key: format!("pb_{operation}"),
            account: self.account.clone(),
            fence: self.fence.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: Metadata,
}

/// One line of a checkout. With `price`, the provider's price is used (and the total
/// the provider computes is checked against ours); otherwise the amount is sent inline.
#[derive(Debug, Clone)]
pub struct LineItem {
    pub name: String,
    pub unit_amount: i64,
    pub currency: String,
    pub quantity: i64,
    pub price: Option<String>,
    /// `(interval, interval_count)` for subscription prices.
    pub recurring: Option<(String, i64)>,
}

#[derive(Debug, Clone)]
pub struct NewCheckout {
    /// `payment` or `subscription`.
    pub mode: String,
    pub line_items: Vec<LineItem>,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at: i64,
    pub customer: Option<String>,
    pub client_reference_id: String,
    pub manual_capture: bool,
    pub save_card: bool,
    pub metadata: Metadata,
    pub application_fee_amount: Option<i64>,
    pub transfer_destination: Option<String>,
    /// Further Stripe parameters, validated by the caller (`provider_options`).
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct NewPaymentIntent {
    pub amount: i64,
    pub currency: String,
    pub customer: Option<String>,
    /// A saved card to charge now, off-session.
    pub payment_method: Option<String>,
    pub manual_capture: bool,
    pub save_card: bool,
    pub payment_method_types: Vec<String>,
    pub metadata: Metadata,
    pub application_fee_amount: Option<i64>,
    pub transfer_destination: Option<String>,
    pub extra: Vec<(String, String)>,
}

/// Where to look for a payment intent that a create call of ours may or may not have
/// made (every attempt of it failed without an answer).
#[derive(Debug, Clone)]
pub struct IntentLookup {
    /// Our payment id, which the intent carries as `pb_payment` in its metadata.
    pub payment: String,
    /// The provider customer the intent was for, when there was one (narrows the list).
    pub customer: Option<String>,
    /// Unix seconds: if the intent exists, it was created in `[created_from, created_to]`.
    pub created_from: i64,
    pub created_to: i64,
}

#[derive(Debug, Clone)]
pub struct NewRefund {
    pub payment_intent: String,
    pub amount: i64,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    pub reason: Option<String>,
    pub metadata: Metadata,
    pub refund_application_fee: bool,
    pub reverse_transfer: bool,
}

/// A subscription to one price: a provider price (`price`), or for the sandbox an
/// inline amount. It is charged to the customer's default payment method, which
/// paybridge keeps in step with the customer's default card.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub customer: String,
    pub price: Option<String>,
    pub name: String,
    pub unit_amount: i64,
    pub currency: String,
    pub interval: String,
    pub interval_count: i64,
    pub quantity: i64,
    pub metadata: Metadata,
}

/// A webhook endpoint paybridge makes for itself.
#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub url: String,
    pub enabled_events: Vec<String>,
    /// The API version its events are rendered in (the one paybridge parses).
    pub api_version: String,
    pub description: String,
    pub metadata: Metadata,
}

/// One page of the account's events (Stripe's `GET /v1/events`), the events as JSON.
pub type EventPage = List<Value>;

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub email: String,
    pub country: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub destination: String,
    pub amount: i64,
    pub currency: String,
    pub metadata: Metadata,
    pub extra: Vec<(String, String)>,
}

/// How a provider call failed, in terms the API can answer with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The card was declined (HTTP 402). For a charge attempted on an intent, the
    /// intent as it now stands (carrying `last_payment_error`).
    #[error("card declined: {message}")]
    Card {
        code: Option<String>,
        decline_code: Option<String>,
        message: String,
        payment_intent: Option<Box<PaymentIntent>>,
    },
    /// The provider refused the request as invalid.
    #[error("the provider refused the request: {message}")]
    Invalid {
        code: Option<String>,
        param: Option<String>,
        message: String,
    },
    #[error("the provider has no such object: {message}")]
    NotFound { message: String },
    /// The app's key was refused.
    #[error("the provider refused the app's secret key: {message}")]
    Authentication { message: String },
    /// The key is valid but may not make this call (a restricted key without the
    /// permission; HTTP 403).
    #[error("the provider's key lacks a permission: {message}")]
    Permission { message: String },
    /// Still failing after the retries: network errors, timeouts, 429s or 5xx.
    #[error("the provider is unavailable: {message}")]
    Unavailable { message: String },
    /// A state the operation cannot apply to (a completed session, an intent not awaiting capture).
    #[error("{message}")]
    Conflict { code: String, message: String },
}

pub type Result<T> = std::result::Result<T, ProviderError>;

/// What paybridge needs from a payment provider.
#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;

    async fn create_customer(&self, call: &Call, c: &NewCustomer) -> Result<Customer>;
    /// Attaches a payment method (`pm_…`, or a test token such as `pm_card_visa`).
    async fn attach_payment_method(
        &self,
        call: &Call,
        customer: &str,
        payment_method: &str,
    ) -> Result<PaymentMethod>;
    async fn detach_payment_method(&self, call: &Call, payment_method: &str) -> Result<()>;
    async fn set_default_payment_method(
        &self,
        call: &Call,
        customer: &str,
        payment_method: &str,
    ) -> Result<()>;

    async fn create_checkout_session(
        &self,
        call: &Call,
        s: &NewCheckout,
    ) -> Result<CheckoutSession>;
    async fn retrieve_checkout_session(&self, call: &Call, id: &str) -> Result<CheckoutSession>;
    async fn expire_checkout_session(&self, call: &Call, id: &str) -> Result<CheckoutSession>;

    async fn create_payment_intent(
        &self,
        call: &Call,
        p: &NewPaymentIntent,
    ) -> Result<PaymentIntent>;
    async fn retrieve_payment_intent(&self, call: &Call, id: &str) -> Result<PaymentIntent>;
    async fn capture_payment_intent(
        &self,
        call: &Call,
        id: &str,
        amount: Option<i64>,
    ) -> Result<PaymentIntent>;
    async fn cancel_payment_intent(&self, call: &Call, id: &str) -> Result<PaymentIntent>;
    /// The intent made for one of our payments, if the provider has one. Reads a
    /// strongly consistent list (not a search index), so `None` means there is none.
    async fn find_payment_intent(
        &self,
        call: &Call,
        q: &IntentLookup,
    ) -> Result<Option<PaymentIntent>>;

    /// Active prices, with their products, for `POST /v1/products/import`.
    async fn list_prices(&self, call: &Call) -> Result<Vec<Price>>;

    async fn create_refund(&self, call: &Call, r: &NewRefund) -> Result<Refund>;
    async fn retrieve_refund(&self, call: &Call, id: &str) -> Result<Refund>;

    async fn create_subscription(&self, call: &Call, s: &NewSubscription) -> Result<Subscription>;
    async fn retrieve_subscription(&self, call: &Call, id: &str) -> Result<Subscription>;
    /// Cancels now, or at the end of the current period.
    async fn cancel_subscription(
        &self,
        call: &Call,
        id: &str,
        at_period_end: bool,
    ) -> Result<Subscription>;

    async fn create_account(&self, call: &Call, a: &NewAccount) -> Result<Account>;
    async fn retrieve_account(&self, call: &Call, id: &str) -> Result<Account>;
    async fn delete_account(&self, call: &Call, id: &str) -> Result<()>;
    /// The account's persons (Stripe's objects, passed through).
    async fn list_persons(&self, call: &Call, account: &str) -> Result<Vec<Value>>;
    async fn create_transfer(&self, call: &Call, t: &NewTransfer) -> Result<Transfer>;
    /// The balance transactions a payout (of a connected account, with `call.account`) settled.
    async fn list_payout_transactions(&self, call: &Call, payout: &str) -> Result<Vec<Value>>;
    /// The account's webhook endpoints (Stripe's objects, passed through).
    async fn list_webhook_endpoints(&self, call: &Call) -> Result<Vec<Value>>;

    /// Makes a webhook endpoint; the answer carries its signing secret.
    async fn create_webhook_endpoint(
        &self,
        _call: &Call,
        _e: &NewWebhookEndpoint,
    ) -> Result<WebhookEndpoint> {
        Err(unsupported(self.name(), "webhook endpoints"))
    }
    /// Points an endpoint at another URL and event list (its secret stays).
    async fn update_webhook_endpoint(
        &self,
        _call: &Call,
        _id: &str,
        _url: &str,
        _enabled_events: &[String],
    ) -> Result<WebhookEndpoint> {
        Err(unsupported(self.name(), "webhook endpoints"))
    }
    async fn delete_webhook_endpoint(&self, _call: &Call, _id: &str) -> Result<()> {
        Err(unsupported(self.name(), "webhook endpoints"))
    }
    /// The account's events created at or after `created_gte` (unix seconds), one page
    /// of up to 100 after `starting_after`. Every type: Stripe's `types` filter takes at
    /// most 20 names, and the caller keeps the ones it reads.
    async fn list_events(
        &self,
        _call: &Call,
        _created_gte: i64,
        _starting_after: Option<&str>,
    ) -> Result<EventPage> {
        Ok(EventPage::default())
    }
    /// A customer portal session for one of the provider's customers.
    async fn create_portal_session(
        &self,
        _call: &Call,
        _customer: &str,
        _return_url: &str,
    ) -> Result<PortalSession> {
        Err(unsupported(self.name(), "customer portal sessions"))
    }
}

fn unsupported(provider: &str, what: &str) -> ProviderError {
    ProviderError::Invalid {
        code: Some("unsupported".into()),
        param: None,
        message: format!("the {provider} provider has no {what}"),
    }
}
