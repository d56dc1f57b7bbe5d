//! Payment configuration: secrets go in encrypted and never come out.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Backend, Server, TestDb};

paybridge_testkit::on_both!(
    secrets_never_leave_in_plain_text,
    signing_secret_rotation_keeps_the_previous_one
);

const SECRET_KEY: &str = "sk_test_51SuperSecretValueThatMustNeverLeak9";
const SIGNING_SECRET: &str = "whsec_SigningSecretThatMustNeverLeak7";

async fn secrets_never_leave_in_plain_text(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_LOG", "debug,sqlx=debug")]).await;
    let a = s.app("test").await;

    assert_eq!(
        s.get("/v1/payment_config/status", &a.publishable)
            .await
            .json["configured"],
        false
    );
    let r = s
        .put(
            "/v1/payment_config",
            &a.admin,
            json!({"provider": "stripe", "provider_public_key": "pk_test_public123", "provider_secret_key": SECRET_KEY}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // No signing secret yet, but this server has no public URL (127.0.0.1): polling
    // Stripe's event list is the whole delivery path, so the keys configure the app.
    assert_eq!(r.json["configured"], true, "{}", r.body);
    assert_eq!(r.json["event_delivery"], "polling");
    assert_eq!(r.json["webhook_endpoint"]["setup"], "unreachable_url");
    assert_eq!(r.json["has_provider_secret_key"], true);
    assert_eq!(
        r.json["webhook_callback_url"],
        format!("{}/v1/webhooks/stripe/{}", s.base, a.id)
    );
    let mut bodies = vec![r.body];
    let r = s
        .put(
            "/v1/payment_config/signing_secret",
            &a.admin,
            json!({"signing_secret": SIGNING_SECRET}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json["configured"], true);
    assert_eq!(r.json["has_signing_secret"], true);
    bodies.push(r.body);
    for (key, path) in [
        (&a.admin, "/v1/payment_config"),
        (&a.server, "/v1/payment_config"),
        (&a.publishable, "/v1/payment_config/status"),
        (&a.publishable, "/v1/config"),
        (&s.root, &format!("/v1/apps/{}", a.id) as &str),
    ] {
        let r = s.get(path, key).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        bodies.push(r.body);
    }
    let cfg = s.get("/v1/config", &a.publishable).await;
    assert_eq!(
        cfg.json,
        json!({"publishable_key": "pk_test_public123", "provider": "stripe"})
    );
    assert_eq!(
        s.get("/v1/payment_config/status", &a.publishable)
            .await
            .json["configured"],
        true
    );

    for body in &bodies {
        assert!(
            !body.contains(SECRET_KEY) && !body.contains(SIGNING_SECRET),
            "a response shows a secret: {body}"
        );
    }
    let stored = db.all_stored_text().await;
    assert!(
        stored.contains("pk_test_public123"),
        "the inspection reads the stored data"
    );
    assert!(
        !stored.contains(SECRET_KEY),
        "the secret key is stored in plain text"
    );
    assert!(
        !stored.contains(SIGNING_SECRET),
        "the signing secret is stored in plain text"
    );
    // Even with debug logging of every SQL statement, no secret reaches the log.
    let logs = s.logs();
    assert!(
        logs.contains("payment_configs"),
        "the log inspection sees SQL: {logs}"
    );
    assert!(
        !logs.contains(SECRET_KEY) && !logs.contains(SIGNING_SECRET),
        "a secret is in the logs"
    );
    assert!(!logs.contains(&a.admin), "an API key is in the logs");

    // Secrets are encrypted with the master key: on SQLite, a 0600 key file beside the database.
    if b == Backend::Sqlite {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(db.dir.path().join("paybridge.db.key")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}

async fn signing_secret_rotation_keeps_the_previous_one(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let r = s
        .put(
            "/v1/payment_config/signing_secret",
            &a.admin,
            json!({"signing_secret": "whsec_first_one"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "needs a provider first"
    );
    assert_eq!(r.error().1, "payment_config_missing");
    let cfg = json!({"provider": "stripe", "provider_public_key": "pk_test_a", "provider_secret_key": "sk_test_b"});
    assert_eq!(
        s.put("/v1/payment_config", &a.admin, cfg).await.status,
        StatusCode::OK
    );
    for bad in ["", "sk_test_wrongthing", "whsec_has space"] {
        let r = s
            .put(
                "/v1/payment_config/signing_secret",
                &a.admin,
                json!({"signing_secret": bad}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(r.error().2.as_deref(), Some("signing_secret"));
    }
    s.put(
        "/v1/payment_config/signing_secret",
        &a.admin,
        json!({"signing_secret": "whsec_first_one"}),
    )
    .await;
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM payment_configs WHERE previous_signing_secret_sealed IS NULL"
        )
        .await,
        1
    );
    s.put(
        "/v1/payment_config/signing_secret",
        &a.admin,
        json!({"signing_secret": "whsec_second_one"}),
    )
    .await;
    // The first secret is kept (sealed) with an expiry about 24 h ahead.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expires = db
        .scalar("SELECT previous_signing_secret_expires FROM payment_configs")
        .await;
    assert!(
        (expires - now - 86_400).abs() < 60,
        "grace ends {expires}, now {now}"
    );
    let stored = db.all_stored_text().await;
    assert!(!stored.contains("whsec_first_one") && !stored.contains("whsec_second_one"));
}
