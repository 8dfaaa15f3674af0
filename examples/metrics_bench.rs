//! Render time and size of `/metrics` at 10k and 100k integrations, per-integration series on
//! and off. Prints `figure, ours, baseline, ratio` lines; the baseline of "on" is the same
//! render with per-integration series off, and for context the same 7 series per integration
//! put through the `metrics` recorder (NOTES: 1.4 s / 126 MB for gauge+counter+histogram).
//!
//! `cargo run --release --example metrics_bench`

use std::time::{Duration, Instant};

use catalogd::metrics::{Exporter, IntegrationGauges};
use catalogd::store::history::Uptime;
use catalogd::store::stats::IntegrationLabels;
use catalogd_actors::{CheckOutcome, EngineStats};
use metrics_exporter_prometheus::PrometheusBuilder;
use uuid::Uuid;

fn rows(n: usize) -> Vec<IntegrationLabels> {
    (0..n)
        .map(|i| IntegrationLabels {
            integration_id: Uuid::new_v4(),
            tenant_id: format!("tenant-{}", i % 50),
            name: format!("integration-{i:06}"),
            kind: ["registry", "scm", "ci", "host"][i % 4].to_owned(),
            provider: ["gitlab", "github", "harbor", "http"][i % 4].to_owned(),
            status: "active".to_owned(),
            last_test_success: Some(true),
        })
        .collect()
}

fn gauges(rows: &[IntegrationLabels], on: bool) -> IntegrationGauges {
    let gauges = IntegrationGauges::new(on);
    gauges.sync(rows.to_vec());
    for row in rows {
        gauges.observe(
            row.integration_id,
            CheckOutcome::Success,
            Duration::from_millis(42),
        );
        gauges.set_uptime(
            row.integration_id,
            Uptime {
                hour: Some(1.0),
                day: Some(0.999),
                week: Some(0.998),
                month: Some(0.997),
            },
        );
    }
    gauges
}

/// Best of 3 renders: (seconds, bytes).
fn measure(render: impl Fn() -> String) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut size = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let body = render();
        best = best.min(started.elapsed().as_secs_f64());
        size = body.len();
    }
    (best, size)
}

fn main() {
    let engine = std::sync::Arc::new(EngineStats::default());
    println!("figure, ours, baseline, ratio");
    for n in [10_000, 100_000] {
        let rows = rows(n);
        let on = Exporter::new(engine.clone(), gauges(&rows, true));
        let off = Exporter::new(engine.clone(), gauges(&rows, false));
        let (t_on, s_on) = measure(|| on.render());
        let (t_off, s_off) = measure(|| off.render());
        println!(
            "render_ms_{n}_per_integration_on_vs_off, {:.1}, {:.1}, {:.1}",
            t_on * 1e3,
            t_off * 1e3,
            t_on / t_off
        );
        println!(
            "size_mb_{n}_per_integration_on_vs_off, {:.2}, {:.3}, {:.0}",
            s_on as f64 / 1e6,
            s_off as f64 / 1e6,
            s_on as f64 / s_off as f64
        );
        // The same series through a recorder (what the NOTES measured), for context.
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for row in &rows {
                let labels = [
                    ("tenant", row.tenant_id.clone()),
                    ("integration", row.integration_id.to_string()),
                    ("name", row.name.clone()),
                    ("type", row.kind.clone()),
                    ("provider", row.provider.clone()),
                ];
                metrics::gauge!("catalogd_integration_up", &labels).set(1.0);
                metrics::gauge!("catalogd_integration_status", &labels).set(2.0);
                metrics::gauge!("catalogd_integration_check_duration_seconds", &labels).set(0.042);
                for window in ["1h", "24h", "7d", "30d"] {
                    let mut labels = labels.to_vec();
                    labels.push(("window", window.to_owned()));
                    metrics::gauge!("catalogd_integration_uptime_ratio", &labels).set(0.999);
                }
            }
        });
        let (t_rec, s_rec) = measure(|| handle.render());
        println!(
            "render_ms_{n}_per_integration_ours_vs_recorder, {:.1}, {:.1}, {:.2}",
            t_on * 1e3,
            t_rec * 1e3,
            t_on / t_rec
        );
        println!(
            "size_mb_{n}_per_integration_ours_vs_recorder, {:.2}, {:.2}, {:.2}",
            s_on as f64 / 1e6,
            s_rec as f64 / 1e6,
            s_on as f64 / s_rec as f64
        );
    }
}
