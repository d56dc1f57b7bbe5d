//! Live status as server-sent events, and the customer's log.
//!
//! A stream first replays what the client missed — after its `Last-Event-ID` (header,
//! or `last_event_id` in the query), or for an order stream the order's whole history —
//! from the table, then follows the node's [`Hub`](crate::hub::Hub). Each SSE message
//! is one event: `id:` is the event id, `data:` the event as `GET /v1/events` shows
//! it. The replay stops at the hub's published mark and live events at or below it are
//! skipped, so nothing is lost or repeated between the two. The mark is taken once the
//! hub follows the table: a new node's hub starts at its first settled horizon, which
//! a transaction running in the database holds back, and a stream opened before then
//! is answered only then (a mark taken earlier was 0, and the stream never got what
//! was committed before the hub's start). Comments keep idle
//! connections alive (every 15 s by default); a stream ends when the server shuts down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use paybridge_core::keys::Permission;
use paybridge_store::events::{self, EventRow, Filter};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Caller, Path, Query};
use crate::http::limits::ClientAddr;
use crate::http::list::{to_params, List};
use crate::http::orders::readable_order;
use crate::service::views::EventView;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(event_stream))
        .routes(routes!(order_stream))
        .routes(routes!(customer_events))
}

const REPLAY_PAGE: i64 = 200;

/// The event streams open on this node, by key (a publishable key: by key and client
/// address, since every storefront visitor holds it). A stream past
/// `max_streams_per_key` is refused with a 429, so one key cannot hold the node's
/// connections open.
#[derive(Default, Clone)]
pub struct OpenStreams(Arc<Mutex<HashMap<String, usize>>>);

/// One open stream's place; the place is freed when the stream ends or its client
/// leaves (the response body, which holds this, is dropped).
pub struct StreamSlot {
    streams: OpenStreams,
    owner: String,
}

impl OpenStreams {
    fn open(&self, owner: String, max: usize) -> Option<StreamSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(owner.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            streams: self.clone(),
            owner,
        })
    }

    /// Streams open now, over all keys.
    pub fn total(&self) -> usize {
        let open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        open.values().sum()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.owner);
            }
        }
    }
}

/// Takes a stream's place for the caller, or refuses with a 429.
fn stream_slot(state: &AppState, caller: &Caller, addr: ClientAddr) -> ApiResult<StreamSlot> {
    let p = &caller.0;
    let key = p.key_id.as_deref().unwrap_or("root");
    let owner = match p.role {
        paybridge_core::keys::Role::Publishable => format!("{key}/{}", addr.0),
        _ => key.to_owned(),
    };
    let max = state.settings.max_streams_per_key;
    state.streams.open(owner, max).ok_or_else(|| {
        state
            .metrics
            .rate_limited
            .get_or_create(&crate::metrics::RateLimitLabels { class: "streams" })
            .inc();
        let mut e = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            crate::error::ErrorType::RateLimitError,
            "too_many_streams",
            format!(
                "This key already has {max} event streams open; close one before opening another"
            ),
        );
        e.retry_after = Some(5);
        e
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this event (what the `Last-Event-ID` header does).
    pub last_event_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderStreamQuery {
    /// The order's client secret (with a publishable key).
    pub client_secret: Option<String>,
    /// Resume after this event (what the `Last-Event-ID` header does).
    pub last_event_id: Option<String>,
}

/// Every event of the app as it happens (admin, server). Without `Last-Event-ID` it
/// starts from now; with it, it first sends what came after that event.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(StreamQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "server-sent events"),
        (status = 429, body = ErrorBody, description = "Too many streams open for this key, or too many requests",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = "4XX", body = ErrorBody)))]
async fn event_stream(
    State(state): State<AppState>,
    caller: Caller,
    addr: ClientAddr,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let app = caller.app(Permission::EventsRead)?.as_str().to_owned();
    let slot = stream_slot(&state, &caller, addr)?;
    let resume = resume_point(&state, &app, &headers, q.last_event_id).await?;
    let live = state.hub.subscribe();
    let upto = mark(&state).await;
    let cursor = resume.unwrap_or(upto);
    Ok(sse(
        state,
        live,
        Follow { app, order: None },
        cursor,
        upto,
        slot,
    ))
}

/// One order's events: its history, then each change as it happens (a publishable
/// key with the order's `client_secret`, or a server key). With `Last-Event-ID` it
/// sends only what came after that event.
#[utoipa::path(get, path = "/v1/orders/{id}/stream", tag = "orders",
    params(("id" = String, Path), OrderStreamQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "server-sent events"),
        (status = 429, body = ErrorBody, description = "Too many streams open for this key, or too many requests",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = "4XX", body = ErrorBody)))]
async fn order_stream(
    State(state): State<AppState>,
    caller: Caller,
    addr: ClientAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<OrderStreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let order = readable_order(&state, &caller, &id, q.client_secret.as_deref()).await?;
    let slot = stream_slot(&state, &caller, addr)?;
    let cursor = resume_point(&state, &order.app_id, &headers, q.last_event_id)
        .await?
        .unwrap_or(0);
    let live = state.hub.subscribe();
    let upto = mark(&state).await;
    let follow = Follow {
        app: order.app_id,
        order: Some(order.id),
    };
    Ok(sse(state, live, follow, cursor, upto, slot))
}

/// The hub's published mark, once the hub follows the table; at shutdown, whatever it
/// is (the stream then ends at once).
async fn mark(state: &AppState) -> i64 {
    tokio::select! {
        m = state.hub.published_when_following() => m,
        _ = state.stop.cancelled() => state.hub.published(),
    }
}

/// The `seq` to resume after, from the header or the query.
async fn resume_point(
    state: &AppState,
    app: &str,
    headers: &HeaderMap,
    query: Option<String>,
) -> ApiResult<Option<i64>> {
    let given = query.or_else(|| {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let Some(id) = given.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match events::seq_of(&state.db, app, &id).await? {
        Some(seq) => Ok(Some(seq)),
        None => Err(ApiError::bad_request(
            "last_event_id_unknown",
            format!("`{id}` is not one of this app's events"),
        )
        .with_param("last_event_id")),
    }
}

/// Which events a stream carries.
struct Follow {
    app: String,
    order: Option<String>,
}

impl Follow {
    fn wants(&self, e: &EventRow) -> bool {
        e.app_id == self.app && (self.order.is_none() || self.order == e.order_id)
    }
}

enum Phase {
    /// Reading the table from `cursor` up to `upto`.
    Replay {
        upto: i64,
    },
    Live,
}

struct Cursor {
    state: AppState,
    live: broadcast::Receiver<Arc<EventRow>>,
    follow: Follow,
    /// The highest `seq` sent (or skipped as already covered).
    cursor: i64,
    phase: Phase,
    page: std::collections::VecDeque<EventRow>,
}

fn message(e: &EventRow) -> Event {
    let body = serde_json::to_string(&EventView::of(e)).unwrap_or_else(|_| "{}".into());
    Event::default().id(e.id.clone()).data(body)
}

impl Cursor {
    /// The next event to send, or `None` when the stream should end.
    async fn next(&mut self) -> Option<EventRow> {
        loop {
            if let Some(e) = self.page.pop_front() {
                self.cursor = e.seq;
                return Some(e);
            }
            match self.phase {
                Phase::Replay { upto } => {
                    let rows = match events::between(
                        &self.state.db,
                        &self.follow.app,
                        self.follow.order.as_deref(),
                        self.cursor,
                        upto,
                        REPLAY_PAGE,
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "stream replay failed; closing the stream");
                            return None;
                        }
                    };
                    if (rows.len() as i64) < REPLAY_PAGE {
                        self.cursor = self.cursor.max(upto);
                        self.phase = Phase::Live;
                    }
                    self.page.extend(rows);
                }
                Phase::Live => match self.live.recv().await {
                    Ok(e) if e.seq > self.cursor && self.follow.wants(&e) => {
                        self.cursor = e.seq;
                        return Some((*e).clone());
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // Too far behind the hub: catch up from the table.
                        self.phase = Phase::Replay {
                            upto: self.state.hub.published(),
                        };
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn sse(
    state: AppState,
    live: broadcast::Receiver<Arc<EventRow>>,
    follow: Follow,
    cursor: i64,
    upto: i64,
    slot: StreamSlot,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stop = state.stop.clone();
    let keep_alive = state.settings.stream_keep_alive;
    let phase = if cursor < upto {
        Phase::Replay { upto }
    } else {
        Phase::Live
    };
    let start = Cursor {
        state,
        live,
        follow,
        cursor,
        phase,
        page: Default::default(),
    };
    // The slot lives as long as the stream does.
    let stream = futures::stream::unfold((start, slot), |(mut c, slot)| async move {
        let e = c.next().await?;
        Some((Ok(message(&e)), (c, slot)))
    });
    let stream = futures::StreamExt::take_until(stream, stop.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only events of this type (`payment.succeeded`, …): one of paybridge's event
    /// types, or a 400.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

/// The customer's payment log, newest first (admin, server): every event about their
/// orders, payments, refunds and subscriptions.
#[utoipa::path(get, path = "/v1/customers/{id}/events", tag = "customers",
    params(("id" = String, Path), LogQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<EventView>), (status = "4XX", body = ErrorBody)))]
async fn customer_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<axum::Json<List<EventView>>> {
    let app = caller.app(Permission::EventsRead)?;
    let params = to_params(q.limit, q.starting_after)?;
    let filter = Filter {
        kind: crate::http::list::known_event_type(q.kind.as_deref())?,
        customer: Some(&id),
        ..Filter::default()
    };
    paybridge_store::customers::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("customer")?;
    let (rows, has_more) = events::list(
        &state.db,
        app.as_str(),
        &filter,
        params.limit,
        params.starting_after.as_deref(),
    )
    .await?;
    Ok(axum::Json(List {
        object: "list",
        data: rows.iter().map(EventView::of).collect(),
        has_more,
    }))
}
