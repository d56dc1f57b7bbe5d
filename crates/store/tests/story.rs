//! The storage story, run against SQLite and PostgreSQL alike: every repository
//! function on a real database, tenant scoping, and the idempotency claim under
//! concurrency.

use paybridge_store::apps::AppRow;
use paybridge_store::idempotency::{self, Claim, Owner};
use paybridge_store::keys::KeyRow;
use paybridge_store::products::ProductRow;
use paybridge_store::provider_events::{self, ProviderEventRow};
use paybridge_store::{
    apps, config, keys, products, settings, Db, DbOptions, ListParams, StoreError,
};
use paybridge_testkit::{Backend, TestDb};

paybridge_testkit::on_both!(
    apps_keys_and_settings,
    payment_config_keeps_the_previous_signing_secret,
    products_are_scoped_to_their_app,
    idempotency_claims_are_exclusive,
    waiting_provider_events_back_off,
);

async fn open(b: Backend) -> Option<(TestDb, Db)> {
    let t = TestDb::new(b).await?;
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    // Migrating twice is harmless.
    db.migrate().await.expect("migrate again");
    Some((t, db))
}

fn app(id: &str) -> AppRow {
    AppRow {
        id: id.into(),
        name: "A".into(),
        environment: "test".into(),
        demo: 0,
        created: 1,
    }
}

fn key(id: &str, app: &str, role: &str) -> KeyRow {
    KeyRow {
        id: id.into(),
        app_id: Some(app.into()),
        role: role.into(),
        permissions: String::new(),
        redacted: "pb_…".into(),
        created: 1,
        revoked: None,
    }
}

fn all() -> ListParams {
    ListParams {
        limit: 100,
        starting_after: None,
    }
}

async fn apps_keys_and_settings(b: Backend) {
    let Some((_t, db)) = open(b).await else {
        return;
    };
    apps::create_app(
        &db,
        &app("app_a"),
        &[key("key_1", "app_a", "admin")],
        &["h1".into()],
    )
    .await
    .unwrap();
    apps::create_app(
        &db,
        &app("app_b"),
        &[key("key_2", "app_b", "server")],
        &["h2".into()],
    )
    .await
    .unwrap();
    // An app whose key hash collides is not half-created.
    let dup = apps::create_app(
        &db,
        &app("app_c"),
        &[key("key_3", "app_c", "admin")],
        &["h1".into()],
    )
    .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(!apps::exists(&db, "app_c").await.unwrap());

    let auth = keys::authenticate(&db, "h2").await.unwrap().unwrap();
    assert_eq!(auth.id, "key_2");
    assert_eq!(auth.app_id.as_deref(), Some("app_b"));
    assert_eq!(auth.environment.as_deref(), Some("test"));
    assert!(keys::authenticate(&db, "nope").await.unwrap().is_none());
    // Revocation is scoped: app_a cannot revoke app_b's key.
    assert!(matches!(
        keys::revoke(&db, Some("app_a"), "key_2").await,
        Err(StoreError::NotFound)
    ));
    let r = keys::revoke(&db, Some("app_b"), "key_2").await.unwrap();
    assert!(r.revoked.is_some());
    assert!(keys::authenticate(&db, "h2").await.unwrap().is_none());
    assert_eq!(
        keys::list_keys(&db, "app_b", &all())
            .await
            .unwrap()
            .data
            .len(),
        1
    );

    let first = ListParams {
        limit: 1,
        starting_after: None,
    };
    let page = apps::list_apps(&db, &first).await.unwrap();
    assert_eq!((page.data[0].id.as_str(), page.has_more), ("app_b", true));
    let next = ListParams {
        limit: 1,
        starting_after: Some("app_b".into()),
    };
    let page = apps::list_apps(&db, &next).await.unwrap();
    assert_eq!((page.data[0].id.as_str(), page.has_more), ("app_a", false));

    assert!(settings::set_if_absent(&db, "x", "1").await.unwrap());
    assert!(!settings::set_if_absent(&db, "x", "2").await.unwrap());
    assert_eq!(settings::get(&db, "x").await.unwrap().as_deref(), Some("1"));
    db.close().await;
}

async fn payment_config_keeps_the_previous_signing_secret(b: Backend) {
    let Some((_t, db)) = open(b).await else {
        return;
    };
    apps::create_app(&db, &app("app_a"), &[], &[])
        .await
        .unwrap();
    assert!(
        config::put_signing_secret(&db, "app_a", "sealed0", 5)
            .await
            .unwrap()
            .is_none(),
        "no config yet"
    );
    let c = config::put_provider(&db, "app_a", "stripe", Some("pk_test_1"), Some("sealed-sk"))
        .await
        .unwrap();
    assert_eq!(c.secret_key_sealed.as_deref(), Some("sealed-sk"));
    let c = config::put_signing_secret(&db, "app_a", "sealed1", 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.signing_secret_sealed.as_deref(), Some("sealed1"));
    assert_eq!(c.previous_signing_secret_sealed, None);
    assert_eq!(c.previous_signing_secret_expires, None);
    let c = config::put_signing_secret(&db, "app_a", "sealed2", 200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.previous_signing_secret_sealed.as_deref(), Some("sealed1"));
    assert_eq!(c.previous_signing_secret_expires, Some(200));
    // Updating the provider keeps the signing secrets.
    let c = config::put_provider(
        &db,
        "app_a",
        "stripe",
        Some("pk_test_2"),
        Some("sealed-sk2"),
    )
    .await
    .unwrap();
    assert_eq!(c.signing_secret_sealed.as_deref(), Some("sealed2"));
    let got = config::get(&db, "app_a").await.unwrap().unwrap();
    assert_eq!(got.public_key.as_deref(), Some("pk_test_2"));
    assert!(config::get(&db, "app_b").await.unwrap().is_none());
    db.close().await;
}

fn product(id: &str, app: &str) -> ProductRow {
    ProductRow {
        id: id.into(),
        app_id: app.into(),
        name: "P".into(),
        description: None,
        unit_amount: 100,
        currency: "usd".into(),
        recurring_interval: None,
        recurring_interval_count: None,
        provider_product_id: None,
        provider_price_id: None,
        active: 1,
        metadata: "{}".into(),
        created: 1,
        updated: 1,
    }
}

async fn products_are_scoped_to_their_app(b: Backend) {
    let Some((_t, db)) = open(b).await else {
        return;
    };
    apps::create_app(&db, &app("app_a"), &[], &[])
        .await
        .unwrap();
    apps::create_app(&db, &app("app_b"), &[], &[])
        .await
        .unwrap();
    for i in 0..5 {
        let mut p = product(&format!("product_{i}"), "app_a");
        p.active = i64::from(i % 2 == 0);
        products::insert(&db, &p).await.unwrap();
    }
    products::insert(&db, &product("product_x", "app_b"))
        .await
        .unwrap();
    assert_eq!(
        products::list(&db, "app_a", None, &all())
            .await
            .unwrap()
            .data
            .len(),
        5
    );
    assert_eq!(
        products::list(&db, "app_a", Some(true), &all())
            .await
            .unwrap()
            .data
            .len(),
        3
    );
    assert_eq!(
        products::list(&db, "app_a", Some(false), &all())
            .await
            .unwrap()
            .data
            .len(),
        2
    );
    assert!(matches!(
        products::get(&db, "app_b", "product_1").await,
        Err(StoreError::NotFound)
    ));
    let updated = products::update(&db, "app_a", "product_1", |p| {
        p.name = "Renamed".into();
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();
    assert_eq!(updated.name, "Renamed");
    // A refused change writes nothing.
    let refused = products::update(&db, "app_a", "product_1", |p| {
        p.name = "Nope".into();
        Err(StoreError::Conflict("no".into()))
    })
    .await;
    assert!(refused.is_err());
    assert_eq!(
        products::get(&db, "app_a", "product_1").await.unwrap().name,
        "Renamed"
    );
    assert!(
        products::update(&db, "app_b", "product_1", |_| Ok::<_, StoreError>(()))
            .await
            .is_err()
    );
    assert!(matches!(
        products::delete(&db, "app_b", "product_1").await,
        Err(StoreError::NotFound)
    ));
    products::delete(&db, "app_a", "product_1").await.unwrap();
    assert_eq!(products::count(&db, "app_a").await.unwrap(), 4);
    // The price id is unique among an app's live products only.
    let mut p = product("product_p1", "app_a");
    p.provider_price_id = Some("price_1".into());
    products::insert(&db, &p).await.unwrap();
    let mut q = product("product_p2", "app_a");
    q.provider_price_id = Some("price_1".into());
    assert!(matches!(
        products::insert(&db, &q).await,
        Err(StoreError::Conflict(_))
    ));
    q.app_id = "app_b".into();
    products::insert(&db, &q).await.unwrap();
    db.close().await;
}

async fn idempotency_claims_are_exclusive(b: Backend) {
    let Some((_t, db)) = open(b).await else {
        return;
    };
    const A: Owner<'static> = Owner {
        scope: "app_a",
        api_key: "key_a1",
    };
    const B: Owner<'static> = Owner {
        scope: "app_b",
        api_key: "key_b1",
    };
    // 20 concurrent claims of one key: exactly one runs.
    let claims =
        futures::future::join_all((0..20).map(|_| idempotency::claim(&db, A, "k", "fp", 60_000)))
            .await;
    let runs = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Run)))
        .count();
    assert_eq!(runs, 1, "{claims:?}");
    assert!(claims
        .iter()
        .all(|c| matches!(c, Ok(Claim::Run) | Ok(Claim::InFlight))));
    let busy = idempotency::claim(&db, A, "k", "other", 60_000)
        .await
        .unwrap();
    assert_eq!(busy, Claim::InFlight);
    idempotency::complete(&db, A, "k", 201, "{\"id\":1}")
        .await
        .unwrap();
    assert_eq!(
        idempotency::claim(&db, A, "k", "fp", 60_000).await.unwrap(),
        Claim::Replay {
            status: 201,
            body: "{\"id\":1}".into()
        }
    );
    let other = idempotency::claim(&db, A, "k", "other", 60_000)
        .await
        .unwrap();
    assert_eq!(other, Claim::Mismatch);
    let elsewhere = idempotency::claim(&db, B, "k", "other", 60_000)
        .await
        .unwrap();
    assert_eq!(elsewhere, Claim::Run, "scopes are apart");
    // Another API key of the same app: its own request, neither the first key's
    // response nor a mismatch that would tell it the key was used.
    let sibling = Owner {
        scope: "app_a",
        api_key: "key_a2",
    };
    for fp in ["fp", "other"] {
        let c = idempotency::claim(&db, sibling, "k", fp, 60_000)
            .await
            .unwrap();
        assert_eq!(c, Claim::Run, "another API key's claim with {fp}");
        idempotency::release(&db, sibling, "k").await.unwrap();
    }
    assert_eq!(
        idempotency::claim(&db, A, "k", "fp", 60_000).await.unwrap(),
        Claim::Replay {
            status: 201,
            body: "{\"id\":1}".into()
        },
        "the first key's record is untouched"
    );

    // A released claim can run again; a stale one is taken over by one caller only.
    assert_eq!(
        idempotency::claim(&db, A, "r", "fp", 60_000).await.unwrap(),
        Claim::Run
    );
    idempotency::release(&db, A, "r").await.unwrap();
    assert_eq!(
        idempotency::claim(&db, A, "r", "fp", 60_000).await.unwrap(),
        Claim::Run
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let takers =
        futures::future::join_all((0..10).map(|_| idempotency::claim(&db, A, "r", "fp", 10))).await;
    assert_eq!(
        takers
            .iter()
            .filter(|c| matches!(c, Ok(Claim::Run)))
            .count(),
        1,
        "{takers:?}"
    );

    assert_eq!(idempotency::purge(&db, i64::MAX).await.unwrap(), 3);
    assert_eq!(
        idempotency::claim(&db, A, "k", "other", 60_000)
            .await
            .unwrap(),
        Claim::Run
    );
    db.close().await;
}

/// A waiting provider event is tried again only when its back-off (tries² seconds
/// after the last try) is over, so events that will never apply do not keep the
/// writer busy, and newer ones are reached.
async fn waiting_provider_events_back_off(b: Backend) {
    let Some((_t, db)) = open(b).await else {
        return;
    };
    apps::create_app(&db, &app("app_w"), &[], &[])
        .await
        .unwrap();
    let row = |id: &str, received: i64| ProviderEventRow {
        app_id: "app_w".into(),
        id: id.into(),
        kind: "payment_intent.succeeded".into(),
        created: received,
        livemode: 0,
        object_id: Some("pi_elsewhere".into()),
        payload: "{}".into(),
        received_count: 1,
        first_received: received,
        last_received: received,
        outcome: "pending".into(),
        detail: None,
        attempts: 0,
        processed_at: None,
    };
    let mut tx = db.begin().await.unwrap();
    let stored = provider_events::store_new(&mut tx, &[row("evt_old", 100), row("evt_new", 200)])
        .await
        .unwrap();
    assert_eq!(stored, 2);
    tx.commit().await.unwrap();
    let due = |now: i64| {
        let db = db.clone();
        async move {
            provider_events::retryable(&db, 0, now, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    // Never tried: both due, oldest first.
    assert_eq!(due(1000).await, ["evt_old", "evt_new"]);
    let tried = |id: &'static str, at: i64| {
        let db = db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            provider_events::set_outcome(
                &mut tx,
                "app_w",
                id,
                "pending",
                Some("still unknown"),
                at,
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
    };
    // Tried once at 1000: due again 1 s later; the other stays due.
    tried("evt_old", 1000).await;
    assert_eq!(due(1000).await, ["evt_new"]);
    assert_eq!(due(1001).await, ["evt_old", "evt_new"]);
    // Tried twice (the second at 1001): 4 s later.
    tried("evt_old", 1001).await;
    assert_eq!(due(1004).await, ["evt_new"]);
    assert_eq!(due(1005).await, ["evt_old", "evt_new"]);
    // Many tries: at most ten minutes.
    for at in 0..30 {
        tried("evt_new", 2000 + at).await;
    }
    assert!(!due(2029 + 599).await.contains(&"evt_new".to_owned()));
    assert!(due(2029 + 600).await.contains(&"evt_new".to_owned()));
}
