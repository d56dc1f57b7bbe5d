//! The `sandbox` provider: an offline stand-in for Stripe's test mode.
//!
//! It keeps its own "Stripe account" (customers, payment methods, intents, charges,
//! checkout sessions) as Stripe-shaped JSON in `sandbox_objects`, honours Stripe's test
//! cards (`cards`), serves a hosted test checkout page (in the server's HTTP layer),
//! and for every change writes the events Stripe would send into `sandbox_outbox`, in
//! the same transaction. A worker signs them with the app's signing secret and posts
//! them to `POST /v1/webhooks/stripe/{app_id}`: from there on, sandbox and Stripe are
//! one code path. Like Stripe, it honours idempotency keys.

mod authentication;
pub mod cards;
mod connect;
mod money_out;
pub mod objects;
mod portal;
pub use portal::PORTAL_TTL_SECS;
mod recurring;

use std::sync::Arc;

use async_trait::async_trait;
use paybridge_core::stripe::objects::{
    Account, CheckoutSession, Customer, PaymentIntent, PaymentMethod, Price, Refund, Subscription,
    Transfer,
};
use paybridge_store::{now, now_ms, sandbox as store, Conn, Db, StoreError};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::Notify;

use self::cards::{Decline, TestCard};
use self::objects::{event, from_rest, id, shape, to_rest};
use crate::{
    Call, IntentLookup, NewAccount, NewCheckout, NewCustomer, NewPaymentIntent, NewRefund,
    NewSubscription, NewTransfer, Provider, ProviderError, Result,
};

/// Hidden per-object state of the sandbox; stripped from what it answers and sends.
const PRIVATE: &str = "_sandbox";

struct IntentSpec<'a> {
    amount: i64,
    currency: &'a str,
    customer: Option<&'a str>,
    manual: bool,
    save_card: bool,
    metadata: &'a Value,
    fee: Option<i64>,
    destination: Option<&'a str>,
}

pub struct Sandbox {
    db: Db,
    public_url: String,
    wake: Arc<Notify>,
    /// How long after a change its events are sent (Stripe's arrive a moment after the
    /// customer is redirected; a delay makes that visible).
    delay_ms: i64,
}

/// The database's own words go to the log, not into the answer (they can name tables,
/// constraints and values).
impl From<StoreError> for ProviderError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "the sandbox's storage failed");
        ProviderError::Unavailable {
            message: "the sandbox's storage failed (the server log has the cause)".into(),
        }
    }
}

/// An object as the sandbox answers and sends it. A payment intent's client secret is
/// derived from its id rather than stored, so no client secret rests in the database.
fn public(v: &Value) -> Value {
    let mut v = at_rest(v);
    if v["object"] == "payment_intent" {
        if let Some(id) = v["id"].as_str() {
            v["client_secret"] = json!(client_secret(id));
        }
    }
    v
}

/// An object as the sandbox keeps it: without its hidden state or client secret.
fn at_rest(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove(PRIVATE);
        if o.get("client_secret").is_some_and(Value::is_string) {
            o.insert("client_secret".into(), Value::Null);
        }
    }
    v
}

fn client_secret(intent: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("paybridge-sandbox:{intent}").as_bytes());
    let tail: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("{intent}_secret_{tail}")
}

fn parse<T: DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_value(public(v)).map_err(|e| ProviderError::Unavailable {
        message: format!("sandbox object unreadable: {e}"),
    })
}

fn no_such(kind: &str, id: &str) -> ProviderError {
    ProviderError::NotFound {
        message: format!("No such {kind}: '{id}'"),
    }
}

fn conflict(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::Conflict {
        code: code.to_owned(),
        message: message.into(),
    }
}

fn card_error(d: Decline, pi: Option<&Value>) -> ProviderError {
    ProviderError::Card {
        code: Some(d.code.to_owned()),
        decline_code: d.decline_code.map(str::to_owned),
        message: d.message.to_owned(),
        payment_intent: pi
            .and_then(|p| parse::<PaymentIntent>(p).ok())
            .map(Box::new),
    }
}

/// One sandbox change: the objects it touches and the events it will send, committed
/// together.
struct Change {
    tx: paybridge_store::Tx,
    app: String,
    idempotency_key: Option<String>,
    events: usize,
    delay_ms: i64,
    /// The answer the idempotency key's slot already holds, as stored
    /// ([`Change::replayed_or_claim_with`]).
    answered: Option<String>,
}

impl Change {
    async fn begin(sb: &Sandbox, app: &str, idempotency_key: Option<&str>) -> Result<Change> {
        Ok(Change {
            tx: sb.db.begin().await?,
            app: app.to_owned(),
            idempotency_key: idempotency_key.map(str::to_owned),
            events: 0,
            delay_ms: sb.delay_ms,
            answered: None,
        })
    }

    fn conn(&mut self) -> &mut Conn {
        &mut self.tx
    }

    /// The response stored for this idempotency key by an earlier call, if any; else
    /// claims the key for this change.
    async fn replayed(&mut self) -> Result<Option<Value>> {
        self.claim("").await
    }

    /// [`Change::replayed`] for a change whose answer is known before it reads
    /// anything (a new object): the key is claimed with the answer itself, so `commit`
    /// need not write it again (one statement where `replayed` and `commit` take two).
    async fn replayed_or_claim_with(&mut self, answer: &Value) -> Result<Option<Value>> {
        let kept = to_rest(&at_rest(answer));
        let replay = self.claim(&kept).await?;
        if replay.is_none() {
            self.answered = Some(kept);
        }
        Ok(replay)
    }

    /// Claims the key's slot holding `answer` (empty: in progress) and returns `None`,
    /// or returns the answer an earlier call stored there. A second call with the key
    /// waits for the first's row. An empty slot is a call still in progress.
    async fn claim(&mut self, answer: &str) -> Result<Option<Value>> {
        let Some(key) = &self.idempotency_key else {
            return Ok(None);
        };
        let slot = format!("idem:{key}");
        let app = self.app.clone();
        if store::insert_new(&mut self.tx, &app, &slot, "idempotency", answer).await? {
            return Ok(None);
        }
        let stored = store::get(&mut *self.tx, &app, &slot)
            .await?
            .unwrap_or_default();
        if stored.is_empty() {
            return Err(conflict(
                "idempotency_key_in_use",
                "a request with this idempotency key is in progress",
            ));
        }
        from_rest(&stored)
            .map(|v| Some(public(&v)))
            .map_err(|e| ProviderError::Unavailable {
                message: e.to_string(),
            })
    }

    async fn load(&mut self, id: &str) -> Result<Option<Value>> {
        let app = self.app.clone();
        Ok(store::lock(self.conn(), &app, id)
            .await?
            .and_then(|s| from_rest(&s).ok()))
    }

    async fn save(&mut self, kind: &str, v: &Value) -> Result<()> {
        let app = self.app.clone();
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        let mut kept = v.clone();
        if kept.get("client_secret").is_some_and(Value::is_string) {
            kept["client_secret"] = Value::Null;
        }
        store::put(self.conn(), &app, &id, kind, &to_rest(&kept)).await?;
        Ok(())
    }

    async fn emit(&mut self, kind: &str, object: &Value) -> Result<()> {
        // Sent without the client secret (Stripe includes it; paybridge would redact it).
        let ev = event(
            kind,
            &at_rest(object),
            now(),
            self.idempotency_key.as_deref(),
        );
        let app = self.app.clone();
        let id = ev["id"].as_str().unwrap_or_default().to_owned();
        let due = now_ms() + self.delay_ms;
        store::push_event(self.conn(), &app, &id, &ev.to_string(), due).await?;
        self.events += 1;
        Ok(())
    }

    /// Commits, remembering `response` for the idempotency key.
    async fn commit(mut self, response: &Value, wake: &Notify) -> Result<()> {
        // A change that claimed its key with its answer commits that same answer.
        debug_assert!(self
            .answered
            .as_deref()
            .is_none_or(|a| from_rest(a).ok() == Some(at_rest(response))));
        if let Some(key) = self
            .idempotency_key
            .clone()
            .filter(|_| self.answered.is_none())
        {
            let app = self.app.clone();
            store::put(
                self.conn(),
                &app,
                &format!("idem:{key}"),
                "idempotency",
                &to_rest(&at_rest(response)),
            )
            .await?;
        }
        // Seen by every later transaction, perhaps not yet durable: what our side records
        // of the answer follows it in the same database (Stripe would have committed it
        // on its side), and whatever the request passes on waits for it.
        self.tx.commit_visible().await.map_err(StoreError::from)?;
        if self.events > 0 {
            wake.notify_one();
        }
        Ok(())
    }
}

fn card_json(card: &TestCard) -> Value {
    json!({
        "brand": card.brand,
        "last4": card.last4(),
        "exp_month": 12,
        "exp_year": 2034,
        "country": "US",
        "funding": "credit",
        "fingerprint": format!("sbx{}", card.last4()),
    })
}

fn new_payment_method(card: &TestCard, customer: Option<&str>) -> Value {
    shape(
        "payment_method",
        json!({
            "id": id("pm"),
            "object": "payment_method",
            "type": "card",
            "card": card_json(card),
            "customer": customer,
            "created": now(),
            "livemode": false,
            "metadata": {},
            "billing_details": {"address": null, "email": null, "name": null, "phone": null},
            PRIVATE: {"number": card.number},
        }),
    )
}

impl Sandbox {
    pub fn new(db: Db, public_url: &str, wake: Arc<Notify>, delay: std::time::Duration) -> Sandbox {
        Sandbox {
            db,
            public_url: public_url.trim_end_matches('/').to_owned(),
            wake,
            delay_ms: delay.as_millis() as i64,
        }
    }

    /// Where the hosted test checkout page of a session lives.
    pub fn checkout_url(&self, app: &str, session: &str) -> String {
        format!("{}/sandbox/pay/{app}/{session}", self.public_url)
    }

    /// A session as the hosted page shows it (with its line items).
    pub async fn checkout_page(&self, app: &str, session: &str) -> Result<Value> {
        self.stored(app, session, "checkout.session").await
    }

    /// A stored object, whole again ([`from_rest`]); `no_such(kind, id)` if there is
    /// none.
    pub(super) async fn stored(&self, app: &str, id: &str, kind: &str) -> Result<Value> {
        let raw = store::get(self.db.reader(), app, id)
            .await?
            .ok_or_else(|| no_such(kind, id))?;
        from_rest(&raw).map_err(|e| ProviderError::Unavailable {
            message: e.to_string(),
        })
    }

    /// Tries to charge `pi` with a card: writes the charge, updates the intent, and
    /// emits the events. Returns the decline, if any.
    async fn attempt(
        &self,
        ch: &mut Change,
        pi: &mut Value,
        card: std::result::Result<TestCard, Decline>,
        payment_method: Option<&Value>,
    ) -> Result<Option<Decline>> {
        let amount = pi["amount"].as_i64().unwrap_or(0);
        let manual = pi["capture_method"] == "manual";
        let decline = match &card {
            Ok(c) => c.on_charge,
            Err(d) => Some(*d),
        };
        let ok = decline.is_none();
        let charge = shape(
            "charge",
            json!({
                "id": id("ch"),
                "object": "charge",
                "amount": amount,
                "amount_captured": if ok && !manual { amount } else { 0 },
                "amount_refunded": 0,
                "captured": ok && !manual,
                "paid": ok,
                "status": if ok { "succeeded" } else { "failed" },
                "currency": pi["currency"],
                "customer": pi["customer"],
                "payment_intent": pi["id"],
                "invoice": pi["invoice"],
                "payment_method": payment_method.map(|p| p["id"].clone()),
                "payment_method_details": card.as_ref().ok().map(|c| json!({"type": "card", "card": card_json(c)})),
                "failure_code": decline.map(|d| d.code),
                "failure_message": decline.map(|d| d.message),
                "outcome": {
                    "type": if ok { "authorized" } else { "issuer_declined" },
                    "reason": decline.and_then(|d| d.decline_code),
                    "network_status": if ok { "approved_by_network" } else { "declined_by_network" },
                    "seller_message": if ok { "Payment complete." } else { "The bank did not return any further details with this decline." },
                },
                "refunded": false,
                "refunds": {"object": "list", "data": [], "has_more": false},
                "disputed": false,
                "metadata": pi["metadata"],
                "application_fee_amount": pi["application_fee_amount"],
                "created": now(),
                "livemode": false,
            }),
        );
        ch.save("charge", &charge).await?;
        pi["latest_charge"] = charge["id"].clone();
        pi["payment_method"] = payment_method
            .map(|p| p["id"].clone())
            .unwrap_or(Value::Null);
        if let Some(d) = decline {
            pi["status"] = json!("requires_payment_method");
            pi["last_payment_error"] = json!({
                "type": "card_error", "code": d.code, "decline_code": d.decline_code, "message": d.message,
                "charge": charge["id"], "payment_method": payment_method.map(public),
            });
            ch.save("payment_intent", pi).await?;
            ch.emit("charge.failed", &charge).await?;
            ch.emit("payment_intent.payment_failed", pi).await?;
            return Ok(Some(d));
        }
        pi["last_payment_error"] = Value::Null;
        if manual {
            pi["status"] = json!("requires_capture");
            pi["amount_capturable"] = json!(amount);
        } else {
            pi["status"] = json!("succeeded");
            pi["amount_received"] = json!(amount);
            pi["amount_capturable"] = json!(0);
        }
        ch.save("payment_intent", pi).await?;
        ch.emit("charge.succeeded", &charge).await?;
        ch.emit(
            if manual {
                "payment_intent.amount_capturable_updated"
            } else {
                "payment_intent.succeeded"
            },
            pi,
        )
        .await?;
        Ok(None)
    }

    fn new_intent(&self, s: IntentSpec<'_>) -> Value {
        let IntentSpec {
            amount,
            currency,
            customer,
            manual,
            save_card,
            metadata,
            fee,
            destination,
        } = s;
        let pi_id = id("pi");
        shape(
            "payment_intent",
            json!({
                "id": pi_id,
                "object": "payment_intent",
                "amount": amount,
                "amount_capturable": 0,
                "amount_received": 0,
                "currency": currency,
                "status": "requires_payment_method",
                "capture_method": if manual { "manual" } else { "automatic" },
                "confirmation_method": "automatic",
                "client_secret": null,
                "customer": customer,
                "metadata": metadata,
                "payment_method_types": ["card"],
                "setup_future_usage": if save_card { Some("off_session") } else { None },
                "application_fee_amount": fee,
                "transfer_data": destination.map(|d| json!({"destination": d})),
                "created": now(),
                "livemode": false,
            }),
        )
    }

    /// Pays (or fails to pay) an open checkout session with a test card, as the hosted
    /// page does. A declined card leaves the session open for another try.
    pub async fn complete_checkout(
        &self,
        app: &str,
        session: &str,
        card_number: &str,
    ) -> Result<CheckoutSession> {
        self.complete_checkout_as(app, session, card_number, None)
            .await
    }

    /// `complete_checkout`, with the email the customer gave on the page (kept in the
    /// session's `customer_details`, as Stripe's page does). A number that is not a card
    /// at all is refused before anything is tried or recorded, as Stripe refuses it
    /// before a charge.
    pub async fn complete_checkout_as(
        &self,
        app: &str,
        session: &str,
        card_number: &str,
        email: Option<&str>,
    ) -> Result<CheckoutSession> {
        if let Err(d) = cards::lookup(card_number) {
            if cards::is_typo(&d) {
                return Err(card_error(d, None));
            }
        }
        let mut ch = Change::begin(self, app, None).await?;
        let mut cs = ch
            .load(session)
            .await?
            .ok_or_else(|| no_such("checkout.session", session))?;
        match cs["status"].as_str() {
            Some("open") => {}
            Some("complete") => {
                return Err(conflict(
                    "checkout_session_complete",
                    "This Checkout Session is already complete.",
                ))
            }
            _ => {
                return Err(conflict(
                    "checkout_session_expired",
                    "This Checkout Session has expired.",
                ))
            }
        }
        if cs["expires_at"].as_i64().unwrap_or(i64::MAX) <= now() {
            return Err(conflict(
                "checkout_session_expired",
                "This Checkout Session has expired.",
            ));
        }
        if let Some(email) = email {
            cs["customer_details"] = json!({"email": email});
        }
        if cs["mode"] == "subscription" {
            return self
                .complete_subscription_checkout(ch, cs, card_number)
                .await;
        }
        let private = cs[PRIVATE].clone();
        let save_card = private["save_card"].as_bool().unwrap_or(false);
        let mut pi = match cs["payment_intent"].as_str() {
            Some(pi_id) => ch
                .load(pi_id)
                .await?
                .ok_or_else(|| no_such("payment_intent", pi_id))?,
            None => {
                let pi = self.new_intent(IntentSpec {
                    amount: cs["amount_total"].as_i64().unwrap_or(0),
                    currency: cs["currency"].as_str().unwrap_or("usd"),
                    customer: cs["customer"].as_str(),
                    manual: private["manual_capture"].as_bool().unwrap_or(false),
                    save_card,
                    metadata: &private["payment_intent_metadata"],
                    fee: private["application_fee_amount"].as_i64(),
                    destination: private["transfer_destination"].as_str(),
                });
                cs["payment_intent"] = pi["id"].clone();
                pi
            }
        };
        let card = cards::lookup(card_number);
        let mut customer = cs["customer"].as_str().map(str::to_owned);
        if save_card && customer.is_none() && card.is_ok() {
            let c = self.new_customer(&mut ch, None, None, &json!({})).await?;
            customer = c["id"].as_str().map(str::to_owned);
            cs["customer"] = c["id"].clone();
            pi["customer"] = c["id"].clone();
        }
        let pm = card
            .as_ref()
            .ok()
            .map(|c| new_payment_method(c, if save_card { customer.as_deref() } else { None }));
        if let Some(pm) = &pm {
            ch.save("payment_method", pm).await?;
        }
        let declined = self.attempt(&mut ch, &mut pi, card, pm.as_ref()).await?;
        if let Some(d) = declined {
            ch.save("checkout.session", &cs).await?;
            ch.commit(&cs, &self.wake).await?;
            return Err(card_error(d, Some(&pi)));
        }
        if save_card {
            if let Some(pm) = &pm {
                ch.emit("payment_method.attached", pm).await?;
            }
        }
        cs["status"] = json!("complete");
        cs["payment_status"] = json!(if pi["status"] == "succeeded" {
            "paid"
        } else {
            "unpaid"
        });
        ch.save("checkout.session", &cs).await?;
        ch.emit("checkout.session.completed", &cs).await?;
        ch.commit(&cs, &self.wake).await?;
        parse(&cs)
    }

    /// Confirms an intent with a test card, as Stripe.js would in a custom card form.
    pub async fn confirm_intent(
        &self,
        app: &str,
        intent: &str,
        card_number: &str,
    ) -> Result<PaymentIntent> {
        if let Err(d) = cards::lookup(card_number) {
            if cards::is_typo(&d) {
                return Err(card_error(d, None));
            }
        }
        let mut ch = Change::begin(self, app, None).await?;
        let mut pi = ch
            .load(intent)
            .await?
            .ok_or_else(|| no_such("payment_intent", intent))?;
        if !matches!(
            pi["status"].as_str(),
            Some("requires_payment_method" | "requires_confirmation" | "requires_action")
        ) {
            return Err(conflict(
                "payment_intent_unexpected_state",
                format!(
                    "This PaymentIntent's status is {}; it cannot be confirmed.",
                    pi["status"]
                ),
            ));
        }
        let card = cards::lookup(card_number);
        let save = pi["setup_future_usage"].is_string();
        let customer = pi["customer"].as_str().map(str::to_owned);
        let pm = card
            .as_ref()
            .ok()
            .map(|c| new_payment_method(c, if save { customer.as_deref() } else { None }));
        if let Some(pm) = &pm {
            ch.save("payment_method", pm).await?;
        }
        // A card whose bank asks for 3-D Secure on every charge waits for the customer.
        if let (Ok(c), Some(pm)) = (&card, &pm) {
            if c.needs_authentication(false) {
                self.require_action(&mut ch, &mut pi, pm).await?;
                ch.commit(&pi, &self.wake).await?;
                return parse(&pi);
            }
        }
        let declined = self.attempt(&mut ch, &mut pi, card, pm.as_ref()).await?;
        ch.commit(&pi, &self.wake).await?;
        match declined {
            Some(d) => Err(card_error(d, Some(&pi))),
            None => parse(&pi),
        }
    }

    async fn new_customer(
        &self,
        ch: &mut Change,
        email: Option<&str>,
        name: Option<&str>,
        metadata: &Value,
    ) -> Result<Value> {
        let c = shape(
            "customer",
            json!({
                "id": id("cus"),
                "object": "customer",
                "email": email,
                "name": name,
                "metadata": metadata,
                "balance": 0,
                "delinquent": false,
                "invoice_settings": {"default_payment_method": null, "custom_fields": null, "footer": null, "rendering_options": null},
                "created": now(),
                "livemode": false,
            }),
        );
        ch.save("customer", &c).await?;
        ch.emit("customer.created", &c).await?;
        Ok(c)
    }

    async fn expire(&self, app: &str, session: &str, key: Option<&str>) -> Result<CheckoutSession> {
        let mut ch = Change::begin(self, app, key).await?;
        if let Some(r) = ch.replayed().await? {
            return parse(&r);
        }
        let mut cs = ch
            .load(session)
            .await?
            .ok_or_else(|| no_such("checkout.session", session))?;
        match cs["status"].as_str() {
            Some("open") => {
                cs["status"] = json!("expired");
                ch.save("checkout.session", &cs).await?;
                ch.emit("checkout.session.expired", &cs).await?;
            }
            Some("complete") => {
                return Err(conflict(
                    "checkout_session_complete",
                    "This Checkout Session is already complete.",
                ))
            }
            _ => {}
        }
        ch.commit(&cs, &self.wake).await?;
        parse(&cs)
    }

    /// Expires an open session now (the test helper; Stripe does it at `expires_at`).
    pub async fn expire_checkout(&self, app: &str, session: &str) -> Result<CheckoutSession> {
        self.expire(app, session, None).await
    }
}

#[async_trait]
impl Provider for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn create_customer(&self, call: &Call, c: &NewCustomer) -> Result<Customer> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed().await? {
            return parse(&r);
        }
        let cus = self
            .new_customer(
                &mut ch,
                c.email.as_deref(),
                c.name.as_deref(),
                &json!(c.metadata),
            )
            .await?;
        ch.commit(&cus, &self.wake).await?;
        parse(&cus)
    }

    async fn attach_payment_method(
        &self,
        call: &Call,
        customer: &str,
        payment_method: &str,
    ) -> Result<PaymentMethod> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed().await? {
            return parse(&r);
        }
        ch.load(customer)
            .await?
            .ok_or_else(|| no_such("customer", customer))?;
        let mut pm = match ch.load(payment_method).await? {
            Some(pm) => pm,
            None => {
                let card = cards::lookup(payment_method).map_err(|d| card_error(d, None))?;
                new_payment_method(&card, None)
            }
        };
        if let Some(d) = cards::lookup(pm[PRIVATE]["number"].as_str().unwrap_or_default())
            .ok()
            .and_then(|c| c.on_attach)
        {
            return Err(card_error(d, None));
        }
        pm["customer"] = json!(customer);
        ch.save("payment_method", &pm).await?;
        ch.emit("payment_method.attached", &pm).await?;
        ch.commit(&pm, &self.wake).await?;
        parse(&pm)
    }

    async fn detach_payment_method(&self, call: &Call, payment_method: &str) -> Result<()> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if ch.replayed().await?.is_some() {
            return Ok(());
        }
        let mut pm = ch
            .load(payment_method)
            .await?
            .ok_or_else(|| no_such("payment_method", payment_method))?;
        pm["customer"] = Value::Null;
        ch.save("payment_method", &pm).await?;
        ch.emit("payment_method.detached", &pm).await?;
        ch.commit(&pm, &self.wake).await?;
        Ok(())
    }

    async fn set_default_payment_method(
        &self,
        call: &Call,
        customer: &str,
        payment_method: &str,
    ) -> Result<()> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if ch.replayed().await?.is_some() {
            return Ok(());
        }
        let mut c = ch
            .load(customer)
            .await?
            .ok_or_else(|| no_such("customer", customer))?;
        c["invoice_settings"]["default_payment_method"] = json!(payment_method);
        ch.save("customer", &c).await?;
        ch.emit("customer.updated", &c).await?;
        ch.commit(&c, &self.wake).await?;
        Ok(())
    }

    async fn create_checkout_session(
        &self,
        call: &Call,
        s: &NewCheckout,
    ) -> Result<CheckoutSession> {
        let currency = s
            .line_items
            .first()
            .map(|l| l.currency.clone())
            .unwrap_or_else(|| "usd".into());
        let total: i64 = s
            .line_items
            .iter()
            .map(|l| l.unit_amount.saturating_mul(l.quantity))
            .sum();
        let cs_id = id("cs_test");
        let cs = shape(
            "checkout.session",
            json!({
                "id": cs_id,
                "object": "checkout.session",
                "mode": s.mode,
                "status": "open",
                "payment_status": "unpaid",
                "url": self.checkout_url(&call.app_id, &cs_id),
                "amount_subtotal": total,
                "amount_total": total,
                "currency": currency,
                "expires_at": s.expires_at,
                "customer": s.customer,
                "client_reference_id": s.client_reference_id,
                "metadata": s.metadata,
                "success_url": s.success_url,
                "cancel_url": s.cancel_url,
                "payment_intent": null,
                "payment_method_types": ["card"],
                "created": now(),
                "livemode": false,
                PRIVATE: {
                    "line_items": s.line_items.iter().map(|l| json!({
                        "name": l.name, "unit_amount": l.unit_amount, "quantity": l.quantity, "price": l.price,
                        "interval": l.recurring.as_ref().map(|r| r.0.clone()),
                        "interval_count": l.recurring.as_ref().map(|r| r.1),
                    })).collect::<Vec<_>>(),
                    "manual_capture": s.manual_capture,
                    "save_card": s.save_card,
                    "payment_intent_metadata": s.metadata,
                    "application_fee_amount": s.application_fee_amount,
                    "transfer_destination": s.transfer_destination,
                },
            }),
        );
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed_or_claim_with(&cs).await? {
            return parse(&r);
        }
        ch.save("checkout.session", &cs).await?;
        ch.commit(&cs, &self.wake).await?;
        parse(&cs)
    }

    async fn retrieve_checkout_session(&self, call: &Call, id: &str) -> Result<CheckoutSession> {
        let mut cs = self.stored(&call.app_id, id, "checkout.session").await?;
        // Retrieve expands the intent, as the Stripe provider asks for.
        if let Some(pi_id) = cs["payment_intent"].as_str().map(str::to_owned) {
            if let Some(pi) = store::get(self.db.reader(), &call.app_id, &pi_id).await? {
                cs["payment_intent"] = public(&from_rest(&pi).unwrap_or(Value::Null));
            }
        }
        parse(&cs)
    }

    async fn expire_checkout_session(&self, call: &Call, id: &str) -> Result<CheckoutSession> {
        self.expire(&call.app_id, id, Some(&call.idempotency_key))
            .await
    }

    async fn create_payment_intent(
        &self,
        call: &Call,
        p: &NewPaymentIntent,
    ) -> Result<PaymentIntent> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed().await? {
            return match r.get("error") {
                Some(_) => Err(card_error(
                    Decline {
                        code: "card_declined",
                        decline_code: None,
                        message: "Your card was declined.",
                    },
                    r.get("payment_intent"),
                )),
                None => parse(&r),
            };
        }
        let metadata = json!(p.metadata);
        let mut pi = self.new_intent(IntentSpec {
            amount: p.amount,
            currency: &p.currency,
            customer: p.customer.as_deref(),
            manual: p.manual_capture,
            save_card: p.save_card && p.payment_method.is_none(),
            metadata: &metadata,
            fee: p.application_fee_amount,
            destination: p.transfer_destination.as_deref(),
        });
        let Some(pm_id) = &p.payment_method else {
            ch.save("payment_intent", &pi).await?;
            ch.emit("payment_intent.created", &pi).await?;
            ch.commit(&pi, &self.wake).await?;
            return parse(&pi);
        };
        let pm = ch
            .load(pm_id)
            .await?
            .ok_or_else(|| no_such("payment_method", pm_id))?;
        if pm["customer"].as_str() != p.customer.as_deref() || p.customer.is_none() {
            return Err(ProviderError::Invalid {
                code: Some("resource_missing".into()),
                param: Some("payment_method".into()),
                message: "The payment method is not attached to this customer.".into(),
            });
        }
        let card = cards::lookup(pm[PRIVATE]["number"].as_str().unwrap_or_default());
        ch.emit("payment_intent.created", &pi).await?;
        // A saved card charged without its customer, whose bank asks for 3-D Secure:
        // the intent waits for the customer to authenticate (as localstripe answers it).
        if card.as_ref().is_ok_and(|c| c.needs_authentication(true)) {
            self.require_action(&mut ch, &mut pi, &pm).await?;
            ch.commit(&pi, &self.wake).await?;
            return parse(&pi);
        }
        let declined = self.attempt(&mut ch, &mut pi, card, Some(&pm)).await?;
        match declined {
            Some(d) => {
                // Stripe answers a declined off-session confirmation with a 402 that
                // carries the intent; a retry with the same key gets the same answer.
                let answer = json!({"error": {"code": d.code}, "payment_intent": public(&pi)});
                ch.commit(&answer, &self.wake).await?;
                Err(card_error(d, Some(&pi)))
            }
            None => {
                ch.commit(&pi, &self.wake).await?;
                parse(&pi)
            }
        }
    }

    async fn retrieve_payment_intent(&self, call: &Call, id: &str) -> Result<PaymentIntent> {
        parse(&self.stored(&call.app_id, id, "payment_intent").await?)
    }

    async fn capture_payment_intent(
        &self,
        call: &Call,
        id: &str,
        amount: Option<i64>,
    ) -> Result<PaymentIntent> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed().await? {
            return parse(&r);
        }
        let mut pi = ch
            .load(id)
            .await?
            .ok_or_else(|| no_such("payment_intent", id))?;
        if pi["status"] != "requires_capture" {
            return Err(conflict(
                "payment_intent_unexpected_state",
                format!(
                    "This PaymentIntent could not be captured because it has a status of {}.",
                    pi["status"].as_str().unwrap_or("?")
                ),
            ));
        }
        let capturable = pi["amount_capturable"].as_i64().unwrap_or(0);
        let amount = amount.unwrap_or(capturable);
        if amount <= 0 || amount > capturable {
            return Err(ProviderError::Invalid {
                code: Some("amount_too_large".into()),
                param: Some("amount_to_capture".into()),
                message: format!("The amount to capture must be between 1 and {capturable}."),
            });
        }
        pi["status"] = json!("succeeded");
        pi["amount_received"] = json!(amount);
        pi["amount_capturable"] = json!(0);
        ch.save("payment_intent", &pi).await?;
        if let Some(ch_id) = pi["latest_charge"].as_str().map(str::to_owned) {
            if let Some(mut charge) = ch.load(&ch_id).await? {
                charge["captured"] = json!(true);
                charge["amount_captured"] = json!(amount);
                ch.save("charge", &charge).await?;
                ch.emit("charge.captured", &charge).await?;
            }
        }
        ch.emit("payment_intent.succeeded", &pi).await?;
        ch.commit(&pi, &self.wake).await?;
        parse(&pi)
    }

    async fn cancel_payment_intent(&self, call: &Call, id: &str) -> Result<PaymentIntent> {
        let mut ch = Change::begin(self, &call.app_id, Some(&call.idempotency_key)).await?;
        if let Some(r) = ch.replayed().await? {
            return parse(&r);
        }
        let mut pi = ch
            .load(id)
            .await?
            .ok_or_else(|| no_such("payment_intent", id))?;
        match pi["status"].as_str() {
            Some(
                "requires_payment_method"
                | "requires_capture"
                | "requires_confirmation"
                | "requires_action",
            ) => {}
            Some("canceled") => {
                ch.commit(&pi, &self.wake).await?;
                return parse(&pi);
            }
            other => {
                return Err(conflict(
                    "payment_intent_unexpected_state",
                    format!(
                        "You cannot cancel this PaymentIntent because it has a status of {}.",
                        other.unwrap_or("?")
                    ),
                ))
            }
        }
        pi["status"] = json!("canceled");
        pi["amount_capturable"] = json!(0);
        pi["canceled_at"] = json!(now());
        pi["cancellation_reason"] = json!("requested_by_customer");
        ch.save("payment_intent", &pi).await?;
        ch.emit("payment_intent.canceled", &pi).await?;
        ch.commit(&pi, &self.wake).await?;
        parse(&pi)
    }

    async fn find_payment_intent(
        &self,
        call: &Call,
        q: &IntentLookup,
    ) -> Result<Option<PaymentIntent>> {
        let rows = store::list_kind(&self.db, &call.app_id, "payment_intent").await?;
        for raw in rows {
            let Ok(pi) = from_rest(&raw) else {
                continue;
            };
            if pi["metadata"][paybridge_core::stripe::event::META_PAYMENT] == q.payment.as_str() {
                return parse(&pi).map(Some);
            }
        }
        Ok(None)
    }

    async fn list_prices(&self, call: &Call) -> Result<Vec<Price>> {
        let rows = store::list_kind(&self.db, &call.app_id, "price").await?;
        Ok(rows
            .iter()
            .filter_map(|r| from_rest(r).ok())
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect())
    }

    async fn create_refund(&self, call: &Call, r: &NewRefund) -> Result<Refund> {
        self.refund(call, r).await
    }

    async fn retrieve_refund(&self, call: &Call, id: &str) -> Result<Refund> {
        self.get_refund(call, id).await
    }

    async fn create_subscription(&self, call: &Call, s: &NewSubscription) -> Result<Subscription> {
        self.subscribe(call, s).await
    }

    async fn retrieve_subscription(&self, call: &Call, id: &str) -> Result<Subscription> {
        parse(&self.stored(&call.app_id, id, "subscription").await?)
    }

    async fn cancel_subscription(
        &self,
        call: &Call,
        id: &str,
        at_period_end: bool,
    ) -> Result<Subscription> {
        self.cancel_sub(call, id, at_period_end).await
    }

    async fn create_account(&self, call: &Call, a: &NewAccount) -> Result<Account> {
        self.new_account(call, a).await
    }

    async fn retrieve_account(&self, call: &Call, id: &str) -> Result<Account> {
        self.get_account(call, id).await
    }

    async fn delete_account(&self, call: &Call, id: &str) -> Result<()> {
        self.remove_account(call, id).await
    }

    async fn list_persons(&self, call: &Call, account: &str) -> Result<Vec<Value>> {
        self.persons(call, account).await
    }

    async fn create_transfer(&self, call: &Call, t: &NewTransfer) -> Result<Transfer> {
        self.transfer(call, t).await
    }

    async fn list_payout_transactions(&self, call: &Call, payout: &str) -> Result<Vec<Value>> {
        self.payout_transactions(call, payout).await
    }

    async fn list_webhook_endpoints(&self, call: &Call) -> Result<Vec<Value>> {
        Ok(self.webhook_endpoints(call))
    }

    async fn create_portal_session(
        &self,
        call: &Call,
        customer: &str,
        return_url: &str,
    ) -> Result<paybridge_core::stripe::objects::PortalSession> {
        self.create_portal(call, customer, return_url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_does_not_carry_the_databases_words() {
        let e = ProviderError::from(StoreError::Config(
            "UNIQUE constraint failed: sandbox_objects.app_id".into(),
        ));
        let ProviderError::Unavailable { message } = e else {
            panic!("a storage failure is an outage: {e:?}");
        };
        assert!(!message.contains("sandbox_objects"), "{message}");
        assert!(message.contains("server log"), "{message}");
    }
}
