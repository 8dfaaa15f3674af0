//! The status page as HTML (maud: typed, compiled templates, no frontend build): one
//! self-contained document with inline CSS, readable without JavaScript, light and dark
//! (`prefers-color-scheme`), refreshing itself every 60 s. Accessible by construction:
//! landmarks and a heading per section; every state is written out in words next to its
//! icon, and the uptime bar's cells differ in height and pattern as well as colour and are
//! summed up in words for assistive technology.
//!
//! Small on purpose: 100 integrations stay well under 200 KB. A bar cell is `<i></i>` on an
//! operational day; only the other days carry a class and a tooltip.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::app::status_page::{
    ComponentView, DayState, IncidentView, PageState, StatusPageView, BAR_DAYS, INCIDENT_DAYS,
};

const CSS: &str = r#"
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--mute:#59636e;--line:#d1d9e0;--card:#f6f8fa;
--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--mnt:#0969da;--none:#afb8c1}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mute:#9198a1;--line:#3d444d;
--card:#151b23;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--mnt:#4493f8;--none:#3d444d}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
.wrap{max-width:960px;margin:0 auto;padding:16px}
header h1{margin:8px 0 0;font-size:1.75rem}
header p{margin:4px 0;color:var(--mute)}
h2{font-size:1.25rem;margin:28px 0 8px}
.banner{border:1px solid var(--line);border-left:8px solid var(--c);border-radius:8px;padding:12px 16px;background:var(--card)}
.banner h2{margin:0;font-size:1.4rem}
.banner p{margin:4px 0 0;color:var(--mute);font-size:.9rem}
.i{display:inline-block;width:1.4em;text-align:center;font-weight:700;color:var(--c)}
.operational{--c:var(--ok)}.degraded{--c:var(--warn)}.outage{--c:var(--bad)}.maintenance{--c:var(--mnt)}
.paused,.pending{--c:var(--mute)}
.cs{list-style:none;margin:0;padding:0;border:1px solid var(--line);border-radius:8px}
.c{padding:12px 16px;border-top:1px solid var(--line)}.c:first-child{border-top:0}
.h{display:flex;flex-wrap:wrap;justify-content:space-between;gap:4px 16px;align-items:baseline}
.h h3{margin:0;font-size:1rem;overflow-wrap:anywhere}
.st{font-weight:600;color:var(--c)}
.bar{display:flex;gap:1px;height:34px;align-items:flex-end;margin:8px 0 4px}
.bar i{flex:1;height:100%;background:var(--ok);border-radius:1px;min-width:1px}
.bar .d{background:var(--warn);height:70%}
.bar .o{background:var(--bad);height:40%}
.bar .m{background:repeating-linear-gradient(45deg,var(--mnt) 0 3px,transparent 3px 5px);height:85%}
.bar .n{background:var(--none);height:15%}
.ax{display:flex;justify-content:space-between;color:var(--mute);font-size:.8rem}
.up{display:flex;flex-wrap:wrap;gap:4px 20px;margin:4px 0 0;padding:0;list-style:none;font-size:.9rem;color:var(--mute)}
.up b{color:var(--fg)}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:.85rem;color:var(--mute);margin:8px 0 0;padding:0;list-style:none}
.legend .bar{display:inline-flex;height:14px;width:10px;margin:0 4px 0 0;vertical-align:-2px}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
.scroll{overflow-x:auto}
footer{margin:32px 0 8px;color:var(--mute);font-size:.85rem}
a{color:var(--mnt)}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
"#;

/// The icon shown (to sighted readers only) beside a state's words.
fn icon(state: PageState) -> &'static str {
    match state {
        PageState::Operational => "✓",
        PageState::Degraded => "!",
        PageState::Outage => "✕",
        PageState::Maintenance => "⚒",
        PageState::Paused => "‖",
        PageState::Pending => "…",
    }
}

fn banner_text(state: PageState) -> &'static str {
    match state {
        PageState::Outage => "Outage: some integrations are down",
        PageState::Degraded => "Degraded: some integrations have problems",
        PageState::Maintenance => "Maintenance in progress",
        _ => "All systems operational",
    }
}

pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        None => "no data".to_owned(),
        // Two decimals, floored, so 99.999 % never reads as 100 %.
        Some(ratio) => format!("{:.2}%", (ratio * 10_000.0).floor() / 100.0),
    }
}

fn when(time: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
            (time.format("%Y-%m-%d %H:%M UTC"))
        }
    }
}

fn duration(seconds: i64) -> String {
    let minutes = seconds.max(0) / 60;
    match (minutes / 1440, minutes / 60 % 24, minutes % 60) {
        (0, 0, 0) => "under 1 min".to_owned(),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn state_words(state: PageState) -> Markup {
    html! {
        span class={"st " (state.as_str())} {
            span class="i" aria-hidden="true" { (icon(state)) }
            (state.label())
        }
    }
}

/// The bar's cells, and the words assistive technology reads for them.
fn bar(component: &ComponentView) -> (String, String) {
    let mut cells = String::with_capacity(8 * component.days.len());
    let mut counts = [0usize; 5];
    for day in &component.days {
        let (class, slot) = match day.state {
            DayState::Operational => ("", 0),
            DayState::Degraded => ("d", 1),
            DayState::Outage => ("o", 2),
            DayState::Maintenance => ("m", 3),
            DayState::NoData => ("n", 4),
        };
        counts[slot] += 1;
        if class.is_empty() {
            cells.push_str("<i></i>");
        } else if class == "n" {
            cells.push_str("<i class=n></i>");
        } else {
            let _ = write!(
                cells,
                "<i class={class} title=\"{}: {} {}\"></i>",
                day.date,
                day.state.as_str().replace('_', " "),
                percent(day.uptime)
            );
        }
    }
    let words = format!(
        "{BAR_DAYS}-day uptime of {}: {} operational days, {} degraded, {} with an outage, {} in maintenance, {} without data",
        component.name, counts[0], counts[1], counts[2], counts[3], counts[4]
    );
    (cells, words)
}

fn component(component: &ComponentView) -> Markup {
    let (cells, words) = bar(component);
    html! {
        li class={"c " (component.state.as_str())} data-state=(component.state.as_str()) {
            div class="h" {
                h3 { (component.name) }
                (state_words(component.state))
            }
            div class="bar" role="img" aria-label=(words) { (PreEscaped(cells)) }
            div class="ax" aria-hidden="true" { span { (BAR_DAYS) " days ago" } span { "Today" } }
            ul class="up" aria-label={"Uptime of " (component.name)} {
                @for (window, ratio) in component.uptime.windows() {
                    li data-window=(window) { (window) " " b { (percent(ratio)) } }
                }
            }
        }
    }
}

fn incidents(incidents: &[IncidentView]) -> Markup {
    html! {
        @if incidents.is_empty() {
            p { "No incidents in the last " (INCIDENT_DAYS) " days." }
        } @else {
            // Focusable, so a keyboard can scroll it sideways on a narrow screen.
            div class="scroll" tabindex="0" role="region" aria-label="Incidents table" {
                table {
                    caption class="sr" { "Incidents in the last " (INCIDENT_DAYS) " days, newest first" }
                    thead { tr {
                        th scope="col" { "Integration" } th scope="col" { "Started" }
                        th scope="col" { "Ended" } th scope="col" { "Duration" }
                        th scope="col" { "Worst state" }
                    } }
                    tbody {
                        @for incident in incidents {
                            tr {
                                td { (incident.integration) }
                                td {
                                    @if incident.started_before { "before " }
                                    (when(incident.started_at))
                                }
                                td {
                                    @match incident.ended_at {
                                        Some(ended) => { (when(ended)) }
                                        None => { strong { "Ongoing" } }
                                    }
                                }
                                td { (duration(incident.duration_seconds)) }
                                td { (state_words(incident.worst_state)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The whole page. `summary` is the path of its `summary.json`.
pub fn page(view: &StatusPageView, summary: &str) -> String {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content="60";
                meta name="color-scheme" content="light dark";
                meta name="referrer" content="no-referrer";
                title { (view.title) " status" }
                style { (PreEscaped(CSS)) }
            }
            body {
                div class="wrap" {
                    header {
                        h1 { (view.title) }
                        @if let Some(description) = &view.description { p { (description) } }
                    }
                    main {
                        section id="banner" class={"banner " (view.overall.as_str())}
                            data-state=(view.overall.as_str()) aria-labelledby="banner-h" {
                            h2 id="banner-h" {
                                span class="i" aria-hidden="true" { (icon(view.overall)) }
                                (banner_text(view.overall))
                            }
                            p { "Updated " (when(view.generated_at)) ". This page refreshes every minute." }
                        }
                        section aria-labelledby="integrations-h" {
                            h2 id="integrations-h" { "Integrations" }
                            @if view.integrations.is_empty() {
                                p { "No integrations are shown on this page." }
                            } @else {
                                ul class="cs" { @for c in &view.integrations { (component(c)) } }
                                ul class="legend" aria-label="How to read the uptime bars" {
                                    li { span class="bar" aria-hidden="true" { i {} } "Operational day (at least 99.9%)" }
                                    li { span class="bar" aria-hidden="true" { i class="d" {} } "Degraded day (shorter bar)" }
                                    li { span class="bar" aria-hidden="true" { i class="o" {} } "Outage day (shortest bar)" }
                                    li { span class="bar" aria-hidden="true" { i class="m" {} } "Maintenance (striped)" }
                                    li { span class="bar" aria-hidden="true" { i class="n" {} } "No data (flat)" }
                                }
                            }
                        }
                        section aria-labelledby="incidents-h" {
                            h2 id="incidents-h" { "Incidents" }
                            (incidents(&view.incidents))
                        }
                        section aria-labelledby="maintenance-h" {
                            h2 id="maintenance-h" { "Upcoming maintenance" }
                            @if view.upcoming_maintenance.is_empty() {
                                p { "No maintenance is scheduled." }
                            } @else {
                                ul {
                                    @for window in &view.upcoming_maintenance {
                                        li {
                                            strong { (window.name) } ": " (when(window.starts_at))
                                            " to " (when(window.ends_at)) " — "
                                            (window.integrations.join(", "))
                                        }
                                    }
                                }
                            }
                        }
                    }
                    footer {
                        "Times are UTC. " a href=(summary) { "This page as JSON" } "."
                    }
                }
            }
        }
    };
    markup.into_string()
}

/// A short page for a status code (404, 401, ...), for people.
pub fn error_page(status: u16, words: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (status) " " (words) }
                style { (PreEscaped(CSS)) }
            }
            body { div class="wrap" { main { h1 { (words) } } } }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_never_round_up_to_a_full_hundred() {
        assert_eq!(percent(Some(1.0)), "100.00%");
        assert_eq!(percent(Some(0.99999)), "99.99%");
        assert_eq!(percent(Some(0.5)), "50.00%");
        assert_eq!(percent(None), "no data");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(59), "under 1 min");
        assert_eq!(duration(3 * 60), "3 min");
        assert_eq!(duration(2 * 3600 + 5 * 60), "2 h 5 min");
        assert_eq!(duration(3 * 86400 + 4 * 3600), "3 d 4 h");
    }
}
