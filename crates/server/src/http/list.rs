//! List responses and their query parameters, shaped as Stripe's.

use paybridge_store::{Created, ListParams, Page};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

#[derive(Serialize, ToSchema)]
pub struct List<T: ToSchema> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T: ToSchema> List<T> {
    pub fn from_page<R>(page: Page<R>, f: impl FnMut(R) -> T) -> List<T> {
        let page = page.map(f);
        List {
            object: "list",
            data: page.data,
            has_more: page.has_more,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many objects to return, 1 to 100 (default 10).
    pub limit: Option<i64>,
    /// The id of the last object of the previous page.
    pub starting_after: Option<String>,
}

impl ListQuery {
    pub fn params(&self) -> Result<ListParams, ApiError> {
        to_params(self.limit, self.starting_after.clone())
    }
}

pub fn to_params(
    limit: Option<i64>,
    starting_after: Option<String>,
) -> Result<ListParams, ApiError> {
    let limit = limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(
            ApiError::bad_request("parameter_invalid", "limit must be between 1 and 100")
                .with_param("limit"),
        );
    }
    Ok(ListParams {
        limit,
        starting_after: starting_after.filter(|s| !s.is_empty()),
    })
}

/// The answer to a DELETE.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    pub object: String,
    pub deleted: bool,
}

/// A `status` filter must name one of the statuses there are: a misspelt one would
/// otherwise answer an empty list, as if nothing had that status.
pub fn known_status<'a>(
    given: Option<&'a str>,
    known: &[&str],
) -> Result<Option<&'a str>, ApiError> {
    known_value("status", given, known)
}

/// A `type` filter over paybridge's events must name one of them
/// (`paybridge_core::event_types`): a misspelt one would otherwise answer an empty list.
pub fn known_event_type(given: Option<&str>) -> Result<Option<&str>, ApiError> {
    known_value("type", given, paybridge_core::event_types::ALL)
}

fn known_value<'a>(
    param: &'static str,
    given: Option<&'a str>,
    known: &[&str],
) -> Result<Option<&'a str>, ApiError> {
    match given {
        Some(s) if !known.contains(&s) => Err(ApiError::bad_request(
            "parameter_invalid",
            format!("{param} is one of: {}", known.join(", ")),
        )
        .with_param(param)),
        other => Ok(other),
    }
}

/// An email to search by (`email`, `email_prefix`): trimmed, none when blank, and a
/// 422 naming `param` past 320 bytes (the longest an address can be).
pub fn email_param<'a>(
    param: &'static str,
    given: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    match given.map(str::trim) {
        Some("") | None => Ok(None),
        Some(e) if e.len() > 320 => Err(paybridge_core::Invalid::new(
            param,
            "parameter_invalid",
            format!("{param} is too long"),
        )
        .into()),
        Some(e) => Ok(Some(e)),
    }
}

/// A list's `created[gte]` / `created[lte]` (unix seconds, both ends included), checked:
/// a range that ends before it starts is a 422, not an empty list.
pub fn created(gte: Option<i64>, lte: Option<i64>) -> Result<Created, ApiError> {
    if let (Some(a), Some(b)) = (gte, lte) {
        if b < a {
            return Err(paybridge_core::Invalid::new(
                "created[lte]",
                "parameter_invalid",
                "created[lte] is before created[gte]",
            )
            .into());
        }
    }
    Ok(Created { gte, lte })
}
