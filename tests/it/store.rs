//! Black-box tests of the store through `catalogd::store::open`. Every test in
//! `both_backends!` runs twice: `sqlite::name` against a fresh SQLite file and
//! `postgres::name` against a fresh database on the test PostgreSQL server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sqlx::{Connection, PgConnection, SqliteConnection};
use uuid::Uuid;

use crate::helpers::store_options;
use catalogd::integration::{
    Author, Change, ChangeError, HealthCheck, Integration, IntegrationSpec, IntegrationType,
    TestSummary,
};
use catalogd::store::audit_chain::ChainProblemKind;
use catalogd::store::{
    self, AuditEntry, AuditQuery, ImportOp, ListQuery, Store, StoreError, StoreOptions,
};
use catalogd_actors::{CheckOutcome, Clock, FailureClass, Input, Status, SystemClock};

both_backends!(
    create_get_round_trip,
    tenants_are_isolated,
    names_are_unique_per_tenant,
    stale_versions_and_invalid_transitions_are_refused,
    every_list_filter,
    list_json_is_the_serialized_list,
    keyset_pages_see_each_row_once_under_concurrent_inserts,
    every_change_appends_one_audit_entry,
    audit_log_is_append_only,
    tampering_is_detected_at_the_first_bad_entry,
    intact_chains_verify,
    concurrent_changes_keep_one_chain,
    undecodable_rows_are_corrupt,
    an_import_writes_each_creation_as_a_create_would,
    an_import_that_fails_anywhere_changes_nothing,
);

// --- Fixtures -------------------------------------------------------------------------------

use catalogd_testkit::{both_backends, eventually, Backend, FreshDatabase};

/// A fresh, migrated database and the store on it.
struct TestDb {
    backend: Backend,
    url: String,
    store: Arc<dyn Store>,
    _database: FreshDatabase,
}

impl TestDb {
    async fn fresh(backend: Backend) -> TestDb {
        let database = FreshDatabase::new(backend).await;
        let url = database.url.clone();
        let store = store::open(&store_options(&url, 8))
            .await
            .expect("open the store");
        TestDb {
            backend,
            url,
            store,
            _database: database,
        }
    }
}

/// A connection of our own, outside the store, for what an operator or an attacker with
/// database access could do.
enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl TestDb {
    async fn raw(&self) -> Raw {
        match self.backend {
            Backend::Sqlite => Raw::Sqlite(SqliteConnection::connect(&self.url).await.unwrap()),
            Backend::Postgres => Raw::Postgres(PgConnection::connect(&self.url).await.unwrap()),
        }
    }

    async fn create(&self, tenant: &str, spec: IntegrationSpec) -> Integration {
        let integration = Integration::new(tenant, spec, "alice", now());
        self.store.create(&integration).await.expect("create");
        integration
    }

    /// Applies `change` as `bob` and returns the new row.
    async fn change(&self, integration: &Integration, change: Change) -> Option<Integration> {
        self.store
            .change(
                &actor(&integration.tenant_id),
                integration.integration_id,
                change,
                now(),
            )
            .await
            .unwrap_or_else(|e| panic!("change {}: {e}", integration.name))
    }

    async fn lifecycle(&self, integration: &Integration, input: Input) -> Integration {
        self.change(integration, lifecycle(input))
            .await
            .expect("still there")
    }

    async fn audit(&self, tenant: &str) -> Vec<AuditEntry> {
        let query = AuditQuery {
            limit: 10_000,
            ..Default::default()
        };
        self.store.list_audit(tenant, &query).await.unwrap().items
    }
}

impl Raw {
    async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Raw::Sqlite(connection) => sqlx::raw_sql(sql).execute(connection).await.map(drop),
            Raw::Postgres(connection) => sqlx::raw_sql(sql).execute(connection).await.map(drop),
        }
    }

    /// Disables the append-only triggers as an attacker with database access would.
    async fn disable_append_only(&mut self) {
        let sql = match self {
            Raw::Sqlite(_) => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
            Raw::Postgres(_) => "ALTER TABLE audit_log DISABLE TRIGGER USER",
        };
        self.execute(sql).await.expect("disable the triggers");
    }
}

fn now() -> DateTime<Utc> {
    SystemClock.now()
}

fn actor(tenant: &str) -> Author {
    Author {
        tenant_id: tenant.to_owned(),
        subject: "bob".to_owned(),
    }
}

fn lifecycle(input: Input) -> Change {
    Change::Lifecycle {
        input,
        reason: None,
        ticket: None,
    }
}

fn update(integration: &Integration, spec: IntegrationSpec) -> Change {
    Change::Update {
        expected_version: integration.version,
        spec,
    }
}

/// A spec with only what is required.
fn spec(name: &str) -> IntegrationSpec {
    crate::helpers::minimal_spec(name, IntegrationType::Registry)
}

/// A spec with every field set, including awkward values.
fn full_spec(name: &str) -> IntegrationSpec {
    let configuration = json!({
        "url": "https://registry.example.com/v2/",
        "nested": {"list": [1, -2, 3.5, "x", null, true], "empty": {}},
        "big": 18_446_744_073_709_551_615u64,
        "unicode": "é — 日本 \u{1F600}",
        "quote\"key": "back\\slash",
    });
    IntegrationSpec {
        name: name.to_owned(),
        description: Some("The main registry".to_owned()),
        kind: IntegrationType::Registry,
        provider: "harbor".to_owned(),
        base_url: Some("https://registry.example.com".to_owned()),
        auth_ref: Some("ref://prod/harbor/robot".to_owned()),
        configuration: configuration.as_object().unwrap().clone(),
        environment: Some("prod".to_owned()),
        tags: vec!["zeta".to_owned(), "alpha".to_owned(), "alpha".to_owned()],
        owner_id: Some("team-platform".to_owned()),
        health_check: HealthCheck {
            interval_seconds: Some(30),
            timeout_seconds: Some(5),
            degraded_after: Some(2),
            failed_after: Some(4),
            recover_after: Some(3),
        },
        depends_on: Vec::new(),
    }
}

fn list_all() -> ListQuery {
    ListQuery {
        limit: 500,
        ..Default::default()
    }
}

// --- Integrations ---------------------------------------------------------------------------

async fn create_get_round_trip(backend: Backend) {
    let db = TestDb::fresh(backend).await;

    let mut full = Integration::new("acme", full_spec("registry-main"), "alice", now());
    // Fields only the engine sets, and times at both ends of the microsecond range.
    full.last_tested_at = Some(Utc.timestamp_opt(1_700_000_000, 1_000).unwrap());
    full.last_test_success = Some(false);
    full.consecutive_failures = 4;
    full.consecutive_successes = 2;
    full.modified_at = Utc.timestamp_opt(1_700_000_001, 999_999_000).unwrap();
    db.store.create(&full).await.unwrap();
    let got = db.store.get("acme", full.integration_id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&full));

    let minimal = Integration::new("acme", spec("minimal"), "alice", now());
    db.store.create(&minimal).await.unwrap();
    let got = db.store.get("acme", minimal.integration_id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&minimal));

    // A change reads the row back, applies it and writes it: nothing else may move.
    let submitted = db.lifecycle(&full, Input::Submit).await;
    let stored = db.store.get("acme", full.integration_id).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&submitted));
    assert_eq!(submitted.version, 2);
    assert_eq!(submitted.status, Status::PendingVerification);
    assert_eq!(submitted.configuration, full.configuration);
    assert_eq!(submitted.last_tested_at, full.last_tested_at);

    assert_eq!(db.store.get("acme", Uuid::now_v7()).await.unwrap(), None);
    db.store.ping().await.unwrap();
}

async fn tenants_are_isolated(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let acme = db.create("acme", full_spec("shared-name")).await;

    assert_eq!(
        db.store.get("globex", acme.integration_id).await.unwrap(),
        None
    );
    let refused = db
        .store
        .change(
            &actor("globex"),
            acme.integration_id,
            lifecycle(Input::Submit),
            now(),
        )
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    let delete = Change::Delete {
        expected_version: None,
    };
    let refused = db
        .store
        .change(&actor("globex"), acme.integration_id, delete, now())
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    assert!(db
        .store
        .list("globex", &list_all())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(db.audit("globex").await.is_empty());

    // The same name is free in another tenant, and each sees only its own.
    let globex = db.create("globex", full_spec("shared-name")).await;
    for (tenant, own) in [("acme", &acme), ("globex", &globex)] {
        let listed = db.store.list(tenant, &list_all()).await.unwrap().items;
        assert_eq!(
            listed.iter().map(|i| i.integration_id).collect::<Vec<_>>(),
            [own.integration_id]
        );
        let tagged = ListQuery {
            tag: Some("alpha".into()),
            ..list_all()
        };
        let listed = db.store.list(tenant, &tagged).await.unwrap().items;
        assert_eq!(listed.len(), 1, "{tenant}");
        let audit = db.audit(tenant).await;
        assert_eq!(audit.len(), 1, "{tenant}");
        assert_eq!(audit[0].target_id, own.integration_id);
    }
    // acme is untouched by globex's attempts.
    let stored = db.store.get("acme", acme.integration_id).await.unwrap();
    assert_eq!(stored.map(|i| i.version), Some(1));
}

async fn names_are_unique_per_tenant(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let first = db.create("acme", spec("main")).await;
    let twin = Integration::new("acme", spec("main"), "alice", now());
    let refused = db.store.create(&twin).await;
    assert!(matches!(refused, Err(StoreError::NameTaken)), "{refused:?}");
    assert_eq!(
        db.store.get("acme", twin.integration_id).await.unwrap(),
        None
    );

    // Renaming onto a taken name is refused and rolls back completely.
    let other = db.create("acme", spec("other")).await;
    let audit_before = db.audit("acme").await.len();
    let refused = db
        .store
        .change(
            &actor("acme"),
            other.integration_id,
            update(&other, spec("main")),
            now(),
        )
        .await;
    assert!(matches!(refused, Err(StoreError::NameTaken)), "{refused:?}");
    let stored = db.store.get("acme", other.integration_id).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&other));
    assert_eq!(db.audit("acme").await.len(), audit_before);

    // Names compare exactly: case and accents make different names.
    db.create("acme", spec("Main")).await;
    db.create("acme", spec("mäin")).await;
    // The freed name can be reused.
    db.change(&first, update(&first, spec("renamed"))).await;
    db.create("acme", spec("main")).await;
    let report = db.store.verify_audit(None).await.unwrap();
    assert_eq!(report.problem, None);
}

async fn stale_versions_and_invalid_transitions_are_refused(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let integration = db.create("acme", spec("main")).await;
    let stale = Change::Update {
        expected_version: 7,
        spec: spec("changed"),
    };
    let refused = db
        .store
        .change(&actor("acme"), integration.integration_id, stale, now())
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Change(ChangeError::VersionMismatch {
                expected: 7,
                current: 1
            }))
        ),
        "{refused:?}"
    );
    let stale_delete = Change::Delete {
        expected_version: Some(0),
    };
    let refused = db
        .store
        .change(
            &actor("acme"),
            integration.integration_id,
            stale_delete,
            now(),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Change(ChangeError::VersionMismatch { .. }))
        ),
        "{refused:?}"
    );
    let refused = db
        .store
        .change(
            &actor("acme"),
            integration.integration_id,
            lifecycle(Input::Resume),
            now(),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Change(ChangeError::InvalidTransition(_)))
        ),
        "{refused:?}"
    );
    let stored = db
        .store
        .get("acme", integration.integration_id)
        .await
        .unwrap();
    assert_eq!(stored.as_ref(), Some(&integration));
    assert_eq!(db.audit("acme").await.len(), 1);

    // The current version goes through, and the next stale one is refused again.
    let updated = db
        .change(&integration, update(&integration, spec("changed")))
        .await;
    assert_eq!(
        updated.map(|i| (i.name, i.version)),
        Some(("changed".into(), 2))
    );
    let again = db
        .store
        .change(
            &actor("acme"),
            integration.integration_id,
            update(&integration, spec("again")),
            now(),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Change(_))), "{again:?}");
}

/// Lists with `query`, paging `page_size` at a time, checking `has_more` on the way.
async fn list_paged(
    db: &TestDb,
    tenant: &str,
    query: &ListQuery,
    page_size: u32,
) -> Vec<Integration> {
    let mut query = ListQuery {
        limit: page_size,
        after: None,
        ..query.clone()
    };
    let mut all = Vec::new();
    loop {
        let page = db.store.list(tenant, &query).await.unwrap();
        assert!(page.items.len() <= page_size as usize);
        let Some(last) = page.items.last() else {
            assert!(!page.has_more);
            return all;
        };
        query.after = Some((last.name.clone(), last.integration_id));
        all.extend(page.items);
        if !page.has_more {
            return all;
        }
    }
}

/// `list_json` pages with `query`, `page_size` at a time: every page's items, parsed, are the
/// serialized [`Integration`]s `list` answers for the same page (so every field of every item,
/// as a GET would serialize it), and its cursor is `list`'s last item exactly when `list` says
/// more follows.
async fn check_json_pages(db: &TestDb, tenant: &str, query: &ListQuery, page_size: u32) {
    let mut query = ListQuery {
        limit: page_size,
        after: None,
        ..query.clone()
    };
    loop {
        let typed = db.store.list(tenant, &query).await.unwrap();
        let json = db.store.list_json(tenant, &query).await.unwrap();
        let items: serde_json::Value =
            serde_json::from_str(&format!("[{}]", json.items)).expect("the items are JSON");
        assert_eq!(
            items,
            serde_json::to_value(&typed.items).unwrap(),
            "{query:?}"
        );
        let last = typed
            .items
            .last()
            .map(|last| (last.name.clone(), last.integration_id));
        assert_eq!(json.next, last.filter(|_| typed.has_more), "{query:?}");
        match json.next {
            Some(next) => query.after = Some(next),
            None => return,
        }
    }
}

async fn list_json_is_the_serialized_list(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let at = |seconds: i64, nanos: u32| Utc.timestamp_opt(seconds, nanos).unwrap();
    // Every optional field set, the engine's fields too, and times with 0, 3, 6 and 9
    // fractional digits (the store keeps microseconds).
    let mut full = Integration::new("acme", full_spec("full"), "alice", at(1_700_000_000, 0));
    full.status = Status::Paused;
    full.paused = true;
    full.pause_reason = Some("maintenance \"window\"\n\u{7}".into());
    full.pause_ticket = Some("CHG-42".into());
    full.last_tested_at = Some(at(1_700_000_002, 120_000_000));
    full.last_test_success = Some(false);
    full.consecutive_failures = 4;
    full.consecutive_successes = 2;
    full.modified_at = at(1_700_000_001, 999_999_000);
    full.version = 7;
    let mut succeeded = Integration::new("acme", full_spec("full-2"), "alice", now());
    succeeded.last_tested_at = Some(at(1_700_000_003, 123_456_789));
    succeeded.last_test_success = Some(true);
    succeeded.created_at = at(1_700_000_000, 1_000);
    succeeded.modified_at = at(1_700_000_000, 1_000_000);
    // Nothing optional set.
    let minimal = Integration::new("acme", spec("minimal"), "alice", now());
    let mut unicode = Integration::new("acme", spec("é — 日本 \u{1F600}"), "alice", now());
    unicode.tags = vec!["alpha".into()];
    let foreign = Integration::new("globex", full_spec("full"), "alice", now());
    for integration in [&full, &succeeded, &minimal, &unicode, &foreign] {
        db.store.create(integration).await.unwrap();
    }

    for query in [
        list_all(),
        ListQuery {
            tag: Some("alpha".into()),
            ..list_all()
        },
        ListQuery {
            status: Some(Status::Paused),
            ..list_all()
        },
        ListQuery {
            kind: Some(IntegrationType::Registry),
            provider: Some("harbor".into()),
            environment: Some("prod".into()),
            name_prefix: Some("full".into()),
            ..list_all()
        },
        ListQuery {
            provider: Some("nope".into()),
            ..list_all()
        },
    ] {
        for page_size in [1, 2, 500] {
            check_json_pages(&db, "acme", &query, page_size).await;
        }
    }

    // Each item is what a GET of it serializes.
    let items = listed_as_got(&db).await;
    // The values a mistake would most likely get wrong, spelled out.
    let listed_full = items.iter().find(|i| i["name"] == "full").unwrap();
    assert_eq!(listed_full["paused"], json!(true));
    assert_eq!(listed_full["lastTestSuccess"], json!(false));
    assert_eq!(listed_full["createdAt"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(
        listed_full["lastTestedAt"],
        json!("2023-11-14T22:13:22.120Z")
    );
    assert_eq!(
        listed_full["modifiedAt"],
        json!("2023-11-14T22:13:21.999999Z")
    );
    assert_eq!(listed_full["configuration"], json!(full.configuration));
    assert!(listed_full.get("consecutiveSuccesses").is_none());
    let listed_minimal = items.iter().find(|i| i["name"] == "minimal").unwrap();
    assert_eq!(listed_minimal["lastTestSuccess"], json!(null));
    assert_eq!(listed_minimal["lastTestedAt"], json!(null));
    assert_eq!(listed_minimal["healthCheck"], json!({}));
    assert_eq!(listed_minimal["paused"], json!(false));
    let listed_succeeded = items.iter().find(|i| i["name"] == "full-2").unwrap();
    assert_eq!(
        listed_succeeded["lastTestedAt"],
        json!("2023-11-14T22:13:23.123456Z")
    );
    assert_eq!(
        listed_succeeded["createdAt"],
        json!("2023-11-14T22:13:20.000001Z")
    );
    assert_eq!(
        listed_succeeded["modifiedAt"],
        json!("2023-11-14T22:13:20.001Z")
    );

    // A change rewrites the row (the database renders its JSON again); a test's result only
    // the fields a check rewrites (rendered at read time).
    let mut renamed = unicode.spec();
    renamed.name = "renamed".into();
    renamed.description = Some("now described".into());
    renamed.tags = vec!["beta".into()];
    db.change(&unicode, update(&unicode, renamed)).await;
    db.lifecycle(&minimal, Input::Submit).await;
    let tested_at = at(1_700_000_009, 500_000);
    db.store
        .record_test(
            &actor("acme"),
            minimal.integration_id,
            &TestSummary {
                success: true,
                failure_class: None,
                latency_ms: 3,
                skipped: false,
                tested_at,
            },
            tested_at,
        )
        .await
        .unwrap();
    let items = listed_as_got(&db).await;
    let listed_minimal = items.iter().find(|i| i["name"] == "minimal").unwrap();
    assert_eq!(listed_minimal["status"], "pending_verification");
    assert_eq!(
        listed_minimal["lastTestedAt"],
        "2023-11-14T22:13:29.000500Z"
    );
    assert_eq!(listed_minimal["lastTestSuccess"], true);
    let listed_renamed = items.iter().find(|i| i["name"] == "renamed").unwrap();
    assert_eq!(listed_renamed["description"], "now described");
    assert_eq!(listed_renamed["tags"], json!(["beta"]));
    for page_size in [1, 3] {
        check_json_pages(&db, "acme", &list_all(), page_size).await;
    }
}

/// The tenant `acme`'s whole list from `list_json`, each item checked against a GET of it.
async fn listed_as_got(db: &TestDb) -> Vec<serde_json::Value> {
    let page = db.store.list_json("acme", &list_all()).await.unwrap();
    let items: Vec<serde_json::Value> = serde_json::from_str(&format!("[{}]", page.items)).unwrap();
    assert_eq!(page.next, None);
    for item in &items {
        let id: Uuid = item["integrationId"].as_str().unwrap().parse().unwrap();
        let got = db.store.get("acme", id).await.unwrap().expect("listed");
        assert_eq!(*item, serde_json::to_value(&got).unwrap());
    }
    items
}

/// Name, type, provider, environment, tags, and the lifecycle inputs that set its status.
type ListFixture = (
    &'static str,
    IntegrationType,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    &'static [Input],
);

async fn every_list_filter(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    use IntegrationType as T;
    let rows: &[ListFixture] = &[
        (
            "alpha",
            T::Registry,
            "harbor",
            Some("prod"),
            &["eu", "gold"],
            &[Input::Submit],
        ),
        (
            "Alpha2",
            T::Scm,
            "github",
            Some("dev"),
            &["eu"],
            &[Input::Activate],
        ),
        ("beta", T::Ci, "jenkins", None, &[], &[]),
        (
            "beta-1",
            T::Ci,
            "jenkins",
            Some("prod"),
            &["gold", "gold"],
            &[Input::Activate, Input::Pause],
        ),
        (
            "beta-2",
            T::Host,
            "tcp",
            Some("prod"),
            &["us"],
            &[Input::Activate],
        ),
        ("betb", T::Feed, "http", Some("dev"), &["eu", "us"], &[]),
        ("d", T::Artifact, "http", None, &["gold"], &[Input::Submit]),
        ("d\u{10FFFF}x", T::Artifact, "http", None, &["gold"], &[]),
        ("d\u{10FFFF}\u{10FFFF}", T::Artifact, "http", None, &[], &[]),
        (
            "e",
            T::Registry,
            "oci-registry",
            Some("staging"),
            &["eu"],
            &[Input::Activate],
        ),
        (
            "é-accent",
            T::Registry,
            "oci-registry",
            Some("prod"),
            &["eu"],
            &[],
        ),
        (
            "zulu",
            T::Scm,
            "gitlab",
            Some("prod"),
            &["gold", "us"],
            &[Input::Submit, Input::Pause],
        ),
    ];
    for &(name, kind, provider, environment, tags, inputs) in rows {
        let mut spec = spec(name);
        spec.kind = kind;
        spec.provider = provider.to_owned();
        spec.environment = environment.map(str::to_owned);
        spec.tags = tags.iter().map(|t| t.to_string()).collect();
        let mut integration = db.create("acme", spec.clone()).await;
        for &input in inputs {
            integration = db.lifecycle(&integration, input).await;
        }
        // The same rows in another tenant must never show up in acme's lists.
        db.create("globex", spec).await;
    }

    let queries: Vec<ListQuery> = {
        let q = list_all;
        let mut queries = vec![
            q(),
            ListQuery {
                kind: Some(T::Ci),
                ..q()
            },
            ListQuery {
                kind: Some(T::Artifact),
                ..q()
            },
            ListQuery {
                provider: Some("http".into()),
                ..q()
            },
            ListQuery {
                provider: Some("nope".into()),
                ..q()
            },
            ListQuery {
                environment: Some("prod".into()),
                ..q()
            },
            ListQuery {
                tag: Some("gold".into()),
                ..q()
            },
            ListQuery {
                tag: Some("eu".into()),
                ..q()
            },
            ListQuery {
                tag: Some("nope".into()),
                ..q()
            },
            ListQuery {
                kind: Some(T::Ci),
                environment: Some("prod".into()),
                ..q()
            },
            ListQuery {
                tag: Some("gold".into()),
                status: Some(Status::Paused),
                ..q()
            },
            ListQuery {
                tag: Some("eu".into()),
                name_prefix: Some("a".into()),
                ..q()
            },
            ListQuery {
                tag: Some("us".into()),
                provider: Some("tcp".into()),
                ..q()
            },
        ];
        for status in Status::ALL {
            queries.push(ListQuery {
                status: Some(status),
                ..q()
            });
        }
        for prefix in [
            "",
            "a",
            "A",
            "bet",
            "beta",
            "beta-",
            "d",
            "d\u{10FFFF}",
            "é",
            "z",
            "zz",
        ] {
            queries.push(ListQuery {
                name_prefix: Some(prefix.into()),
                ..q()
            });
        }
        queries
    };

    check_lists(&db, &queries).await;

    // Renaming and retagging moves an integration between tag lists and within the order;
    // deleting removes it from all of them.
    let alpha = find(&db, "alpha").await;
    let mut renamed = alpha.spec();
    renamed.name = "omega".into();
    renamed.tags = vec!["gold".into(), "new".into()];
    db.change(&alpha, update(&alpha, renamed)).await;
    let beta1 = find(&db, "beta-1").await;
    let deleted = db
        .change(
            &beta1,
            Change::Delete {
                expected_version: Some(beta1.version),
            },
        )
        .await;
    assert_eq!(deleted, None);
    let mut queries = queries;
    queries.push(ListQuery {
        tag: Some("new".into()),
        ..list_all()
    });
    check_lists(&db, &queries).await;
}

async fn find(db: &TestDb, name: &str) -> Integration {
    let query = ListQuery {
        name_prefix: Some(name.into()),
        limit: 1,
        ..Default::default()
    };
    let found = db.store.list("acme", &query).await.unwrap().items.remove(0);
    assert_eq!(found.name, name);
    found
}

/// Checks each query, whole and in pages of 2, against filtering acme's rows in memory.
async fn check_lists(db: &TestDb, queries: &[ListQuery]) {
    let mut all = list_paged(db, "acme", &list_all(), 500).await;
    // The unfiltered list is itself checked against reading every row by id.
    for integration in &all {
        let stored = db
            .store
            .get("acme", integration.integration_id)
            .await
            .unwrap();
        assert_eq!(stored.as_ref(), Some(integration));
    }
    all.sort_by(|a, b| {
        (a.name.as_str(), a.integration_id).cmp(&(b.name.as_str(), b.integration_id))
    });
    for query in queries {
        let expected: Vec<&str> = all
            .iter()
            .filter(|i| matches(i, query))
            .map(|i| i.name.as_str())
            .collect();
        let whole = db.store.list("acme", query).await.unwrap();
        assert!(!whole.has_more, "{query:?}");
        let names: Vec<&str> = whole.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, expected, "{query:?}");
        let paged = list_paged(db, "acme", query, 2).await;
        let names: Vec<&str> = paged.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, expected, "{query:?} in pages of 2");
    }
}

fn matches(integration: &Integration, query: &ListQuery) -> bool {
    query.kind.is_none_or(|kind| integration.kind == kind)
        && query
            .status
            .is_none_or(|status| integration.status == status)
        && query
            .provider
            .as_ref()
            .is_none_or(|provider| &integration.provider == provider)
        && query
            .environment
            .as_ref()
            .is_none_or(|environment| integration.environment.as_ref() == Some(environment))
        && query
            .tag
            .as_ref()
            .is_none_or(|tag| integration.tags.contains(tag))
        && query
            .name_prefix
            .as_ref()
            .is_none_or(|prefix| integration.name.starts_with(prefix.as_str()))
}

async fn keyset_pages_see_each_row_once_under_concurrent_inserts(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let mut existing = HashMap::new();
    for _ in 0..1000 {
        // Random names, so name order and id (creation) order disagree.
        let name = format!("item-{}", Uuid::new_v4().simple());
        let integration = db.create("acme", spec(&name)).await;
        existing.insert(integration.integration_id, name);
    }
    db.create("globex", spec("item-globex")).await;

    let store = db.store.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut inserted = 0u32;
        while stop_rx.try_recv().is_err() {
            let name = format!("item-{}", Uuid::new_v4().simple());
            let integration = Integration::new("acme", spec(&name), "carol", now());
            store.create(&integration).await.expect("concurrent create");
            inserted += 1;
            tokio::task::yield_now().await;
        }
        inserted
    });
    // Page only once the writer is demonstrably running.
    let beyond_existing = AuditQuery {
        after_seq: Some(1000),
        limit: 1,
        ..Default::default()
    };
    eventually("the concurrent writer", Duration::from_secs(10), || async {
        let page = db.store.list_audit("acme", &beyond_existing).await.unwrap();
        !page.items.is_empty()
    })
    .await;

    let mut query = ListQuery {
        limit: 7,
        ..Default::default()
    };
    let mut seen: Vec<(String, Uuid)> = Vec::new();
    let mut pages = 0;
    loop {
        let page = db.store.list("acme", &query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 7);
        seen.extend(
            page.items
                .iter()
                .map(|i| (i.name.clone(), i.integration_id)),
        );
        match (page.has_more, page.items.last()) {
            (true, Some(last)) => query.after = Some((last.name.clone(), last.integration_id)),
            _ => break,
        }
    }
    stop_tx.send(()).unwrap();
    let inserted = writer.await.unwrap();
    assert!(inserted > 0, "the writer inserted nothing while we paged");

    // Strictly increasing (name, id): no row twice, none out of order.
    for pair in seen.windows(2) {
        assert!(pair[0] < pair[1], "{:?} then {:?}", pair[0], pair[1]);
    }
    // Every row that existed before paging began was seen (exactly once, by the above).
    let ids: HashMap<Uuid, &str> = seen.iter().map(|(name, id)| (*id, name.as_str())).collect();
    for (id, name) in &existing {
        assert_eq!(ids.get(id), Some(&name.as_str()), "{name} missing");
    }
    assert!(seen.iter().all(|(name, _)| name != "item-globex"));
    assert!(pages >= 1000 / 7, "{pages} pages");
}

// --- Audit ----------------------------------------------------------------------------------

async fn every_change_appends_one_audit_entry(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let created = db.create("acme", full_spec("main")).await;
    let bystander = db.create("acme", spec("bystander")).await;

    let mut changed = full_spec("main");
    changed.description = Some("renamed registry".into());
    changed.tags = vec!["new".into()];
    let pause = Change::Lifecycle {
        input: Input::Pause,
        reason: Some("maintenance window".into()),
        ticket: Some("OPS-42".into()),
    };
    let steps: Vec<(Change, &str, Option<&str>, Option<&str>)> = vec![
        (update(&created, changed), "integration.update", None, None),
        (lifecycle(Input::Submit), "integration.submit", None, None),
        (
            lifecycle(Input::Check(CheckOutcome::Success)),
            "integration.check",
            None,
            None,
        ),
        (
            lifecycle(Input::Check(CheckOutcome::Failure(FailureClass::Timeout))),
            "integration.check",
            None,
            None,
        ),
        (
            pause,
            "integration.pause",
            Some("maintenance window"),
            Some("OPS-42"),
        ),
        (lifecycle(Input::Resume), "integration.resume", None, None),
    ];
    let mut previous = created.clone();
    let mut count = db.audit("acme").await.len();
    assert_eq!(count, 2);
    for (change, action, reason, ticket) in steps {
        let next = db.change(&previous, change).await.expect("not deleted");
        count += 1;
        let audit = db.audit("acme").await;
        assert_eq!(audit.len(), count, "{action}");
        let entry = audit.last().unwrap();
        assert_eq!(entry.action, action);
        assert_eq!(entry.actor, "bob");
        assert_eq!(entry.target_type, "integration");
        assert_eq!(entry.target_id, created.integration_id);
        assert_eq!(entry.sequence, count as i64);
        assert_eq!(entry.reason.as_deref(), reason);
        assert_eq!(entry.ticket.as_deref(), ticket);
        assert_eq!(entry.occurred_at, next.modified_at);
        assert_eq!(entry.before, Some(previous.audit_summary()));
        assert_eq!(entry.after, Some(next.audit_summary()));
        previous = next;
    }
    let integration = previous;
    let gone = db
        .change(
            &integration,
            Change::Delete {
                expected_version: Some(integration.version),
            },
        )
        .await;
    assert_eq!(gone, None);
    assert_eq!(
        db.store
            .get("acme", integration.integration_id)
            .await
            .unwrap(),
        None
    );
    let audit = db.audit("acme").await;
    let last = audit.last().unwrap();
    assert_eq!(last.action, "integration.delete");
    assert_eq!(last.before, Some(integration.audit_summary()));
    assert_eq!(last.after, None);

    // The first entries: each creation, with the creator and the initial state.
    assert_eq!(audit[0].action, "integration.create");
    assert_eq!(audit[0].actor, "alice");
    assert_eq!(audit[0].before, None);
    assert_eq!(audit[0].after, Some(created.audit_summary()));
    assert_eq!(audit[0].occurred_at, created.created_at);
    assert_eq!(audit[1].target_id, bystander.integration_id);

    // Filtered by integration, in pages, in sequence order.
    let mut query = AuditQuery {
        integration_id: Some(integration.integration_id),
        after_seq: None,
        limit: 3,
    };
    let mut filtered = Vec::new();
    loop {
        let page = db.store.list_audit("acme", &query).await.unwrap();
        query.after_seq = page.items.last().map(|e| e.sequence);
        filtered.extend(page.items);
        if !page.has_more {
            break;
        }
    }
    let expected: Vec<i64> = audit
        .iter()
        .filter(|e| e.target_id == integration.integration_id)
        .map(|e| e.sequence)
        .collect();
    assert_eq!(
        filtered.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(expected.len(), 8);

    let report = db.store.verify_audit(Some("acme")).await.unwrap();
    assert_eq!(
        (report.tenants, report.entries, report.problem),
        (1, 9, None)
    );
}

async fn audit_log_is_append_only(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    db.create("acme", spec("main")).await;
    let mut raw = db.raw().await;
    let mut attempts = vec![
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ];
    if backend == Backend::Postgres {
        attempts.push("TRUNCATE audit_log");
    }
    for sql in attempts {
        let refused = raw.execute(sql).await;
        let error = refused.expect_err(sql).to_string();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    assert_eq!(db.audit("acme").await[0].actor, "alice");
    let report = db.store.verify_audit(None).await.unwrap();
    assert_eq!(
        (report.tenants, report.entries, report.problem),
        (1, 1, None)
    );
}

async fn tampering_is_detected_at_the_first_bad_entry(backend: Backend) {
    use ChainProblemKind::*;
    // `zeta` has entries 1..=5; `acme` (verified first) 3 intact ones. Each case: what the
    // attacker does, the first bad entry's sequence and kind, and how many of zeta's entries
    // verify before it.
    let cases: &[(&str, &str, i64, ChainProblemKind, u64)] = &[
        (
            "edit an entry",
            "UPDATE audit_log SET actor = 'mallory' WHERE tenant_id = 'zeta' AND sequence = 3",
            3,
            HashMismatch,
            2,
        ),
        (
            "edit a snapshot",
            "UPDATE audit_log SET after_state = NULL WHERE tenant_id = 'zeta' AND sequence = 2",
            2,
            HashMismatch,
            1,
        ),
        (
            "delete a middle entry",
            "DELETE FROM audit_log WHERE tenant_id = 'zeta' AND sequence = 3",
            4,
            SequenceGap,
            2,
        ),
        (
            "delete the last entry",
            "DELETE FROM audit_log WHERE tenant_id = 'zeta' AND sequence = 5",
            5,
            MissingTail,
            4,
        ),
        (
            "reorder two entries",
            "UPDATE audit_log SET sequence = -2 WHERE tenant_id = 'zeta' AND sequence = 2; \
             UPDATE audit_log SET sequence = 2 WHERE tenant_id = 'zeta' AND sequence = 4; \
             UPDATE audit_log SET sequence = 4 WHERE tenant_id = 'zeta' AND sequence = -2;",
            2,
            HashMismatch,
            1,
        ),
        (
            "delete an entry and renumber the rest",
            "DELETE FROM audit_log WHERE tenant_id = 'zeta' AND sequence = 3; \
             UPDATE audit_log SET sequence = 3 WHERE tenant_id = 'zeta' AND sequence = 4; \
             UPDATE audit_log SET sequence = 4 WHERE tenant_id = 'zeta' AND sequence = 5; \
             UPDATE audit_heads SET sequence = 4 WHERE tenant_id = 'zeta';",
            3,
            HashMismatch,
            2,
        ),
        (
            "forge an entry before the first",
            "CREATE TEMPORARY TABLE forged AS \
                 SELECT * FROM audit_log WHERE tenant_id = 'zeta' AND sequence = 1; \
             UPDATE forged SET sequence = 0; \
             INSERT INTO audit_log SELECT * FROM forged;",
            0,
            SequenceGap,
            0,
        ),
    ];
    for &(case, sql, sequence, kind, verified) in cases {
        let db = TestDb::fresh(backend).await;
        for _ in 0..3 {
            db.create("acme", spec(&Uuid::new_v4().to_string())).await;
        }
        let mut zeta = db.create("zeta", spec("main")).await;
        for n in 0..4 {
            zeta = db
                .change(&zeta, update(&zeta, spec(&format!("main-{n}"))))
                .await
                .unwrap();
        }
        let intact = db.store.verify_audit(None).await.unwrap();
        assert_eq!(
            (intact.tenants, intact.entries, intact.problem.clone()),
            (2, 8, None),
            "{case}"
        );

        let mut raw = db.raw().await;
        raw.disable_append_only().await;
        raw.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));

        let report = db.store.verify_audit(None).await.unwrap();
        let problem = report
            .problem
            .unwrap_or_else(|| panic!("{case}: not detected"));
        assert_eq!(
            (problem.tenant_id.as_str(), problem.sequence, problem.kind),
            ("zeta", sequence, kind),
            "{case}: {problem}"
        );
        assert_eq!(report.tenants, 2, "{case}");
        assert_eq!(report.entries, 3 + verified, "{case}");
        let only_acme = db.store.verify_audit(Some("acme")).await.unwrap();
        assert_eq!((only_acme.entries, only_acme.problem), (3, None), "{case}");
    }
}

async fn intact_chains_verify(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let empty = db.store.verify_audit(None).await.unwrap();
    assert_eq!((empty.tenants, empty.entries, empty.problem), (0, 0, None));

    for (tenant, count) in [("acme", 3), ("globex", 1), ("initech", 7)] {
        for n in 0..count {
            db.create(tenant, spec(&format!("{tenant}-{n}"))).await;
        }
    }
    let all = db.store.verify_audit(None).await.unwrap();
    assert_eq!((all.tenants, all.entries, all.problem), (3, 11, None));
    let one = db.store.verify_audit(Some("initech")).await.unwrap();
    assert_eq!((one.tenants, one.entries, one.problem), (1, 7, None));
    let unknown = db.store.verify_audit(Some("nobody")).await.unwrap();
    assert_eq!(
        (unknown.tenants, unknown.entries, unknown.problem),
        (1, 0, None)
    );

    // Each tenant's chain starts at 1 and links entry to entry.
    let audit = db.audit("initech").await;
    assert_eq!(
        audit.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(
        audit[0].prev_hash,
        catalogd::store::audit_chain::GENESIS_HASH
    );
    for pair in audit.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    // Reopening the store (migrations again) keeps everything.
    let reopened = store::open(&store_options(&db.url, 8)).await.unwrap();
    let again = reopened.verify_audit(None).await.unwrap();
    assert_eq!((again.tenants, again.entries, again.problem), (3, 11, None));
}

async fn concurrent_changes_keep_one_chain(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let shared = db.create("acme", spec("shared")).await;
    let shared = db.lifecycle(&shared, Input::Activate).await;
    let mut tasks = Vec::new();
    for task in 0..2 {
        let own = db.create("acme", spec(&format!("own-{task}"))).await;
        let store = db.store.clone();
        let shared_id = shared.integration_id;
        tasks.push(tokio::spawn(async move {
            let actor = actor("acme");
            let mut own = own;
            for n in 0..50 {
                // Alternate between this task's own integration (version-checked updates)
                // and the shared one (health checks, no version), so both the row lock and
                // the chain head are contended.
                if n % 2 == 0 {
                    let change = update(&own, spec(&format!("own-{task}-{n}")));
                    own = store
                        .change(&actor, own.integration_id, change, now())
                        .await
                        .unwrap()
                        .unwrap();
                } else {
                    let outcome = if n % 4 == 1 {
                        CheckOutcome::Success
                    } else {
                        CheckOutcome::Failure(FailureClass::Connect)
                    };
                    store
                        .change(&actor, shared_id, lifecycle(Input::Check(outcome)), now())
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // 3 creations, 1 activation, 2 × 50 changes.
    let report = db.store.verify_audit(None).await.unwrap();
    assert_eq!(
        (report.tenants, report.entries, report.problem),
        (1, 104, None)
    );
    let audit = db.audit("acme").await;
    assert_eq!(
        audit.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=104).collect::<Vec<_>>()
    );
    let shared = db
        .store
        .get("acme", shared.integration_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shared.version, 2 + 50);
}

async fn undecodable_rows_are_corrupt(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let integration = db.create("acme", spec("main")).await;
    let mut raw = db.raw().await;
    raw.execute("UPDATE integrations SET status = 'exploded'")
        .await
        .unwrap();
    let got = db.store.get("acme", integration.integration_id).await;
    assert!(matches!(got, Err(StoreError::Corrupt(_))), "{got:?}");
    let listed = db.store.list("acme", &list_all()).await;
    assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
    let changed = db
        .store
        .change(
            &actor("acme"),
            integration.integration_id,
            lifecycle(Input::Submit),
            now(),
        )
        .await;
    assert!(
        matches!(changed, Err(StoreError::Corrupt(_))),
        "{changed:?}"
    );

    raw.execute("UPDATE integrations SET status = 'draft', consecutive_failures = -1")
        .await
        .unwrap();
    let got = db.store.get("acme", integration.integration_id).await;
    assert!(matches!(got, Err(StoreError::Corrupt(_))), "{got:?}");
}

// --- Opening --------------------------------------------------------------------------------

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in [
        "mysql://localhost/catalogd",
        "catalogd.db",
        "",
        "http://example.com",
    ] {
        let opened = store::open(&store_options(url, 8)).await;
        assert!(
            matches!(opened, Err(StoreError::UnsupportedUrl)),
            "{url}: {:?}",
            opened.err()
        );
    }
}

#[tokio::test]
async fn sqlite_creates_missing_directories_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/catalogd.db");
    let url = format!("sqlite://{}", path.display());
    let integration = {
        let store = store::open(&store_options(&url, 8)).await.unwrap();
        let integration = Integration::new("acme", full_spec("main"), "alice", now());
        store.create(&integration).await.unwrap();
        integration
    };
    assert!(path.exists());
    let store = store::open(&store_options(&url, 8)).await.unwrap();
    let got = store.get("acme", integration.integration_id).await.unwrap();
    assert_eq!(got, Some(integration));
}

#[tokio::test]
async fn sqlite_in_memory() {
    let store = store::open(&store_options("sqlite::memory:", 8))
        .await
        .unwrap();
    let integration = Integration::new("acme", full_spec("main"), "alice", now());
    store.create(&integration).await.unwrap();
    let got = store.get("acme", integration.integration_id).await.unwrap();
    assert_eq!(got, Some(integration));
    // Another in-memory store is another database.
    let other = store::open(&store_options("sqlite::memory:", 8))
        .await
        .unwrap();
    assert!(other
        .list("acme", &list_all())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn postgresql_scheme_and_password_option() {
    let url = catalogd_testkit::postgres::fresh_database_url().await;
    let url = url.replacen("postgres://", "postgresql://", 1);
    // The test server trusts local connections, so any password is accepted: this checks
    // that the option is applied without breaking the connection.
    let options = StoreOptions {
        password: Some(secrecy::SecretString::from("not-needed")),
        ..store_options(&url, 8)
    };
    let store = store::open(&options).await.unwrap();
    store.ping().await.unwrap();
    let integration = Integration::new("acme", spec("main"), "alice", now());
    store.create(&integration).await.unwrap();
    assert_eq!(store.verify_audit(None).await.unwrap().entries, 1);
}

// --- Import ---------------------------------------------------------------------------------

/// Creations an import test writes: more than one multi-row statement (128) and one round
/// (1,024) of the store's import hold.
const IMPORTED: usize = 1_100;

/// The `i`th integration an import creates in tenant `acme`: tags repeated (one row each)
/// and shared, every seventh with every field set.
fn imported(i: usize) -> Integration {
    let name = format!("imported-{i:04}");
    let mut spec = if i.is_multiple_of(7) {
        full_spec(&name)
    } else {
        spec(&name)
    };
    spec.tags = vec![format!("group-{}", i % 3), "all".into(), "all".into()];
    Integration::new("acme", spec, "carol", now())
}

/// `creations` with `change` of `target` after the first `split` of them: the operations an
/// import plan makes, in its order.
fn operations(
    creations: &[Integration],
    split: usize,
    target: &Integration,
    change: Change,
) -> Vec<ImportOp> {
    let create = |i: &Integration| ImportOp::Create(Box::new(i.clone()));
    let mut operations: Vec<ImportOp> = creations[..split].iter().map(create).collect();
    operations.push(ImportOp::Change(target.integration_id, Box::new(change)));
    operations.extend(creations[split..].iter().map(create));
    operations
}

/// Each creation of an import is stored, listed, audited and evented as a single create
/// would be (the store writes them several rows per statement), in the plan's order.
async fn an_import_writes_each_creation_as_a_create_would(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let existing = db.create("acme", full_spec("existing")).await;
    let creations: Vec<Integration> = (0..IMPORTED).map(imported).collect();
    let split = 600;
    let mut described = full_spec("existing");
    described.description = Some("changed by the import".into());
    // The progress a terminal's bar shows: every operation written (the creations in
    // rounds, the change on its own).
    let progress = catalogd::store::ImportProgress::default();
    db.store
        .import_counted(
            &actor("acme"),
            operations(&creations, split, &existing, update(&existing, described)),
            now(),
            &progress,
        )
        .await
        .expect("import");
    assert_eq!(
        progress.done.load(std::sync::atomic::Ordering::Relaxed),
        IMPORTED as u64 + 1
    );

    // Stored, and listed (the list JSON the triggers keep) as got, tag rows included.
    let all = list_paged(&db, "acme", &list_all(), 500).await;
    assert_eq!(all.len(), IMPORTED + 1);
    for created in &creations {
        let got = db
            .store
            .get("acme", created.integration_id)
            .await
            .unwrap()
            .expect("imported");
        assert_eq!(
            (got.spec(), got.status, got.version, &got.created_by),
            (created.spec(), Status::Draft, 1, &"carol".to_owned()),
            "{}",
            created.name
        );
    }
    check_json_pages(&db, "acme", &list_all(), 500).await;
    let group_1 = (0..IMPORTED).filter(|i| i % 3 == 1).count();
    for (tag, expected) in [("group-1", group_1), ("all", IMPORTED)] {
        let query = ListQuery {
            tag: Some(tag.into()),
            ..list_all()
        };
        assert_eq!(list_paged(&db, "acme", &query, 500).await.len(), expected);
    }

    // One audit entry each, chained in the plan's order.
    let audit = db.audit("acme").await;
    let targets: Vec<(Uuid, &str)> = audit
        .iter()
        .map(|e| (e.target_id, e.action.as_str()))
        .collect();
    let mut expected = vec![(existing.integration_id, "integration.create")];
    let created = |i: &Integration| (i.integration_id, "integration.create");
    expected.extend(creations[..split].iter().map(created));
    expected.push((existing.integration_id, "integration.update"));
    expected.extend(creations[split..].iter().map(created));
    assert_eq!(targets, expected);
    assert_eq!(audit[1].actor, "carol");
    assert_eq!(audit[1].after, Some(creations[0].audit_summary()));
    let report = db.store.verify_audit(Some("acme")).await.unwrap();
    assert_eq!(report.entries, IMPORTED as u64 + 2);
    assert_eq!(report.problem, None);

    // One `created` event each, numbered 1; a later change of an imported integration is its
    // event 2 (the sequence the insert set is the one the row carries).
    db.lifecycle(&creations[3], Input::Submit).await;
    let agreement = crate::storm::assert_store_audit_outbox_agree(&db.url).await;
    assert_eq!(agreement.integrations, IMPORTED + 1);
    assert_eq!(agreement.by_type["integration.created"], IMPORTED + 1);
    assert_eq!(agreement.events, IMPORTED + 3);
    let submitted: Vec<i64> = crate::storm::outbox(&db.url)
        .await
        .into_iter()
        .filter(|row| row.1 == creations[3].integration_id)
        .map(|row| row.2)
        .collect();
    assert_eq!(submitted, [1, 2]);
}

/// All or nothing: an import that fails at any point, in a multi-row statement or after
/// several, leaves the catalog, its audit trail and the outbox as they were.
async fn an_import_that_fails_anywhere_changes_nothing(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let existing = db.create("acme", spec("existing")).await;
    let creations: Vec<Integration> = (0..300).map(imported).collect();
    let taken = |name: &str| Integration::new("acme", spec(name), "carol", now());
    let touch = || {
        let mut touched = spec("existing");
        touched.description = Some("touched".into());
        update(&existing, touched)
    };
    let stale = Change::Update {
        expected_version: existing.version + 1,
        spec: spec("existing"),
    };
    let cases: Vec<(&str, Vec<ImportOp>)> = vec![
        ("a name already taken, last", {
            let mut creations = creations.clone();
            creations.push(taken("existing"));
            operations(&creations, 10, &existing, touch())
        }),
        ("one name twice in one statement", {
            let mut creations = creations.clone();
            creations.insert(5, taken("imported-0001"));
            operations(&creations, 200, &existing, touch())
        }),
        (
            "a stale change between creations",
            operations(&creations, 150, &existing, stale),
        ),
    ];
    let outbox_before = crate::storm::outbox(&db.url).await;
    let audit_before = db.audit("acme").await;
    for (case, operations) in cases {
        let result = db.store.import(&actor("acme"), operations, now()).await;
        assert!(result.is_err(), "{case}: {result:?}");
        let listed = list_paged(&db, "acme", &list_all(), 500).await;
        let listed: Vec<(Uuid, i64)> = listed
            .iter()
            .map(|i| (i.integration_id, i.version))
            .collect();
        assert_eq!(
            listed,
            [(existing.integration_id, existing.version)],
            "{case}"
        );
        assert_eq!(db.audit("acme").await, audit_before, "{case}");
        assert_eq!(crate::storm::outbox(&db.url).await, outbox_before, "{case}");
        let report = db.store.verify_audit(Some("acme")).await.unwrap();
        assert_eq!(report.problem, None, "{case}");
    }
    // The tag rows went too: the names are free, and an import of them succeeds.
    db.store
        .import(
            &actor("acme"),
            operations(&creations, 0, &existing, touch()),
            now(),
        )
        .await
        .expect("the same creations, valid");
    let query = ListQuery {
        tag: Some("all".into()),
        ..list_all()
    };
    assert_eq!(list_paged(&db, "acme", &query, 500).await.len(), 300);
}
