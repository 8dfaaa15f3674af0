//! The status page in a real browser: headless Chromium (Debian's `chromium`, driven by
//! playwright-core under node: `tests/browser/status_page.mjs`) loads the page from a running
//! daemon with real history (checks against a local target that failed and recovered, plus
//! 89 backdated days of rollups written through the store), and this test checks what a
//! person sees in the rendered DOM — banner, names, states, percentages, 90 cells per bar,
//! the incident — in light, dark and at a 390 px phone width, runs axe-core in the page, and
//! keeps the screenshots under `target/status-screenshots/` for review.
//!
//! `scripts/lib/deps.sh` installs Chromium and puts playwright-core and axe-core (pinned) in
//! a cache directory it exports as `CATALOGD_BROWSER_MODULES`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::api::status_page::seeded_page;
use crate::engine::lifecycle::http_integration;
use crate::helpers::Backend;

/// Where deps.sh put playwright-core and axe-core.
fn browser_modules() -> PathBuf {
    if let Some(dir) = std::env::var_os("CATALOGD_BROWSER_MODULES") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("catalogd/browser-test-1/node_modules")
}

/// The page's percentage as the HTML writes it (two decimals, floored).
fn percent(ratio: &Value) -> String {
    match ratio.as_f64() {
        None => "no data".to_owned(),
        Some(ratio) => format!("{:.2}%", (ratio * 10_000.0).floor() / 100.0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_a_real_browser() {
    let modules = browser_modules();
    assert!(
        modules.join("playwright-core").is_dir() && modules.join("axe-core/axe.min.js").is_file(),
        "playwright-core and axe-core are not in {}: run `source scripts/lib/deps.sh` (it installs \
         them and Chromium)",
        modules.display()
    );
    let (app, steady, flaky, ids) = seeded_page(Backend::Sqlite).await;
    // Checks every second would change today's percentages between two reads: from now on,
    // hourly (the next check lands somewhere in the next hour).
    let admin = app.admin("acme");
    for (id, name, target) in [
        (&ids[0], "registry-eu", &flaky),
        (&ids[1], "ci-runners", &steady),
        (&ids[2], "artifact-store", &steady),
    ] {
        let mut body = http_integration(name, &target.url, 3600, 5);
        body["tags"] = serde_json::json!(["public"]);
        body["healthCheck"]["degradedAfter"] = serde_json::json!(2);
        body["healthCheck"]["failedAfter"] = serde_json::json!(3);
        let current: Value = app
            .get(&admin, &format!("/api/v1/integrations/{id}"))
            .await
            .json()
            .await
            .unwrap();
        body["version"] = current["version"].clone();
        let response = app
            .request(
                reqwest::Method::PUT,
                &format!("/api/v1/integrations/{id}"),
                Some(&admin),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let summary_now = || async {
        let mut summary: Value = app
            .client
            .get(app.url("/status/acme/summary.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        summary["generatedAt"] = Value::Null;
        summary
    };
    let html = app
        .client
        .get(app.url("/status/acme"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script"), "the page needs no JavaScript");

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let screenshots = root.join("target/status-screenshots");
    let script = root.join("tests/browser/status_page.mjs");
    // The page's data before and after the browser run: a check that still lands in between
    // (one in flight when the interval changed) changes it, and the run is repeated.
    let mut attempt = 0;
    let (summary, seen) = loop {
        attempt += 1;
        let before = summary_now().await;
        let (script, url, screenshots, modules) = (
            script.clone(),
            app.url("/status/acme"),
            screenshots.clone(),
            modules.clone(),
        );
        let output = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(script)
                .arg(url)
                .arg(&screenshots)
                .arg(&modules)
                .output()
        })
        .await
        .unwrap()
        .expect("node runs (deps.sh installs it with Chromium)");
        assert!(
            output.status.success(),
            "the browser script failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
        if summary_now().await == before || attempt == 5 {
            break (before, seen);
        }
    };

    let expected_names = ["artifact-store", "ci-runners", "registry-eu"];
    for variant in ["light", "dark", "phone"] {
        let run = &seen[variant];
        let dom = &run["dom"];
        assert_eq!(run["status"], 200, "{variant}");
        assert_eq!(dom["h1"], "Acme integrations", "{variant}");
        assert!(
            dom["banner"]
                .as_str()
                .unwrap()
                .ends_with("All systems operational"),
            "{variant}: {}",
            dom["banner"]
        );
        assert_eq!(dom["refresh"], "60");
        assert_eq!(dom["scripts"], 0);
        assert_eq!(
            dom["landmarks"],
            serde_json::json!(["header", "main", "footer"])
        );
        let components = dom["components"].as_array().unwrap();
        let names: Vec<&str> = components
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected_names, "{variant}");
        for component in components {
            let name = component["name"].as_str().unwrap();
            let data = summary["integrations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .unwrap();
            assert!(
                component["state"]
                    .as_str()
                    .unwrap()
                    .ends_with("Operational"),
                "{variant} {name}: the state in words"
            );
            assert!(
                component["width"].as_f64().unwrap() > 0.0,
                "{variant} {name} visible"
            );
            assert_eq!(component["cells"], 90, "{variant} {name}");
            for window in ["24h", "7d", "30d", "90d"] {
                assert_eq!(
                    component["uptime"][window],
                    percent(&data["uptime"][window]),
                    "{variant} {name} {window}: the page shows what summary.json says"
                );
            }
            assert!(component["barLabel"]
                .as_str()
                .unwrap()
                .starts_with(&format!("90-day uptime of {name}:")));
        }
        let registry = &components[2];
        assert_eq!(registry["cellClasses"][86], "o", "an outage 3 days ago");
        assert_eq!(registry["cellClasses"][79], "d", "degraded 10 days ago");
        assert_eq!(registry["cellClasses"][40], "", "an operational day");
        let runners = &components[1];
        assert!(
            runners["cellClasses"].as_array().unwrap()[..60]
                .iter()
                .all(|class| class == "n"),
            "ci-runners has no data before 30 days ago"
        );
        let incidents = dom["incidents"].as_array().unwrap();
        assert_eq!(incidents.len(), 1, "{variant}: {incidents:?}");
        assert_eq!(incidents[0][0], "registry-eu");
        assert!(incidents[0][4].as_str().unwrap().ends_with("Outage"));
        assert_eq!(dom["maintenance"], "No maintenance is scheduled.");
        assert_eq!(
            run["violations"],
            serde_json::json!([]),
            "{variant}: axe-core found accessibility violations"
        );
        let png = std::fs::metadata(run["screenshot"].as_str().unwrap()).unwrap();
        assert!(png.len() > 10_000, "{variant}: a real screenshot");
    }
    assert_ne!(
        seen["light"]["dom"]["background"], seen["dark"]["dom"]["background"],
        "prefers-color-scheme: dark switches the theme"
    );
    assert_ne!(
        seen["light"]["dom"]["textColour"],
        seen["dark"]["dom"]["textColour"]
    );
    let phone = &seen["phone"]["dom"];
    assert!(
        phone["scrollWidth"].as_u64() <= phone["clientWidth"].as_u64(),
        "no sideways scrolling at 390 px: {phone}"
    );
}
