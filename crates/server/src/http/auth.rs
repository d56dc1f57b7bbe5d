//! Authentication: the bearer key becomes a `Principal` in the request's extensions.
//! A request without a key passes on (public routes need none; `Caller` refuses it
//! where one is needed); a key that is malformed, unknown or revoked is a 401 here.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use paybridge_core::ids::AppId;
use paybridge_core::keys::{hash_key, Permission, Principal, Role};
use paybridge_core::Environment;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::http::limits;
use crate::state::AppState;

pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(header) = req.headers().get(AUTHORIZATION) else {
        return next.run(req).await;
    };
    let key = match header.to_str().ok().and_then(bearer) {
        Some(k) => k.to_owned(),
        None => {
            let addr = limits::client_addr(&req, &state.settings.trusted_proxies);
            if let Err(limited) = state.limiter.anonymous(addr) {
                return limits::refuse(&state, limited);
            }
            return ApiError::unauthorized(
                "Malformed Authorization header: send `Authorization: Bearer <key>`",
            )
            .into_response();
        }
    };
    match principal_for(&state, &key).await {
        Ok(Some(p)) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        // A refused key is an anonymous caller: it spends its address's budget, so
        // guessing keys is as slow as any anonymous traffic.
        Ok(None) => {
            let addr = limits::client_addr(&req, &state.settings.trusted_proxies);
            if let Err(limited) = state.limiter.anonymous(addr) {
                return limits::refuse(&state, limited);
            }
            ApiError::unauthorized(format!("Invalid API key provided: {}", redact(&key)))
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// Enough of a key to recognise it, never enough to use it.
pub fn redact(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head: String = key.chars().take(11).collect();
    if key.chars().count() <= 16 {
        "…".to_owned() + &tail
    } else {
        format!("{head}…{tail}")
    }
}

async fn principal_for(state: &AppState, key: &str) -> Result<Option<Principal>, ApiError> {
    let hash = hash_key(key);
    if bool::from(
        hash.as_bytes()
            .ct_eq(state.settings.root_key_hash.as_bytes()),
    ) {
        return Ok(Some(Principal::root()));
    }
    let Some(row) = paybridge_store::keys::authenticate(&state.db, &hash).await? else {
        return Ok(None);
    };
    let Some(role) = Role::parse(&row.role) else {
        return Ok(None);
    };
    Ok(Some(Principal {
        key_id: Some(row.id),
        app_id: row.app_id.map(AppId::from_stored),
        environment: row.environment.as_deref().and_then(Environment::parse),
        role,
        grants: row
            .permissions
            .split(',')
            .filter_map(Permission::parse)
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_redaction() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        let r = redact("pb_sk_test_abcdefghijklmnopqrstuvwxyz123456");
        assert_eq!(r, "pb_sk_test_…3456");
        assert_eq!(redact("short"), "…hort");
    }
}
