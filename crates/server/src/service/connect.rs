//! Stripe Connect: connected accounts (express), their persons, transfers to them,
//! the transactions of their payouts, and the platform's webhook endpoints. Destination
//! charges with an application fee are payments (`transfer_destination`,
//! `application_fee_amount`).

use std::collections::BTreeMap;

use paybridge_core::ids::{AccountId, TransferId};
use paybridge_core::stripe::event::META_APP;
use paybridge_core::{catalog, Currency, Invalid, Money};
use paybridge_provider::{NewAccount, NewTransfer};
use paybridge_store::connect::{self, AccountRow, TransferRow};
use paybridge_store::now;
use serde_json::Value;

use super::provider::{bind, provider_error};
use crate::error::{ApiResult, OrNotFound};
use crate::state::AppState;

pub async fn create_account(
    state: &AppState,
    app: &str,
    email: &str,
    external_id: Option<String>,
    country: Option<String>,
) -> ApiResult<AccountRow> {
    if email.len() > 320 || !email.contains('@') || email.chars().any(char::is_whitespace) {
        return Err(Invalid::new(
            "email",
            "email_invalid",
            "email must be an address like name@example.com",
        )
        .into());
    }
    if let Some(c) = &country {
        if c.len() != 2 || !c.chars().all(|x| x.is_ascii_alphabetic()) {
            return Err(Invalid::new(
                "country",
                "parameter_invalid",
                "country is a two-letter ISO code",
            )
            .into());
        }
    }
    let id = AccountId::generate().into_string();
    let bound = bind(state, app).await?;
    let mut metadata = BTreeMap::new();
    metadata.insert(META_APP.to_owned(), app.to_owned());
    metadata.insert("pb_account".to_owned(), id.clone());
    if let Some(e) = &external_id {
        metadata.insert("pb_external_id".to_owned(), e.clone());
    }
    let acct = bound
        .provider
        .create_account(
            &bound.call(&format!("{id}_create")),
            &NewAccount {
                email: email.to_owned(),
                country: country.clone().map(|c| c.to_uppercase()),
                metadata,
            },
        )
        .await
        .map_err(provider_error)?;
    let ts = now();
    let row = AccountRow {
        id,
        app_id: app.to_owned(),
        provider_account_id: acct.id,
        email: Some(email.to_owned()),
        external_id,
        country: acct.country.or(country),
        deleted: 0,
        created: ts,
        updated: ts,
    };
    let mut w = state.db.autocommit().await?;
    connect::insert_account(&mut *w, &row).await?;
    w.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    Ok(row)
}

/// An account and what the provider says of it now.
pub async fn account(state: &AppState, app: &str, id: &str) -> ApiResult<(AccountRow, Value)> {
    let row = connect::account(&state.db, app, id)
        .await
        .or_404("connected account")?;
    let bound = bind(state, app).await?;
    let acct = bound
        .provider
        .retrieve_account(
            &bound.call(&format!("{id}_retrieve")),
            &row.provider_account_id,
        )
        .await
        .map_err(provider_error)?;
    Ok((row, serde_json::to_value(acct).unwrap_or(Value::Null)))
}

pub async fn delete_account(state: &AppState, app: &str, id: &str) -> ApiResult<()> {
    let row = connect::account(&state.db, app, id)
        .await
        .or_404("connected account")?;
    let bound = bind(state, app).await?;
    bound
        .provider
        .delete_account(
            &bound.call(&format!("{id}_delete")),
            &row.provider_account_id,
        )
        .await
        .map_err(provider_error)?;
    connect::delete_account(&state.db, app, id)
        .await
        .or_404("connected account")?;
    Ok(())
}

pub async fn persons(state: &AppState, app: &str, id: &str) -> ApiResult<Vec<Value>> {
    let row = connect::account(&state.db, app, id)
        .await
        .or_404("connected account")?;
    let bound = bind(state, app).await?;
    bound
        .provider
        .list_persons(
            &bound.call(&format!("{id}_persons")),
            &row.provider_account_id,
        )
        .await
        .map_err(provider_error)
}

/// The provider's account id for a connected account given as `param`: one of this
/// app's accounts, named by our id (`account_…`) or the provider's (`acct_…`). An
/// account the app did not create through paybridge (another app's, or any `acct_…` at
/// all) is not found: money only goes to the app's own sellers.
pub async fn destination(
    state: &AppState,
    app: &str,
    param: &str,
    destination: &str,
) -> ApiResult<String> {
    let well_formed = !destination.is_empty()
        && destination.len() <= 255
        && destination
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return Err(Invalid::new(
            param,
            "parameter_invalid",
            format!(
                "`{param}` is a connected account: ours (`account_…`) or the provider's (`acct_…`)"
            ),
        )
        .into());
    }
    let row = if destination.starts_with("acct_") {
        connect::account_by_provider_id(&state.db, app, destination).await
    } else {
        connect::account(&state.db, app, destination).await
    };
    let row = row.map_err(|_| {
        let mut e = crate::error::ApiError::not_found("connected account").with_param(param);
        e.message = format!(
            "No such connected account: `{destination}` is not one of this app's connected accounts"
        );
        e
    })?;
    Ok(row.provider_account_id)
}

pub async fn transfer(
    state: &AppState,
    app: &str,
    to: &str,
    amount: i64,
    currency: &str,
    metadata: BTreeMap<String, String>,
) -> ApiResult<TransferRow> {
    let currency = Currency::parse(currency)?;
    let money = Money::new(amount, currency)
        .map_err(|_| Invalid::new("amount", "invalid_amount", "amount must be positive"))?;
    if amount == 0 || amount > paybridge_core::money::MAX_AMOUNT {
        return Err(Invalid::new(
            "amount",
            "invalid_amount",
            "amount must be 1 to 99999999 minor units",
        )
        .into());
    }
    catalog::validate_metadata(&metadata)?;
    let dest = destination(state, app, "destination", to).await?;
    let bound = bind(state, app).await?;
    let row = TransferRow {
        id: TransferId::generate().into_string(),
        app_id: app.to_owned(),
        destination: dest.clone(),
        amount: money.amount(),
        currency: currency.code().to_owned(),
        provider_transfer_id: None,
        status: "pending".into(),
        metadata: serde_json::to_string(&metadata).unwrap_or_else(|_| "{}".into()),
        created: now(),
    };
    let mut w = state.db.autocommit().await?;
    connect::insert_transfer(&mut *w, &row).await?;
    w.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    let mut md = metadata;
    md.insert(META_APP.into(), app.into());
    md.insert("pb_transfer".into(), row.id.clone());
    let result = bound
        .provider
        .create_transfer(
            &bound.call(&format!("{}_create", row.id)),
            &NewTransfer {
                destination: dest,
                amount: row.amount,
                currency: row.currency.clone(),
                metadata: md,
                extra: vec![],
            },
        )
        .await;
    match result {
        Ok(t) => {
            connect::finish_transfer(&state.db, app, &row.id, Some(&t.id), "succeeded").await?;
            Ok(connect::transfer(&state.db, app, &row.id).await?)
        }
        Err(e) => {
            connect::finish_transfer(&state.db, app, &row.id, None, "failed").await?;
            Err(provider_error(e))
        }
    }
}

pub async fn payout_transactions(
    state: &AppState,
    app: &str,
    payout: &str,
    account: Option<&str>,
) -> ApiResult<Vec<Value>> {
    let bound = bind(state, app).await?;
    let mut call = bound.call(&format!("{app}_payout_{payout}"));
    if let Some(a) = account {
        call = call.on_behalf_of(&destination(state, app, "account", a).await?);
    }
    bound
        .provider
        .list_payout_transactions(&call, payout)
        .await
        .map_err(provider_error)
}

pub async fn webhook_endpoints(state: &AppState, app: &str) -> ApiResult<Vec<Value>> {
    let bound = bind(state, app).await?;
    bound
        .provider
        .list_webhook_endpoints(&bound.call(&format!("{app}_webhook_endpoints")))
        .await
        .map_err(provider_error)
}
