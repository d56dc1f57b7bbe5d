//! `GET /v1/payments/export`: the payments a list would show, every page of them, as a
//! CSV file for a spreadsheet. Admin keys only (it is the whole ledger at once). The
//! body is streamed a page of 100 rows at a time, so an export of a large shop holds
//! one page in memory, not the file.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use paybridge_core::keys::{Permission, Role};
use paybridge_core::money::Currency;
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::ListParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Caller, Query};
use crate::http::payments::{filter_of, PaymentQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_payments))
}

const HEADER: &str = "id,created,status,amount,currency,amount_captured,amount_refunded,\
method,customer,customer_email,order,payment_intent,failure_code,decline_code,card_brand,card_last4\r\n";

/// Where a payments export has got to.
struct Cursor {
    state: AppState,
    app: String,
    q: PaymentQuery,
    after: Option<String>,
    done: bool,
    emails: HashMap<String, Option<String>>,
}

impl Cursor {
    /// The CSV rows of the next page. They are read after the answer began, so outside
    /// `answer_durably`: each page waits here until what it read is durable.
    async fn next_page(&mut self) -> Result<Bytes, paybridge_store::StoreError> {
        // Checked when the export began: it holds.
        let Ok(filter) = filter_of(&self.q) else {
            self.done = true;
            return Ok(Bytes::new());
        };
        let params = ListParams {
            limit: 100,
            starting_after: self.after.clone(),
        };
        let page = payments::list(&self.state.db, &self.app, &filter, &params).await?;
        self.done = !page.has_more;
        self.after = page.data.last().map(|p| p.id.clone());
        let mut out = String::new();
        for p in &page.data {
            let email = match &p.customer_id {
                Some(id) => {
                    if !self.emails.contains_key(id) {
                        let e =
                            paybridge_store::customers::get(self.state.db.reader(), &self.app, id)
                                .await
                                .ok()
                                .and_then(|c| c.email);
                        self.emails.insert(id.clone(), e);
                    }
                    self.emails.get(id).cloned().flatten()
                }
                None => None,
            };
            out.push_str(&row(p, email.as_deref()));
        }
        self.state.db.durable().await?;
        Ok(Bytes::from(out))
    }
}

/// Every payment matching the same filters as `GET /v1/payments` (no `limit` or
/// `starting_after`: the file has them all), newest first, as `text/csv`. Amounts are
/// decimal major units of the row's currency (`25.00` for 2500 usd); times are UTC;
/// the card is its brand and last 4 digits, as the provider reported them.
#[utoipa::path(get, path = "/v1/payments/export", tag = "payments", params(PaymentQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = "4XX", body = ErrorBody)))]
async fn export_payments(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PaymentQuery>,
) -> ApiResult<Response> {
    let app = caller.app(Permission::PaymentsRead)?.as_str().to_owned();
    if caller.0.role != Role::Admin {
        return Err(ApiError::forbidden(
            "The payments export needs an admin key",
        ));
    }
    for (param, given) in [
        ("limit", q.limit.is_some()),
        ("starting_after", q.starting_after.is_some()),
    ] {
        if given {
            return Err(paybridge_core::Invalid::new(
                param,
                "parameter_unused",
                "the export has every matching payment; it takes no paging",
            )
            .into());
        }
    }
    filter_of(&q)?;
    let start = Cursor {
        state,
        app,
        q,
        after: None,
        done: false,
        emails: HashMap::new(),
    };
    let head = futures::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(HEADER.as_bytes()))
    });
    let rows = futures::stream::unfold(start, |mut c| async move {
        if c.done {
            return None;
        }
        match c.next_page().await {
            Ok(rows) => Some((Ok(rows), c)),
            Err(e) => {
                // The status line is sent; a broken file is what the client sees.
                tracing::error!(error = %e, "payments export failed");
                Some((
                    Err(std::io::Error::other("export failed")),
                    Cursor { done: true, ..c },
                ))
            }
        }
    });
    let mut r = Body::from_stream(futures::StreamExt::chain(head, rows)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"payments.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

fn row(p: &PaymentRow, email: Option<&str>) -> String {
    let fields = [
        p.id.clone(),
        utc(p.created),
        p.status.clone(),
        major(p.amount, &p.currency),
        p.currency.clone(),
        major(p.amount_captured, &p.currency),
        major(p.amount_refunded, &p.currency),
        p.method.clone(),
        p.customer_id.clone().unwrap_or_default(),
        email.unwrap_or_default().to_owned(),
        p.order_id.clone(),
        p.provider_payment_intent.clone().unwrap_or_default(),
        p.failure_code.clone().unwrap_or_default(),
        p.decline_code.clone().unwrap_or_default(),
        p.card_brand.clone().unwrap_or_default(),
        p.card_last4.clone().unwrap_or_default(),
    ];
    let mut line = fields.iter().map(|f| cell(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// One CSV cell (RFC 4180 quoting). A text that a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@` first) gets a leading `'`: an email is the customer's to choose.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `2500, "usd"` → `25.00`; `500, "jpy"` → `500`.
fn major(amount: i64, currency: &str) -> String {
    let exp = Currency::parse(currency).map(|c| c.exponent()).unwrap_or(2);
    if exp == 0 {
        return amount.to_string();
    }
    let unit = 10i64.pow(exp);
    let sign = if amount < 0 { "-" } else { "" };
    let a = amount.unsigned_abs();
    let unit = unit as u64;
    format!(
        "{sign}{}.{:0width$}",
        a / unit,
        a % unit,
        width = exp as usize
    )
}

/// `2026-12-04T05:07:10Z`.
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = paybridge_core::civil::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_amounts_and_times() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(cell("-1,2"), "\"'-1,2\"");
        assert_eq!(major(2500, "usd"), "25.00");
        assert_eq!(major(5, "usd"), "0.05");
        assert_eq!(major(500, "jpy"), "500");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_764_824_830), "2025-12-04T05:07:10Z");
    }
}
