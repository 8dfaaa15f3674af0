//! F7, `/metrics`: render time and size of a scrape of the daemon's metrics port with
//! per-integration series on, at N integrations (full 100k, quick 20k, smoke 2,000), every
//! integration checked at least once and its uptime ratios computed, so every series exists:
//! 8 per integration (DESIGN §7, the info-metric pattern: `info`, `up`, `status`, the last
//! duration and 4 uptime ratios).
//!
//! Two scrapes are measured, each several times (p50 and best of the client-side wall time,
//! request sent → last byte received): plain text (no `Accept-Encoding`, what `curl` gets) and
//! gzip (`Accept-Encoding: gzip`, what Prometheus always sends): the gzip size is the size on the
//! wire, the plain size the uncompressed exposition. The baseline, in the same run, is the very
//! same series (parsed out of the plain scrape, labels and values) put through
//! `metrics-exporter-prometheus`'s recorder, the way a daemon emitting them through the
//! `metrics` facade would render them: time of `PrometheusHandle::render` and its size.
//!
//! Expected full-tier duration: about 3 minutes (seeding 100k rows, 100k first checks at a
//! 60 s interval, one uptime pass, the scrapes and the recorder baseline).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use catalogd_actors::Status;
use metrics_exporter_prometheus::PrometheusBuilder;

use super::Outcome;
use crate::report::{Row, Value};
use crate::seed::{self, Backend, Seed, Target};
use crate::services::{poll, DaemonDir, TargetFleet};
use crate::sys::quantile;
use crate::Tier;

pub async fn run(tier: Tier) -> anyhow::Result<Outcome> {
    let (n, interval, scrapes) = match tier {
        Tier::Smoke => (2_000, 5, 3),
        Tier::Quick => (20_000, 20, 5),
        Tier::Full => (100_000, 60, 7),
    };
    let label = size_label(n);
    const ADDRS: u32 = 16;
    let fleet = TargetFleet::start_on_fleet_port(ADDRS)?;
    let target = |i: usize| Target::fleet_ok(i, ADDRS);
    let url = seed::seeded_copy(
        Backend::Sqlite,
        &Seed {
            tenant: "bench",
            count: n,
            interval_seconds: interval,
            timeout_seconds: 5,
            status: Status::Active,
            target: &target,
        },
        "fleet_ok-16",
    )
    .await
    .context("seeding")?;
    let dir = DaemonDir::new(&url, "")?;
    // The `[metrics]` table is DaemonDir's: add to it rather than open a second one.
    let config = std::fs::read_to_string(&dir.config)?;
    let section = "[metrics]\n";
    anyhow::ensure!(config.contains(section), "no [metrics] in {config}");
    std::fs::write(
        &dir.config,
        config.replacen(
            section,
            "[metrics]\nper_integration = true\nrefresh = \"5s\"\nuptime_refresh = \"5s\"\n",
            1,
        ),
    )?;
    let daemon = dir.start(Duration::from_secs(120))?;
    let client = reqwest::Client::builder().no_proxy().build()?;

    // Every integration checked (an `up` series each) and its uptime ratios computed (four
    // `uptime_ratio` series each): the scrape has every series the budget counts.
    let wait = Duration::from_secs(u64::from(interval) * 3 + 120);
    poll(
        "every integration checked and its uptime computed",
        wait,
        // Each poll renders the whole exposition (about 1 KB per integration): not too often.
        Duration::from_secs(5),
        || async {
            let text = daemon.scrape(&client).await.ok()?;
            let up = metric_count(&text, "catalogd_integration_up");
            let uptime = metric_count(&text, "catalogd_integration_uptime_ratio");
            let info = metric_count(&text, "catalogd_integration_info");
            (up >= n && uptime >= 4 * n && info >= n).then_some(())
        },
    )
    .await?;

    let url = format!("{}/metrics", daemon.metrics);
    let mut plain_times = Vec::new();
    let mut gzip_times = Vec::new();
    let mut plain = Vec::new();
    let mut gzip_size = 0;
    for _ in 0..scrapes {
        let (t, body) = timed_get(&client, &url, false).await?;
        plain_times.push(t);
        plain = body;
        let (t, body) = timed_get(&client, &url, true).await?;
        gzip_times.push(t);
        gzip_size = body.len();
    }
    let plain = String::from_utf8(plain)?;
    let series = per_integration_series(&plain);
    let families = family_sizes(&plain);

    // The baseline: the same series through the recorder.
    let (recorder_times, recorder_size) = tokio::task::spawn_blocking(move || {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for (name, labels, value) in &series {
                metrics::gauge!(name.clone(), labels).set(*value);
            }
        });
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let body = handle.render();
            times.push(started.elapsed().as_secs_f64());
            size = body.len();
        }
        (times, size)
    })
    .await?;
    drop(daemon);
    drop(fleet);
    seed::release(&url).await;

    let p50 = |v: &mut Vec<f64>| quantile(v, 0.5) * 1e3;
    let best = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min) * 1e3;
    let mut recorder_times = recorder_times;
    let recorder_ms = p50(&mut recorder_times);
    let mb = |bytes: usize| bytes as f64 / 1e6;
    let (gzip_p50, gzip_best) = (p50(&mut gzip_times), best(&gzip_times));
    let (plain_p50, plain_best) = (p50(&mut plain_times), best(&plain_times));
    let rows = vec![
        Row::new(
            "F7",
            format!("/metrics scrape p50, gzip (as Prometheus), {label} integrations"),
            Value::new(gzip_p50, "ms"),
        )
        .against("recorder render", Value::new(recorder_ms, "ms"))
        .at_most(250.0, "250 ms"),
        Row::new(
            "F7",
            format!("/metrics scrape p50, plain text, {label} integrations"),
            Value::new(plain_p50, "ms"),
        )
        .against("recorder render", Value::new(recorder_ms, "ms"))
        .at_most(250.0, "250 ms"),
        Row::new(
            "F7",
            format!("/metrics size on the wire, gzip, {label} integrations"),
            Value::new(mb(gzip_size), "MB"),
        )
        .against(
            "recorder, uncompressed",
            Value::new(mb(recorder_size), "MB"),
        )
        .at_most(10.0, "10 MB"),
        Row::new(
            "F7",
            format!("/metrics size uncompressed, {label} integrations"),
            Value::new(mb(plain.len()), "MB"),
        )
        .against("recorder", Value::new(mb(recorder_size), "MB")),
    ];
    let mut notes = vec![format!(
        "{scrapes} scrapes each; best gzip {gzip_best:.0} ms, best plain {plain_best:.0} ms; \
         times are client wall time over loopback while the daemon runs its {n} checks per \
         {interval} s; the recorder baseline renders the same {} series in-process (no HTTP)",
        plain
            .lines()
            .filter(|l| l.starts_with("catalogd_integration_"))
            .count()
    )];
    let per_integration: usize = families.iter().map(|f| f.gzip).sum();
    notes.push(format!(
        "gzip bytes per integration {:.1} ({:.1} per series); by family (each compressed alone \
         as the daemon does, bytes per integration): {}",
        per_integration as f64 / n as f64,
        per_integration as f64 / families.iter().map(|f| f.series).sum::<usize>().max(1) as f64,
        families
            .iter()
            .map(|f| format!(
                "{} {:.1} ({} series, {:.1} MB plain)",
                f.name.trim_start_matches("catalogd_integration_"),
                f.gzip as f64 / n as f64,
                f.series,
                mb(f.plain)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if gzip_size > 10_000_000 {
        notes.push(
            "size on the wire above 10 MB: each integration's UUID is in 5 families (info, up, \
             status, duration, uptime; the 4 uptime windows of one integration are neighbours \
             and share it), and its random bits (74 of 128 in a UUIDv7, fewer between ids made \
             in the same millisecond) do not compress across families: their repeats lie far \
             beyond DEFLATE's 32 KiB window; see the bytes per family above"
                .into(),
        );
    }
    if tier != Tier::Full {
        notes.push(format!(
            "tier {}: {label} integrations (the issue's size is 100k: run the full tier)",
            tier.name()
        ));
    }
    Ok(Outcome { rows, notes })
}

/// Samples of `prefix` (a metric name, or the start of several) in an exposition text.
pub fn metric_count(text: &str, prefix: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(['{', ' ']))
        .count()
}

/// `2k`, `20k`, `100k`, `1M`.
pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// GET `url` (with `Accept-Encoding: gzip` when `gzip`): wall seconds to the last byte, and
/// the body as sent (not decompressed).
async fn timed_get(
    client: &reqwest::Client,
    url: &str,
    gzip: bool,
) -> anyhow::Result<(f64, Vec<u8>)> {
    let mut request = client.get(url);
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let started = Instant::now();
    let response = request.send().await?.error_for_status()?;
    let encoded = response
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let body = response.bytes().await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        encoded == gzip || !gzip,
        "asked for gzip, got content-encoding {encoded}"
    );
    Ok((elapsed, body.to_vec()))
}

/// One per-integration family of a scrape: its name, series, plain and gzipped bytes.
struct FamilySize {
    name: String,
    series: usize,
    plain: usize,
    gzip: usize,
}

/// The per-integration families of an exposition text, each compressed on its own with the
/// daemon's own [`catalogd::metrics::gzip::Part`] (so at the daemon's level).
fn family_sizes(text: &str) -> Vec<FamilySize> {
    let mut families: Vec<(String, String, usize)> = Vec::new();
    for line in text.lines() {
        if !line.starts_with("catalogd_integration_") {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if families.last().is_none_or(|(last, _, _)| last != name) {
            families.push((name.to_owned(), String::new(), 0));
        }
        if let Some((_, lines, count)) = families.last_mut() {
            lines.push_str(line);
            lines.push('\n');
            *count += 1;
        }
    }
    families
        .into_iter()
        .map(|(name, lines, series)| FamilySize {
            gzip: catalogd::metrics::gzip::Part::compress(lines.as_bytes()).compressed_len(),
            plain: lines.len(),
            name,
            series,
        })
        .collect()
}

/// `(name, labels, value)` of every per-integration series (`catalogd_integration_*`) in an
/// exposition text.
/// A series parsed out of an exposition text: name, label pairs, value.
type Series = (String, Vec<(String, String)>, f64);

fn per_integration_series(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.starts_with("catalogd_integration_") {
            continue;
        }
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        out.push((name.to_owned(), parse_labels(labels), value));
    }
    out
}

/// `a="x",b="y\"z"` → pairs, unescaped.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        pairs.push((key.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_parsed_and_unescaped() {
        assert_eq!(
            parse_labels(r#"tenant="a",name="x \"y\"\nz",window="1h""#),
            vec![
                ("tenant".to_owned(), "a".to_owned()),
                ("name".to_owned(), "x \"y\"\nz".to_owned()),
                ("window".to_owned(), "1h".to_owned()),
            ]
        );
    }
}
