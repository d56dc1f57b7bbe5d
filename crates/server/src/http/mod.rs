//! The HTTP layer: routes, the middleware every request passes, and the fallbacks that
//! keep even the framework's own refusals in the one error shape.

mod apps;
mod auth;
mod authenticate_page;
mod callbacks;
mod checkout_page;
mod config;
mod connect;
mod customers;
pub mod demo_shop;
mod docs;
mod events;
mod export;
pub mod extract;
mod idempotency;
pub mod limits;
mod list;
mod ops;
mod orders;
mod payments;
mod portal_page;
mod products;
mod refunds;
mod rejections;
mod reports;
mod sandbox;
pub mod streams;
mod subscriptions;
mod web;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, ErrorBody, ErrorType};
use crate::metrics::{method_label, RequestLabels, RouteLabels};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paybridge",
        description = "Self-hosted payments backend: Stripe payments for any app through one small API. \
            Money is integer minor units plus a lowercase ISO 4217 currency. Every error has the shape \
            {\"error\":{\"type\",\"code\",\"message\",\"param\"}}. Any POST takes an `Idempotency-Key` header."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "apps", description = "Apps (tenants) and their API keys; root key"),
        (name = "payment_config", description = "The app's provider keys and webhook signing secret"),
        (name = "products", description = "The catalog"),
        (name = "customers", description = "The app's users and their saved cards"),
        (name = "orders", description = "Orders and hosted checkout sessions"),
        (name = "payments", description = "Payment links, payment intents, saved-card charges, capture, cancel"),
        (name = "webhooks", description = "Signed events from Stripe (or the sandbox), and what became of them"),
        (name = "refunds", description = "Refunds, never more than what was captured"),
        (name = "subscriptions", description = "Recurring charges"),
        (name = "connect", description = "Stripe Connect: connected accounts, transfers, payouts"),
        (name = "events", description = "paybridge's own events, listed and streamed"),
        (name = "callbacks", description = "Signed callbacks to the app (Standard Webhooks), with every attempt logged"),
        (name = "sandbox", description = "Test helpers of the offline sandbox provider"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the route table and the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    finish_doc(api_router().split_for_parts().1)
}

/// What the annotations cannot say operation by operation.
fn finish_doc(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    provider_options_docs(declare_rate_limits(optional_bodies(doc)))
}

/// Every operation may answer 429 (`http::limits`: the caller's budget is spent, or a
/// key has too many streams open), in the error shape and with `Retry-After`.
fn declare_rate_limits(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let too_many = ResponseBuilder::new()
        .description(
            "Too many requests: the key's or the address's budget is spent (see Retry-After)",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            op.responses
                .responses
                .entry("429".to_owned())
                .or_insert_with(|| RefOr::T(too_many.clone()));
        }
    }
    doc
}

/// The `provider_options` fields' descriptions, written from the allowlists the server
/// enforces, so the reference cannot drift from the code.
fn provider_options_docs(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use crate::service::payments::{describe_options, Target};
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let Some(components) = doc.components.as_mut() else {
        return doc;
    };
    for (schema, target) in [
        ("CreateCheckout", Target::CheckoutSession),
        ("CreatePayment", Target::PaymentIntent),
    ] {
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(schema) {
            if let Some(RefOr::T(Schema::Object(field))) = o.properties.get_mut("provider_options")
            {
                field.description = Some(describe_options(target));
            }
        }
    }
    doc
}

/// `request_body = Option<T>` marks a body that may be left out (every field of `T` is
/// optional, and a missing body reads as `{}`), but utoipa spells it "`null` or `T`",
/// and a `null` body is refused like any body that is not an object. So the document
/// says what the server does: the body is not required, and when sent it is a `T`.
fn optional_bodies(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    use utoipa::openapi::RefOr;
    fn is_null(s: &RefOr<Schema>) -> bool {
        match s {
            RefOr::T(Schema::Object(o)) => o.schema_type == SchemaType::Type(Type::Null),
            _ => false,
        }
    }
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let Some(body) = op.request_body.as_mut() else {
                continue;
            };
            for content in body.content.values_mut() {
                if let Some(RefOr::T(Schema::OneOf(one))) = &content.schema {
                    if let [a, b] = one.items.as_slice() {
                        if is_null(a) != is_null(b) {
                            let inner = if is_null(a) { b } else { a };
                            content.schema = Some(inner.clone());
                        }
                    }
                }
            }
        }
    }
    doc
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(apps::routes())
        .merge(config::routes())
        .merge(products::routes())
        .merge(customers::routes())
        .merge(orders::routes())
        .merge(payments::routes())
        .merge(export::routes())
        .merge(refunds::routes())
        .merge(reports::routes())
        .merge(subscriptions::routes())
        .merge(connect::routes())
        .merge(webhooks::routes())
        .merge(events::routes())
        .merge(callbacks::routes())
        .merge(streams::routes())
        .merge(sandbox::routes())
        .merge(ops::routes())
}

/// Any origin may call the API from a browser: keys travel in the `Authorization`
/// header, never in cookies, so there is no ambient credential to abuse.
fn cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            HeaderName::from_static("idempotent-replayed"),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(3600))
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let doc = Arc::new(finish_doc(doc));
    let request_id = HeaderName::from_static("x-request-id");
    api.merge(docs::routes(doc))
        .merge(checkout_page::pages())
        .merge(authenticate_page::pages())
        .merge(portal_page::pages())
        .merge(web::routes())
        .merge(demo_shop::routes())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(bounded_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            // The path only: query strings may carry client secrets. What the
                            // caller chose is bounded: a made-up method is `other`, a path is
                            // cut at PATH_LOGGED characters, and the request id is ours or
                            // a caller's of at most REQUEST_ID_MAX (see `bounded_request_id`).
                            tracing::info_span!(
                                "request",
                                request_id = %id,
                                method = method_label(req.method()),
                                path = %rejections::truncate(req.uri().path(), PATH_LOGGED)
                            )
                        })
                        .on_response(
                            DefaultOnResponse::new()
                                .level(Level::INFO)
                                .latency_unit(LatencyUnit::Micros),
                        ),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::internal("handler panicked").into_response()
                }))
                .layer(middleware::from_fn(rejections::in_error_shape))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    record_metrics,
                ))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    answer_durably,
                ))
                .layer(middleware::from_fn(limit_declared_length))
                .layer(middleware::from_fn(refuse_nul_in_url))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    auth::authenticate,
                ))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    limits::rate_limit,
                ))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    idempotency::idempotency,
                )),
        )
        // Outermost, so a browser's preflight is answered before authentication.
        .layer(cors())
        .with_state(state)
}

/// How much of a request's path goes into its log line.
const PATH_LOGGED: usize = 256;

/// The longest `x-request-id` a caller may choose; a longer one (or one that is not
/// visible ASCII) is replaced by ours, as a missing one is. It is logged and echoed.
const REQUEST_ID_MAX: usize = 128;

async fn bounded_request_id(mut req: Request, next: Next) -> Response {
    let fits = req
        .headers()
        .get("x-request-id")
        .map(|v| v.len() <= REQUEST_ID_MAX && v.as_bytes().iter().all(|b| b.is_ascii_graphic()));
    if fits == Some(false) {
        req.headers_mut().remove("x-request-id");
    }
    next.run(req).await
}

async fn route_not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::InvalidRequestError,
        "route_not_found",
        format!(
            "Unrecognized request URL ({}: {})",
            rejections::truncate(method.as_str(), 32),
            rejections::truncate(uri.path(), PATH_LOGGED)
        ),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::InvalidRequestError,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            rejections::truncate(method.as_str(), 32),
            rejections::truncate(uri.path(), PATH_LOGGED)
        ),
    )
}

/// A declared body over the limit is refused before it is read.
async fn limit_declared_length(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > extract::MAX_BODY) {
        // Read (and drop) what the client is sending, so it gets to read the 413.
        let _ = extract::read_limited(req.into_body(), 0).await;
        return extract::body_too_large().into_response();
    }
    next.run(req).await
}

/// A path or query that carries NUL (`%00`) is refused before any handler sees it:
/// PostgreSQL cannot hold NUL in text, so such an id or filter would otherwise fail in
/// the database rather than as the caller's mistake. A URI cannot hold a raw NUL byte,
/// and `%00` is the only way to encode one.
async fn refuse_nul_in_url(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let place = if uri.path().contains("%00") {
        Some("The request path")
    } else if uri.query().is_some_and(|q| q.contains("%00")) {
        Some("The query string")
    } else {
        None
    };
    match place {
        Some(place) => extract::nul_refused(place).into_response(),
        None => next.run(req).await,
    }
}

/// Every answer waits until what its reads saw is durable: on SQLite a reader may see a
/// commit up to one fsync before it is (commit pipelining, `paybridge_store::Reader`).
/// A request that read nothing newer than its own durable writes does not wait.
async fn answer_durably(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match paybridge_store::answer_durably(&state.db, next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    let elapsed: Duration = started.elapsed();
    state
        .metrics
        .http_requests
        .get_or_create(&RequestLabels {
            method,
            route: route.clone(),
            status: resp.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .http_latency
        .get_or_create(&RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    resp
}
