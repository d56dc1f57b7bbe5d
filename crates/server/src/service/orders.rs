//! Orders: line items priced by the server from the catalog (a client never sets a
//! price; only a server key may add ad hoc lines), totals computed with checked
//! arithmetic in the order's currency.

use std::collections::BTreeMap;

use paybridge_core::catalog::{self, MAX_UNIT_AMOUNT};
use paybridge_core::ids::OrderId;
use paybridge_core::money::MAX_AMOUNT;
use paybridge_core::vault::MasterKey;
use paybridge_core::{Currency, Invalid, Money};
use paybridge_store::orders::OrderRow;
use paybridge_store::products::{self, ProductRow};
use paybridge_store::{customers, now, Conn, Db, StoreError};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{LineItemView, RecurringView};
use crate::error::{ApiError, ApiResult};

/// One requested line: a catalog product (by our id, or by its provider `price`), or
/// (server keys only) an ad hoc `name` and `unit_amount`.
#[derive(Deserialize, ToSchema, Clone, Debug)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct LineItemInput {
    /// A product id (`product_…`).
    pub product: Option<String>,
    /// A provider price id (`price_…`) of a product in the catalog.
    pub price: Option<String>,
    /// Ad hoc line: its name (server keys only).
    pub name: Option<String>,
    /// Ad hoc line: its unit price in minor units (server keys only).
    pub unit_amount: Option<i64>,
    /// Default 1.
    pub quantity: Option<i64>,
}

crate::http::extract::object_only!(LineItemInput);

pub const MAX_LINE_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 10_000;

pub struct OrderSpec<'a> {
    pub currency: Option<&'a str>,
    pub items: &'a [LineItemInput],
    pub customer: Option<&'a str>,
    pub metadata: BTreeMap<String, String>,
    pub allow_ad_hoc: bool,
    /// `payment` or `subscription`: which kind of product each line must be.
    pub mode: &'a str,
}

async fn product_for(
    db: &Db,
    app: &str,
    item: &LineItemInput,
    param: &str,
) -> ApiResult<ProductRow> {
    let found = match (&item.product, &item.price) {
        (Some(id), None) => products::get(db, app, id).await,
        (None, Some(price)) => products::by_provider_price(db, app, price).await,
        _ => {
            return Err(Invalid::new(
                param,
                "parameter_invalid",
                "give either `product` or `price`",
            )
            .into());
        }
    };
    let p = found.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("product").with_param(param),
        other => other.into(),
    })?;
    if p.active != 1 {
        return Err(Invalid::new(
            param,
            "product_inactive",
            format!("product {} is not active", p.id),
        )
        .into());
    }
    Ok(p)
}

/// Prices each line and totals the order. Nothing is stored.
pub async fn build(db: &Db, app: &str, spec: &OrderSpec<'_>) -> ApiResult<OrderRow> {
    if spec.items.is_empty() || spec.items.len() > MAX_LINE_ITEMS {
        return Err(Invalid::new(
            "line_items",
            "parameter_invalid",
            format!("give 1 to {MAX_LINE_ITEMS} line items"),
        )
        .into());
    }
    if let Some(c) = spec.customer {
        customers::get(db.reader(), app, c)
            .await
            .map_err(|_| ApiError::not_found("customer").with_param("customer"))?;
    }
    let mut currency = spec.currency.map(Currency::parse).transpose()?;
    let mut lines = Vec::with_capacity(spec.items.len());
    for (i, item) in spec.items.iter().enumerate() {
        let param = format!("line_items[{i}]");
        let quantity = item.quantity.unwrap_or(1);
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(Invalid::new(
                format!("{param}.quantity"),
                "parameter_invalid",
                format!("quantity must be 1 to {MAX_QUANTITY}"),
            )
            .into());
        }
        let line = if item.product.is_some() || item.price.is_some() {
            if item.name.is_some() || item.unit_amount.is_some() {
                return Err(Invalid::new(
                    &param,
                    "parameter_invalid",
                    "a catalog line takes no `name` or `unit_amount`",
                )
                .into());
            }
            let p = product_for(db, app, item, &param).await?;
            let recurring = p.recurring_interval.clone().map(|interval| RecurringView {
                interval,
                interval_count: p.recurring_interval_count.unwrap_or(1),
            });
            if (spec.mode == "subscription") != recurring.is_some() {
                let need = if spec.mode == "subscription" {
                    "a recurring product"
                } else {
                    "a one-time product (this one is a subscription: use mode `subscription`)"
                };
                return Err(Invalid::new(
                    &param,
                    "parameter_invalid",
                    format!("mode `{}` needs {need}", spec.mode),
                )
                .into());
            }
            let c = Currency::parse(&p.currency)?;
            LineDraft {
                product: Some(p.id),
                name: p.name,
                unit_amount: p.unit_amount,
                currency: c,
                quantity,
                price: p.provider_price_id,
                recurring,
            }
        } else {
            if !spec.allow_ad_hoc {
                return Err(Invalid::new(
                    format!("{param}.product"),
                    "parameter_missing",
                    "a line must name a catalog `product` or `price`: only a server key may set a price",
                )
                .into());
            }
            let name = catalog::validate_name(item.name.as_deref().unwrap_or(""))
                .map_err(|e| Invalid::new(format!("{param}.name"), e.code, e.message))?;
            let amount = item
                .unit_amount
                .ok_or_else(|| Invalid::missing(&format!("{param}.unit_amount")))?;
            let c = currency.ok_or_else(|| Invalid::missing("currency"))?;
            catalog::validate_unit_amount(amount, c)
                .map_err(|e| Invalid::new(format!("{param}.unit_amount"), e.code, e.message))?;
            LineDraft {
                product: None,
                name,
                unit_amount: amount,
                currency: c,
                quantity,
                price: None,
                recurring: None,
            }
        };
        match currency {
            None => currency = Some(line.currency),
            Some(c) if c != line.currency => {
                return Err(Invalid::new(
                    &param,
                    "currency_mismatch",
                    format!(
                        "this line is in {}, the order in {c}: one order has one currency",
                        line.currency
                    ),
                )
                .into())
            }
            Some(_) => {}
        }
        lines.push(line);
    }
    let currency = currency.ok_or_else(|| Invalid::missing("currency"))?;
    let mut total = Money::zero(currency);
    let mut views = Vec::with_capacity(lines.len());
    for l in lines {
        let amount = Money::new(l.unit_amount, currency)
            .and_then(|m| m.checked_mul(l.quantity))
            .and_then(|m| total.checked_add(m).map(|t| (m, t)));
        let (line_amount, new_total) = amount.map_err(|_| too_large())?;
        total = new_total;
        views.push(LineItemView {
            product: l.product,
            name: l.name,
            unit_amount: l.unit_amount,
            quantity: l.quantity,
            amount: line_amount.amount(),
            provider_price_id: l.price,
            recurring: l.recurring,
        });
    }
    if total.amount() > MAX_AMOUNT {
        return Err(too_large());
    }
    catalog::validate_metadata(&spec.metadata)?;
    let id = OrderId::generate();
    let ts = now();
    Ok(OrderRow {
        // Derived from the master key when asked for (`client_secret`), never stored.
        client_secret: String::new(),
        id: id.into_string(),
        app_id: app.to_owned(),
        customer_id: spec.customer.map(str::to_owned),
        currency: currency.code().to_owned(),
        amount_total: total.amount(),
        amount_paid: 0,
        amount_refunded: 0,
        status: "open".into(),
        line_items: serde_json::to_string(&views).unwrap_or_else(|_| "[]".into()),
        metadata: serde_json::to_string(&spec.metadata).unwrap_or_else(|_| "{}".into()),
        subscription_id: None,
        provider_invoice_id: None,
        created: ts,
        updated: ts,
    })
}

struct LineDraft {
    product: Option<String>,
    name: String,
    unit_amount: i64,
    currency: Currency,
    quantity: i64,
    price: Option<String>,
    recurring: Option<RecurringView>,
}

fn too_large() -> ApiError {
    Invalid::new(
        "line_items",
        "amount_too_large",
        format!("the order's total exceeds {MAX_UNIT_AMOUNT} minor units, Stripe's largest charge"),
    )
    .into()
}

/// An order's client secret: what a browser presents to read or pay the order with a
/// publishable key. It is derived from the master key (`MasterKey::derive`), so the
/// database holds nothing that opens the order.
pub fn client_secret(vault: &MasterKey, o: &OrderRow) -> String {
    format!(
        "{}_secret_{}",
        o.id,
        vault.derive(&format!("{}/{}/client_secret", o.app_id, o.id))
    )
}

/// Whether `given` is the order's client secret, compared in constant time. Orders
/// stored before secrets were derived kept theirs in the row; that one still counts.
pub fn proves(vault: &MasterKey, o: &OrderRow, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let derived = client_secret(vault, o);
    bool::from(given.as_bytes().ct_eq(derived.as_bytes()))
        || (!o.client_secret.is_empty()
            && bool::from(given.as_bytes().ct_eq(o.client_secret.as_bytes())))
}

pub fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// What an order can still be paid: its total, less what succeeded payments brought,
/// less every payment that holds it (`paybridge_core::payment::hold`): money moving
/// (authorised, settling, or a direct charge whose outcome is not known yet — the
/// reconciler settles those), and money promised to a way to pay that has not taken it
/// yet: an open hosted page (or one complete at the provider whose payment is not
/// booked yet), an intent awaiting its customer. A new way to pay supersedes the
/// promised ones at the provider first (`payments::supersede`), which frees them.
pub async fn outstanding(conn: &mut Conn, order: &OrderRow) -> Result<i64, StoreError> {
    let held = holds(conn, order).await?;
    let all: i64 = held.iter().map(|(_, a)| a).sum();
    Ok((order.amount_total - order.amount_paid - all).max(0))
}

/// The payments of an order that hold it, with how.
pub async fn holds(
    conn: &mut Conn,
    order: &OrderRow,
) -> Result<Vec<(paybridge_core::payment::Hold, i64)>, StoreError> {
    Ok(held_payments(conn, order)
        .await?
        .into_iter()
        .map(|(h, p)| (h, p.amount))
        .collect())
}

/// The payments of an order that hold it.
pub async fn held_payments(
    conn: &mut Conn,
    order: &OrderRow,
) -> Result<
    Vec<(
        paybridge_core::payment::Hold,
        paybridge_store::payments::PaymentRow,
    )>,
    StoreError,
> {
    use paybridge_core::payment::{hold, Hold, Lifecycle};
    let ps = paybridge_store::payments::of_order(&mut *conn, &order.app_id, &order.id).await?;
    let open =
        paybridge_store::checkouts::open_of_order(&mut *conn, &order.app_id, &order.id).await?;
    Ok(ps
        .into_iter()
        .filter_map(|p| {
            let lifecycle = Lifecycle::parse(&p.lifecycle).unwrap_or(Lifecycle::Initiated);
            let checkout_open = open.iter().any(|c| c.payment_id == p.id);
            match hold(
                &p.method,
                lifecycle,
                p.provider_payment_intent.is_some(),
                checkout_open,
            ) {
                Hold::None => None,
                h => Some((h, p)),
            }
        })
        .collect())
}
