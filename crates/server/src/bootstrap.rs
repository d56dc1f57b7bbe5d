//! What `paybridge serve` does before it listens: find the master key, check it opens
//! what is stored, settle the root key, and on first start create the demo app.

use std::io::Write;
use std::path::Path;

use paybridge_core::keys::{hash_key, NewKey, Role};
use paybridge_core::vault::MasterKey;
use paybridge_core::{Environment, ProviderKind};
use paybridge_store::products::ProductRow;
use paybridge_store::{apps, now, products, settings, Db};
use secrecy::{ExposeSecret, SecretString};

use crate::service;
use crate::state::AppState;

/// Reads the key file at `path`, or makes one (mode 0600) if there is none.
pub fn load_or_create_key_file(path: &Path) -> anyhow::Result<(MasterKey, bool)> {
    if path.exists() {
        let text = std::fs::read_to_string(path)?;
        let key = MasterKey::from_base64(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok((key, false));
    }
    let (key, b64) = MasterKey::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(b64.expose_secret().as_bytes())?;
    f.sync_all()?;
    Ok((key, true))
}

const VAULT_CHECK: &str = "vault_check";

/// Refuses a master key that cannot open what this database already holds (a wrong
/// key would otherwise surface later as undecryptable secrets).
pub async fn check_master_key(db: &Db, key: &MasterKey) -> anyhow::Result<()> {
    let sealed = key.seal("paybridge", VAULT_CHECK);
    settings::set_if_absent(db, VAULT_CHECK, &sealed).await?;
    let stored = settings::get(db, VAULT_CHECK)
        .await?
        .ok_or_else(|| anyhow::anyhow!("vault check missing"))?;
    key.open(&stored, VAULT_CHECK).map_err(|_| {
        anyhow::anyhow!(
            "the master key does not open the secrets in this database: set PAYBRIDGE_MASTER_KEY \
             (or the key file) to the key it was created with"
        )
    })?;
    Ok(())
}

/// The root key's hash: from `PAYBRIDGE_ROOT_KEY` if set; otherwise the one made at
/// first start, whose key is returned once to be printed.
pub async fn root_key(
    db: &Db,
    from_env: Option<&str>,
) -> anyhow::Result<(String, Option<SecretString>)> {
    if let Some(k) = from_env.filter(|k| !k.is_empty()) {
        anyhow::ensure!(
            k.len() >= 16,
            "PAYBRIDGE_ROOT_KEY must be at least 16 characters"
        );
        return Ok((hash_key(k), None));
    }
    let fresh = NewKey::generate(Role::Root, None);
    if settings::set_if_absent(db, "root_key_hash", &fresh.hash).await? {
        return Ok((fresh.hash, Some(fresh.secret)));
    }
    let hash = settings::get(db, "root_key_hash")
        .await?
        .ok_or_else(|| anyhow::anyhow!("root key hash missing"))?;
    Ok((hash, None))
}

/// The demo app as a first start prints it. The admin and server keys exist only in
/// this first answer; the publishable key is kept sealed for the storefront at `/`.
pub struct Demo {
    pub app_id: String,
    pub publishable_key: String,
    pub admin_key: Option<String>,
    pub server_key: Option<String>,
}

const DEMO_APP: &str = "demo_app";
const DEMO_PK: &str = "demo_publishable_key";

/// Creates the demo app on the sandbox with a few products, once per database.
pub async fn ensure_demo(state: &AppState) -> anyhow::Result<Demo> {
    let db = &state.db;
    if settings::set_if_absent(db, "demo_claim", "1").await? {
        let created = service::apps::create_app(db, "Demo shop", Environment::Test, true)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let app_id = created.app.id.clone();
        service::config::set_provider(
            state,
            &app_id,
            Environment::Test,
            ProviderKind::Sandbox,
            None,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
        seed_products(db, &app_id).await?;
        let pk = created.publishable.expose().to_owned();
        settings::set_if_absent(db, DEMO_PK, &state.vault.seal(&pk, DEMO_PK)).await?;
        settings::set_if_absent(db, DEMO_APP, &app_id).await?;
        return Ok(Demo {
            app_id,
            publishable_key: pk,
            admin_key: Some(created.admin.expose().to_owned()),
            server_key: Some(created.server.expose().to_owned()),
        });
    }
    // Another node may be creating it right now.
    for _ in 0..50 {
        if let (Some(app_id), Some(pk)) = (
            settings::get(db, DEMO_APP).await?,
            settings::get(db, DEMO_PK).await?,
        ) {
            let pk = state.vault.open(&pk, DEMO_PK)?;
            return Ok(Demo {
                app_id,
                publishable_key: pk.expose_secret().to_owned(),
                admin_key: None,
                server_key: None,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("the demo app is claimed but was never finished; unset the demo with --no-demo")
}

/// The demo app's publishable key, if this database has a demo app (for the storefront).
pub async fn demo_publishable_key(state: &AppState) -> Option<String> {
    let sealed = settings::get(&state.db, DEMO_PK).await.ok()??;
    let pk = state.vault.open(&sealed, DEMO_PK).ok()?;
    Some(pk.expose_secret().to_owned())
}

/// The demo app, if this database has one.
pub async fn demo_app(db: &Db) -> anyhow::Result<Option<String>> {
    Ok(apps::find_demo_app(db).await?.map(|a| a.id))
}

async fn seed_products(db: &Db, app: &str) -> anyhow::Result<()> {
    let items: [(&str, &str, i64, &str, Option<&str>); 4] = [
        (
            "paybridge T-shirt",
            "Organic cotton, one size fits most.",
            2500,
            "usd",
            None,
        ),
        ("Sticker pack", "Ten vinyl stickers.", 500, "usd", None),
        (
            "Matcha tin",
            "Ceremonial grade, 30 g. Priced in yen: a zero-decimal currency.",
            500,
            "jpy",
            None,
        ),
        (
            "Pro plan",
            "Monthly subscription.",
            1500,
            "usd",
            Some("month"),
        ),
    ];
    for (name, description, amount, currency, interval) in items {
        let ts = now();
        products::insert(
            db,
            &ProductRow {
                id: paybridge_core::ids::ProductId::generate().into_string(),
                app_id: app.to_owned(),
                name: name.to_owned(),
                description: Some(description.to_owned()),
                unit_amount: amount,
                currency: currency.to_owned(),
                recurring_interval: interval.map(str::to_owned),
                recurring_interval_count: interval.map(|_| 1),
                provider_product_id: None,
                provider_price_id: None,
                active: 1,
                metadata: "{}".to_owned(),
                created: ts,
                updated: ts,
            },
        )
        .await?;
    }
    Ok(())
}
