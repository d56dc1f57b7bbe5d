//! Zero-touch Stripe, part two: no event is ever missed. A catch-up round reads a
//! Stripe app's `GET /v1/events` created since where the last round stood (paginated;
//! Stripe keeps 30 days), keeps the types paybridge reads, and feeds each event it does
//! not have yet through the webhook ingest path (`Ingestor`), so an event that arrives
//! both ways is stored and applied once: whichever comes second is a duplicate.
//!
//! Every type is listed and filtered here, rather than with Stripe's `types` filter: it
//! takes at most 20 names and paybridge reads more, so it would cost two lists per
//! round; and fakes (localstripe) do not know the filter.

use paybridge_core::stripe::event::{self, HANDLED};
use paybridge_core::ProviderKind;
use paybridge_provider::{Call, Provider};
use paybridge_store::{config, event_sync, now, stripe_endpoints};
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service::provider::provider_error;
use crate::service::webhooks::Ingested;
use crate::state::AppState;

/// Each round reads again this far behind its cursor: an event may become visible in
/// the list a moment after a newer one. What was already read is known, and skipped.
pub const OVERLAP_SECS: i64 = 60;
/// A first round, for an app that never had one, reaches back this far.
pub const FIRST_LOOK_BACK_SECS: i64 = 3600;
/// At most this many pages of 100 in one round (a round that stops here resumes).
const MAX_PAGES: usize = 500;

#[derive(Debug, Default, Clone, Serialize)]
pub struct SyncReport {
    pub app: String,
    /// Unix seconds the round read from.
    pub since: i64,
    /// Events listed by Stripe.
    pub read: usize,
    /// Of those, the types paybridge reads.
    pub relevant: usize,
    /// Of those, events paybridge did not have: ingested now.
    pub new: usize,
    /// Of the new ones, those that arrived by webhook while the round ran.
    pub duplicates: usize,
    /// The newest event time read; the next round starts here.
    pub cursor: i64,
    /// The page limit stopped the round before Stripe's list ended.
    pub truncated: bool,
}

/// Progress of a round: `(phase, done, total)` with phase `reading` (total unknown,
/// 0) or `applying`.
pub type Progress<'a> = &'a mut (dyn FnMut(&'static str, usize, usize) + Send);

/// One catch-up round for one app. `since` (unix seconds) reads from there instead of
/// the app's cursor (`paybridge events sync --since`); the cursor never moves back.
pub async fn sync_app(
    state: &AppState,
    app: &str,
    since: Option<i64>,
    progress: Progress<'_>,
) -> ApiResult<SyncReport> {
    let cfg = config::get(&state.db, app).await?.ok_or_else(not_stripe)?;
    if ProviderKind::parse(&cfg.provider) != Some(ProviderKind::Stripe) {
        return Err(not_stripe());
    }
    let key = super::config::provider_secret_key(state, &cfg)?.ok_or_else(not_stripe)?;
    let live = state.webhook_keys.get(state, app).await?.live;
    let start = match since {
        Some(s) => s,
        None => match event_sync::get(&state.db, app).await? {
            Some(row) => row.cursor - OVERLAP_SECS,
            None => event_sync::newest_event(&state.db, app)
                .await?
                .map_or(now() - FIRST_LOOK_BACK_SECS, |t| t - OVERLAP_SECS),
        },
    };
    let round = read_and_apply(state, app, key, live, start, progress).await;
    match round {
        Ok(report) => {
            event_sync::succeeded(
                &state.db,
                app,
                report.cursor,
                None,
                report.read as i64,
                (report.new - report.duplicates) as i64,
                now(),
            )
            .await?;
            state
                .metrics
                .event_sync_events(report.new - report.duplicates, report.relevant);
            Ok(report)
        }
        Err(e) => {
            let _ =
                event_sync::failed(&state.db, app, start + OVERLAP_SECS, &e.message, now()).await;
            state.metrics.event_sync_failed();
            Err(e)
        }
    }
}

async fn read_and_apply(
    state: &AppState,
    app: &str,
    key: secrecy::SecretString,
    live: bool,
    start: i64,
    progress: Progress<'_>,
) -> ApiResult<SyncReport> {
    let call = Call::new(app, Some(key), &format!("{app}_events"));
    let mut report = SyncReport {
        app: app.to_owned(),
        since: start,
        cursor: start.max(0),
        ..Default::default()
    };
    let mut listed: Vec<(i64, String, Value)> = Vec::new();
    let mut after: Option<String> = None;
    for page_no in 0.. {
        if page_no == MAX_PAGES {
            report.truncated = true;
            break;
        }
        let page = state
            .stripe
            .list_events(&call, start, after.as_deref())
            .await
            .map_err(provider_error)?;
        let last = page
            .data
            .last()
            .and_then(|v| v["id"].as_str())
            .map(str::to_owned);
        for v in page.data {
            report.read += 1;
            let created = v["created"].as_i64().unwrap_or(0);
            report.cursor = report.cursor.max(created);
            let kind = v["type"].as_str().unwrap_or("");
            // A fake may ignore the `created` filter; Stripe's list never needs this.
            if created < start
                || !HANDLED.contains(&kind)
                || v["livemode"].as_bool().unwrap_or(false) != live
            {
                continue;
            }
            if let Some(id) = v["id"].as_str() {
                listed.push((created, id.to_owned(), v.clone()));
            }
        }
        progress("reading", report.read, 0);
        // A page that does not move the cursor forward ends the list as surely as
        // `has_more: false`: a server that ignores `starting_after` cannot loop us.
        if !page.has_more || last.is_none() || last == after {
            break;
        }
        after = last;
    }
    // Oldest first, as they happened; one copy of each.
    listed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    listed.dedup_by(|a, b| a.1 == b.1);
    report.relevant = listed.len();
    let ids: Vec<String> = listed.iter().map(|(_, id, _)| id.clone()).collect();
    let known: std::collections::HashSet<String> = event_sync::known(&state.db, app, &ids)
        .await?
        .into_iter()
        .collect();
    let fresh: Vec<(i64, String, Value)> = listed
        .into_iter()
        .filter(|(_, id, _)| !known.contains(id))
        .collect();
    let total = fresh.len();
    for (i, (_, id, v)) in fresh.into_iter().enumerate() {
        let raw = v.to_string();
        let ev = match event::parse(raw.as_bytes()) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(app, event = %id, error = %e, "an event from Stripe's list does not parse; skipped");
                continue;
            }
        };
        // The webhook's own path: stored once per (app, event id), applied once.
        match state
            .ingestor
            .ingest(app, ev, raw)
            .await
            .map_err(ApiError::internal)?
        {
            Ingested::Applied(_) => report.new += 1,
            Ingested::Duplicate => {
                report.new += 1;
                report.duplicates += 1;
            }
        }
        progress("applying", i + 1, total);
    }
    Ok(report)
}

fn not_stripe() -> ApiError {
    ApiError::conflict(
        "provider_not_stripe",
        "This app is not on the stripe provider with a secret key: there is no event list to read",
    )
}

/// One round for every Stripe app, in turn; a failing app does not stop the others.
pub async fn sync_all(state: &AppState) -> Vec<Result<SyncReport, (String, ApiError)>> {
    let apps = match stripe_endpoints::stripe_apps(&state.db).await {
        Ok(a) => a,
        Err(e) => return vec![Err((String::new(), e.into()))],
    };
    let mut out = Vec::with_capacity(apps.len());
    for (app, _, _) in apps {
        let r = sync_app(state, &app, None, &mut |_, _, _| {}).await;
        out.push(r.map_err(|e| (app, e)));
    }
    out
}

/// How far behind Stripe the catch-up may be: the oldest last complete round among
/// Stripe apps, in seconds (an app never read counts from now, as 0, until its first round).
pub async fn lag_seconds(state: &AppState) -> ApiResult<i64> {
    let apps = stripe_endpoints::stripe_apps(&state.db).await?;
    let rows = event_sync::all(&state.db).await?;
    let t = now();
    Ok(apps
        .iter()
        .filter_map(|(app, _, _)| rows.iter().find(|r| &r.app_id == app))
        .map(|r| t - r.last_success.unwrap_or(t))
        .max()
        .unwrap_or(0)
        .max(0))
}
