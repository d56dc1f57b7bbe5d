//! What verifying a webhook needs of an app (its environment and its signing secrets,
//! opened), kept in memory for a second so a burst of webhooks does not read and
//! decrypt them for every event. This node forgets an app's entry as soon as the app's
//! configuration changes here; other nodes see the change within the second.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use paybridge_store::{apps, config};
use secrecy::SecretString;

use crate::error::{ApiResult, OrNotFound};
use crate::state::AppState;

const TTL: Duration = Duration::from_secs(1);

pub struct WebhookKeys {
    pub live: bool,
    /// Empty when the app has no signing secret.
    pub secrets: Vec<SecretString>,
}

#[derive(Default)]
pub struct VerifyCache {
    entries: RwLock<HashMap<String, (Instant, Arc<WebhookKeys>)>>,
}

impl VerifyCache {
    pub fn invalidate(&self, app: &str) {
        if let Ok(mut m) = self.entries.write() {
            m.remove(app);
        }
    }

    pub async fn get(&self, state: &AppState, app: &str) -> ApiResult<Arc<WebhookKeys>> {
        if let Some((at, keys)) = self.entries.read().ok().and_then(|m| m.get(app).cloned()) {
            if at.elapsed() < TTL {
                return Ok(keys);
            }
        }
        let row = apps::get_app(&state.db, app).await.or_404("app")?;
        let secrets = match config::get(&state.db, app).await? {
            Some(cfg) => super::config::signing_secrets(state, &cfg)?,
            None => Vec::new(),
        };
        let keys = Arc::new(WebhookKeys {
            live: row.environment == "live",
            secrets,
        });
        if let Ok(mut m) = self.entries.write() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(app.to_owned(), (Instant::now(), keys.clone()));
        }
        Ok(keys)
    }
}
