//! Creating apps and minting keys. Keys are generated in the core, stored as hashes,
//! and their secrets handed back exactly once.

use paybridge_core::ids::{AppId, KeyId};
use paybridge_core::keys::{validate_grants, NewKey, Permission, Role};
use paybridge_core::{Environment, Invalid};
use paybridge_store::apps::AppRow;
use paybridge_store::keys::KeyRow;
use paybridge_store::{apps, keys, now, Db};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{ApiResult, OrNotFound};

pub struct MintedKey {
    pub row: KeyRow,
    pub secret: SecretString,
}

pub struct CreatedApp {
    pub app: AppRow,
    pub admin: MintedKey,
    pub server: MintedKey,
    pub publishable: MintedKey,
}

fn new_key_row(
    app: &AppId,
    role: Role,
    env: Environment,
    grants: &[Permission],
) -> (KeyRow, NewKey) {
    let key = NewKey::generate(role, Some(env));
    let row = KeyRow {
        id: KeyId::generate().into_string(),
        app_id: Some(app.to_string()),
        role: role.as_str().to_owned(),
        permissions: grants
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(","),
        redacted: key.redacted.clone(),
        created: now(),
        revoked: None,
    };
    (row, key)
}

pub fn validate_app_name(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Invalid::new(
            "name",
            "invalid_name",
            "name must be 1 to 200 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Creates an app with one key of each role, in one transaction.
pub async fn create_app(
    db: &Db,
    name: &str,
    env: Environment,
    demo: bool,
) -> ApiResult<CreatedApp> {
    let name = validate_app_name(name)?;
    let id = AppId::generate();
    let app = AppRow {
        id: id.to_string(),
        name,
        environment: env.as_str().to_owned(),
        demo: i64::from(demo),
        created: now(),
    };
    let minted: Vec<(KeyRow, NewKey)> = [Role::Admin, Role::Server, Role::Publishable]
        .into_iter()
        .map(|r| new_key_row(&id, r, env, &[]))
        .collect();
    let rows: Vec<KeyRow> = minted.iter().map(|(r, _)| r.clone()).collect();
    let hashes: Vec<String> = minted.iter().map(|(_, k)| k.hash.clone()).collect();
    apps::create_app(db, &app, &rows, &hashes).await?;
    let mut it = minted.into_iter().map(|(row, key)| MintedKey {
        row,
        secret: key.secret,
    });
    let (admin, server, publishable) = (
        it.next().expect("admin key"),
        it.next().expect("server key"),
        it.next().expect("publishable key"),
    );
    Ok(CreatedApp {
        app,
        admin,
        server,
        publishable,
    })
}

/// Mints one more key for an app.
pub async fn mint_key(
    db: &Db,
    app_id: &str,
    role: Role,
    permissions: &[String],
) -> ApiResult<MintedKey> {
    if role == Role::Root {
        return Err(Invalid::new(
            "role",
            "invalid_role",
            "an app key is admin, server or publishable",
        )
        .into());
    }
    let grants = validate_grants(role, permissions)?;
    let app = apps::get_app(db, app_id).await.or_404("app")?;
    let env = Environment::parse(&app.environment).unwrap_or_default();
    let id = AppId::from_stored(app.id);
    let (row, key) = new_key_row(&id, role, env, &grants);
    keys::create_key(db, &row, &key.hash).await?;
    Ok(MintedKey {
        row,
        secret: key.secret,
    })
}

impl MintedKey {
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}
