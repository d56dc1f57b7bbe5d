//! Apps, keys, roles and tenant isolation, over HTTP on both databases.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Backend, Server, TestDb};

paybridge_testkit::on_both!(
    apps_and_keys_are_created_once_and_prefixed_by_role,
    keys_act_only_inside_their_app,
    missing_unknown_and_revoked_keys_get_401,
    publishable_keys_cannot_configure_or_write_products,
    server_keys_take_grants,
    environments_refuse_mixed_provider_keys,
);

async fn apps_and_keys_are_created_once_and_prefixed_by_role(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let live = s.app("live").await;
    assert!(live.admin.starts_with("pb_ak_live_"));
    assert!(live.server.starts_with("pb_sk_live_"));
    assert!(live.publishable.starts_with("pb_pk_live_"));
    let test = s.app("test").await;
    assert!(test.server.starts_with("pb_sk_test_"));
    // At least 128 bits of randomness: 32 base62 characters after the prefix.
    assert!(test.server.len() >= "pb_sk_test_".len() + 32);

    // Default environment is test; an unknown one is a 422 naming the param.
    let r = s.post("/v1/apps", &s.root, json!({"name": "x"})).await;
    assert_eq!(r.json["environment"], "test");
    let r = s
        .post(
            "/v1/apps",
            &s.root,
            json!({"name": "x", "environment": "prod"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error().2.as_deref(), Some("environment"));

    // Reading an app never shows its keys again.
    let r = s.get(&format!("/v1/apps/{}", test.id), &s.root).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json.get("keys").is_none());
    assert!(!r.body.contains(&test.admin));
    let r = s
        .get(&format!("/v1/apps/{}/keys", test.id), &test.admin)
        .await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 3);
    for k in [&test.admin, &test.server, &test.publishable] {
        assert!(!r.body.contains(k.as_str()), "a key list shows a key");
    }

    // Keys are stored only as hashes.
    let stored = db.all_stored_text().await;
    for k in [&test.admin, &test.server, &test.publishable, &live.admin] {
        assert!(
            !stored.contains(k.as_str()),
            "a key is stored in plain text"
        );
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM api_keys").await, 9);

    // Only the root key lists apps or creates them.
    let r = s.get("/v1/apps", &s.root).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 3);
    let r = s.get("/v1/apps", &test.admin).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error().0, "permission_error");
    let r = s.post("/v1/apps", &test.admin, json!({"name": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn keys_act_only_inside_their_app(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let other = s.app("test").await;
    let p = s
        .post(
            "/v1/products",
            &a.admin,
            json!({"name": "Tea", "unit_amount": 500, "currency": "usd"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let id = p.json["id"].as_str().unwrap();

    // Another app's object is a 404, exactly like an id that never existed.
    let theirs = s.get(&format!("/v1/products/{id}"), &other.admin).await;
    let never = s
        .get(
            "/v1/products/product_01jzzzzzzzzzzzzzzzzzzzzzzz",
            &other.admin,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.json, never.json);
    for (m, body) in [
        (Method::PATCH, Some(json!({"name": "Stolen"}))),
        (Method::DELETE, None),
    ] {
        let r = s
            .call(m, &format!("/v1/products/{id}"), Some(&other.admin), body)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let list = s.get("/v1/products", &other.admin).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 0);
    // Nothing changed for the owner.
    let mine = s.get(&format!("/v1/products/{id}"), &a.admin).await;
    assert_eq!(mine.json["name"], "Tea");

    // Apps and keys of another app are 404 too.
    let r = s.get(&format!("/v1/apps/{}", a.id), &other.admin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s
        .post(
            &format!("/v1/apps/{}/keys", a.id),
            &other.admin,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let keys = s.get(&format!("/v1/apps/{}/keys", a.id), &a.admin).await;
    let key_id = keys.json["data"][0]["id"].as_str().unwrap().to_owned();
    let r = s.delete(&format!("/v1/keys/{key_id}"), &other.admin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM api_keys WHERE revoked IS NOT NULL")
            .await,
        0
    );
}

async fn missing_unknown_and_revoked_keys_get_401(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let r = s.call(Method::GET, "/v1/products", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error().0, "authentication_error");
    let r = s
        .get("/v1/products", "pb_sk_test_doesnotexistdoesnotexist1234")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        !r.body.contains("doesnotexistdoesnotexist"),
        "the error echoes the key"
    );
    let r = s
        .call_with(
            Method::GET,
            "/v1/products",
            None,
            None,
            &[("authorization", "Basic abc")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Mint a key, use it, revoke it: it stops working at once.
    let k = s
        .post(
            &format!("/v1/apps/{}/keys", a.id),
            &a.admin,
            json!({"role": "server"}),
        )
        .await;
    assert_eq!(k.status, StatusCode::CREATED, "{}", k.body);
    let secret = k.json["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pb_sk_test_"));
    assert_eq!(s.get("/v1/products", &secret).await.status, StatusCode::OK);
    let r = s
        .delete(
            &format!("/v1/keys/{}", k.json["id"].as_str().unwrap()),
            &a.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json["revoked"].is_i64());
    assert_eq!(
        s.get("/v1/products", &secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The other keys still work.
    assert_eq!(
        s.get("/v1/products", &a.server).await.status,
        StatusCode::OK
    );
}

async fn publishable_keys_cannot_configure_or_write_products(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let pk = &a.publishable;
    let cases = [
        (
            Method::PUT,
            "/v1/payment_config",
            json!({"provider": "sandbox"}),
        ),
        (
            Method::PUT,
            "/v1/payment_config/signing_secret",
            json!({"signing_secret": "whsec_abcdefgh"}),
        ),
        (
            Method::POST,
            "/v1/products",
            json!({"name": "x", "unit_amount": 1, "currency": "usd"}),
        ),
    ];
    for (m, path, body) in cases {
        let r = s.call(m.clone(), path, Some(pk), Some(body)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {}", r.body);
        assert_eq!(r.error().0, "permission_error");
    }
    assert_eq!(
        s.get("/v1/payment_config", pk).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM products").await, 0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM payment_configs").await, 0);
    // The server key may read the configuration but not change it.
    assert_eq!(
        s.get("/v1/payment_config", &a.server).await.status,
        StatusCode::OK
    );
    let r = s
        .put(
            "/v1/payment_config",
            &a.server,
            json!({"provider": "sandbox"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Any key may ask whether the app is configured.
    let r = s.get("/v1/payment_config/status", pk).await;
    assert_eq!(r.json, json!({"configured": false}));
}

async fn server_keys_take_grants(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let path = format!("/v1/apps/{}/keys", a.id);
    let r = s
        .post(
            &path,
            &s.root,
            json!({"role": "server", "permissions": ["refunds:write"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["permissions"], json!(["refunds:write"]));
    for bad in [
        json!({"role": "publishable", "permissions": ["refunds:write"]}),
        json!({"role": "server", "permissions": ["apps:write"]}),
        // Managing keys stays with admin keys (a server key with it could mint one).
        json!({"role": "server", "permissions": ["keys:write"]}),
        json!({"role": "server", "permissions": ["nonsense"]}),
        json!({"role": "root"}),
        json!({"role": "wizard"}),
    ] {
        let r = s.post(&path, &a.admin, bad.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM api_keys").await, 4);

    // Grants are a set: asking twice stores once.
    let r = s
        .post(
            &path,
            &a.admin,
            json!({"role": "server", "permissions": ["refunds:write", "refunds:write", "callbacks:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.json["permissions"],
        json!(["callbacks:read", "refunds:write"])
    );

    // A server key holding keys:write from before cannot mint a key that does more
    // than it can (an admin key), only keys within its own reach.
    db.execute(&format!(
        "UPDATE api_keys SET permissions = 'keys:write' WHERE app_id = '{}' AND role = 'server'",
        a.id
    ))
    .await;
    let r = s.post(&path, &a.server, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = s
        .post(&path, &a.server, json!({"role": "publishable"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn environments_refuse_mixed_provider_keys(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let live = s.app("live").await;
    let test = s.app("test").await;
    let cfg = |p: &str, pk: &str, sk: &str| json!({"provider": p, "provider_public_key": pk, "provider_secret_key": sk});
    let cases = [
        (
            &live,
            cfg("stripe", "pk_live_abc", "sk_test_abc"),
            "provider_secret_key",
        ),
        (
            &live,
            cfg("stripe", "pk_test_abc", "sk_live_abc"),
            "provider_public_key",
        ),
        (&live, json!({"provider": "sandbox"}), "provider"),
        (
            &test,
            cfg("stripe", "pk_test_abc", "sk_live_abc"),
            "provider_secret_key",
        ),
        (
            &test,
            cfg("stripe", "pk_live_abc", "sk_test_abc"),
            "provider_public_key",
        ),
        (
            &test,
            cfg("stripe", "pk_test_abc", "rk_live_abc"),
            "provider_secret_key",
        ),
        (
            &test,
            cfg("stripe", "sk_test_abc", "sk_test_abc"),
            "provider_public_key",
        ),
        (
            &test,
            cfg("paypal", "pk_test_abc", "sk_test_abc"),
            "provider",
        ),
    ];
    for (app, body, param) in cases {
        let r = s.put("/v1/payment_config", &app.admin, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(r.error().2.as_deref(), Some(param), "{body}");
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM payment_configs").await, 0);
    let r = s
        .put(
            "/v1/payment_config",
            &live.admin,
            cfg("stripe", "pk_live_abc", "sk_live_abc"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json["environment"], "live");
    let r = s
        .put(
            "/v1/payment_config",
            &test.admin,
            json!({"provider": "sandbox"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The sandbox signs its own events, so it gets a signing secret at once.
    assert_eq!(r.json["configured"], true);
}
