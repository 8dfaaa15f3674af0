//! Keyset pagination: 1,000 integrations read with a small page size while other clients keep
//! inserting. Every integration that existed before the walk is returned exactly once, and
//! the whole walk is in (name, id) order.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;

use crate::helpers::{integration, spawn_app, Backend};

async fn pages_return_each_integration_once_under_concurrent_inserts(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let admin = app.admin("acme");
    // Names in an order unrelated to creation order, so the index does the sorting.
    let names: Vec<String> = (0..1000)
        .map(|i| format!("int-{:04}", (i * 7919) % 1000))
        .collect();
    futures::stream::iter(names.iter())
        .for_each_concurrent(8, |name| {
            let (app, admin) = (app.clone(), admin.clone());
            async move {
                app.create_ok(&admin, &integration(name)).await;
            }
        })
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, admin, stop) = (app.clone(), admin.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // Interleaved with existing names ("int-0042-new-…") and at both ends.
                let name = match n % 3 {
                    0 => format!("int-{:04}-new-{n}", (n * 31) % 1000),
                    1 => format!("a-new-{n}"),
                    _ => format!("zz-new-{n}"),
                };
                app.create_ok(&admin, &integration(&name)).await;
                n += 1;
            }
            n
        })
    };
    let walked = app.list_all(&app.reader("acme"), "", 7).await;
    stop.store(true, Ordering::Relaxed);
    let inserted_during = writer.await.unwrap();
    assert!(inserted_during > 0, "the writer ran during the walk");

    let keys: Vec<(String, String)> = walked
        .iter()
        .map(|i: &Value| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["integrationId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "pages are in (name, id) order");
    let unique: HashSet<&String> = keys.iter().map(|(n, _)| n).collect();
    assert_eq!(unique.len(), keys.len(), "no integration is returned twice");
    for name in &names {
        assert!(unique.contains(name), "{name} is missing from the walk");
    }
}

catalogd_testkit::both_backends!(pages_return_each_integration_once_under_concurrent_inserts);
