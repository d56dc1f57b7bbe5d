//! `GET /v1/reports/payments`: payments per day (count, success rate, volume per
//! currency), what the dashboard's charts draw.

use std::collections::BTreeMap;

use axum::extract::State;
use paybridge_core::keys::Permission;
use paybridge_store::{now, payments};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Caller, Query};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(payments_report))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// How many days back, today included: 1 to 366 (default 30).
    pub days: Option<i64>,
}

/// One day (UTC) of payments.
#[derive(Serialize, ToSchema, Debug, PartialEq)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Payments created that day.
    pub payments: i64,
    /// Of those, how many took money (succeeded, later refunded or disputed included).
    pub succeeded: i64,
    /// Of those, how many failed: declined or refused by the provider.
    pub failed: i64,
    /// Of those, how many are still open: a checkout the customer has not finished, an
    /// authorisation not yet captured, a payment processing.
    pub open: i64,
    /// Of those, how many were abandoned: checkouts that expired, payments canceled.
    /// `succeeded + failed + open + abandoned = payments`.
    pub abandoned: i64,
    /// `succeeded / (succeeded + failed)`: of the payments the customer completed, how
    /// many took money. An abandoned checkout is not a decline. None when no payment
    /// was completed.
    pub success_rate: Option<f64>,
    /// Captured, per currency, in minor units.
    pub volume: BTreeMap<String, i64>,
    /// Refunded, per currency, in minor units.
    pub refunded: BTreeMap<String, i64>,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentsReport {
    /// Always `report`.
    pub object: &'static str,
    pub days: i64,
    /// Oldest first, every day present (zero when nothing happened).
    pub data: Vec<Day>,
}

/// Payments per day for the last `days` days (admin, server).
#[utoipa::path(get, path = "/v1/reports/payments", tag = "payments", params(ReportQuery),
    security(("bearer" = [])),
    responses((status = 200, body = PaymentsReport), (status = "4XX", body = ErrorBody)))]
async fn payments_report(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ReportQuery>,
) -> ApiResult<axum::Json<PaymentsReport>> {
    let app = caller.app(Permission::PaymentsRead)?;
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(
            ApiError::bad_request("parameter_invalid", "days must be from 1 to 366")
                .with_param("days"),
        );
    }
    let today = now().div_euclid(86_400);
    let first = today - days + 1;
    let rows = payments::daily(&state.db, app.as_str(), first * 86_400).await?;
    Ok(axum::Json(PaymentsReport {
        object: "report",
        days,
        data: tally(first, today, &rows),
    }))
}

fn tally(first: i64, last: i64, rows: &[payments::DailyRow]) -> Vec<Day> {
    let mut out: Vec<Day> = (first..=last)
        .map(|d| Day {
            date: date(d),
            payments: 0,
            succeeded: 0,
            failed: 0,
            open: 0,
            abandoned: 0,
            success_rate: None,
            volume: BTreeMap::new(),
            refunded: BTreeMap::new(),
        })
        .collect();
    for r in rows {
        let Some(day) = out.get_mut((r.day - first) as usize) else {
            continue;
        };
        day.payments += r.count;
        match r.status.as_str() {
            "succeeded" | "partially_refunded" | "refunded" | "disputed" => {
                day.succeeded += r.count
            }
            "failed" => day.failed += r.count,
            "canceled" | "expired" => day.abandoned += r.count,
            _ => day.open += r.count,
        }
        if r.captured > 0 {
            *day.volume.entry(r.currency.clone()).or_default() += r.captured;
        }
        if r.refunded > 0 {
            *day.refunded.entry(r.currency.clone()).or_default() += r.refunded;
        }
    }
    for d in &mut out {
        let settled = d.succeeded + d.failed;
        d.success_rate = (settled > 0).then(|| d.succeeded as f64 / settled as f64);
    }
    out
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn date(days: i64) -> String {
    let (y, m, d) = paybridge_core::civil::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: i64, status: &str, count: i64, captured: i64) -> payments::DailyRow {
        payments::DailyRow {
            day,
            status: status.into(),
            currency: "usd".into(),
            count,
            captured,
            refunded: 0,
        }
    }

    #[test]
    fn dates_and_rates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_780), "2026-11-23");
        assert_eq!(date(11_016), "2000-02-29");
        let days = tally(
            10,
            12,
            &[
                row(10, "succeeded", 3, 3000),
                row(10, "failed", 1, 0),
                row(12, "pending", 2, 0),
            ],
        );
        assert_eq!(days.len(), 3);
        assert_eq!(days[0].success_rate, Some(0.75));
        assert_eq!(days[0].volume["usd"], 3000);
        assert_eq!(days[1].payments, 0);
        assert_eq!(
            days[2].success_rate, None,
            "pending payments are not settled"
        );
        assert_eq!(days[2].open, 2);
    }

    /// An abandoned checkout is neither a success nor a decline, and every payment is
    /// counted once: the figures add up.
    #[test]
    fn abandoned_checkouts_are_not_declines() {
        let days = tally(
            10,
            10,
            &[
                row(10, "succeeded", 1, 1000),
                row(10, "refunded", 1, 1000),
                row(10, "failed", 1, 0),
                row(10, "expired", 3, 0),
                row(10, "canceled", 1, 0),
                row(10, "pending", 2, 0),
                row(10, "requires_capture", 1, 0),
            ],
        );
        let d = &days[0];
        assert_eq!((d.succeeded, d.failed, d.abandoned, d.open), (2, 1, 4, 3));
        assert_eq!(d.succeeded + d.failed + d.abandoned + d.open, d.payments);
        assert_eq!(d.success_rate, Some(2.0 / 3.0));
    }
}
