//! `catalogd events watch [--tenant T] [--type KIND] [--json]`: subscribes to the lifecycle
//! events on NATS (the `[nats]` configuration) and prints one readable line per event, for
//! operators at a terminal; `--json` prints the CloudEvents as they arrive.
//!
//! This is a plain core-NATS subscription: it shows what is published while it runs, and
//! nothing from before (read the JetStream stream `events.stream`, `INTEGRATION_EVENTS` by
//! default, for that).

use std::io::Write;

use clap::Args;
use futures_util::StreamExt;
use serde_json::Value;

use crate::cloudevents::SUBJECT_PREFIX;
use crate::config::NatsConfig;

/// The lifecycle event kinds (`integration.<kind>`).
pub const KINDS: [&str; 13] = [
    "created",
    "updated",
    "deleted",
    "paused",
    "resumed",
    "healthy",
    "unhealthy",
    "activated",
    "tested",
    "flapping",
    "stable",
    "maintenance_started",
    "maintenance_ended",
];

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Only this tenant's events (default: every tenant the NATS user may see).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only events of this kind: created, updated, deleted, paused, resumed, healthy,
    /// unhealthy, activated, tested, flapping, stable, maintenance_started,
    /// maintenance_ended (`integration.` in front is accepted too).
    #[arg(long = "type", value_name = "KIND")]
    pub kind: Option<String>,
    /// Print each CloudEvent as raw JSON, one per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("--tenant must be 1-64 of A-Z a-z 0-9 _ -: {0:?}")]
    Tenant(String),
    #[error("--type must be one of {kinds}: {0:?}", kinds = KINDS.join(", "))]
    Kind(String),
}

/// The subject to subscribe to: `integrations.events.<tenant or *>.<kind or *>`.
pub fn subject_filter(tenant: Option<&str>, kind: Option<&str>) -> Result<String, WatchError> {
    let tenant = match tenant {
        None => "*",
        Some(t)
            if !t.is_empty()
                && t.len() <= 64
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            t
        }
        Some(t) => return Err(WatchError::Tenant(t.to_owned())),
    };
    let kind = match kind {
        None => "*",
        Some(k) => {
            let bare = k.strip_prefix("integration.").unwrap_or(k);
            *KINDS
                .iter()
                .find(|known| **known == bare)
                .ok_or_else(|| WatchError::Kind(k.to_owned()))?
        }
    };
    Ok(format!("{SUBJECT_PREFIX}.{tenant}.{kind}"))
}

/// One line for people:
/// `TIME  TENANT  KIND  NAME (ID)  PREVIOUS → STATUS  [success|failed] [failure=…] [latency=…ms] [failures=…] [reason="…"]  by ACTOR  #SEQ`.
pub fn format_line(event: &Value) -> String {
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let data = &event["data"];
    let kind = text(&event["type"]).unwrap_or_else(|| "?".to_owned());
    let kind = kind
        .strip_prefix("integration.")
        .unwrap_or(&kind)
        .to_owned();
    let mut line = format!(
        "{}  {}  {:<9}  {} ({})  {} → {}",
        text(&event["time"]).unwrap_or_else(|| "-".to_owned()),
        text(&event["tenantid"]).unwrap_or_else(|| "-".to_owned()),
        kind,
        text(&data["name"]).unwrap_or_else(|| "?".to_owned()),
        text(&data["integrationId"])
            .or_else(|| text(&event["subject"]))
            .unwrap_or_else(|| "?".to_owned()),
        text(&data["previousStatus"]).unwrap_or_else(|| "-".to_owned()),
        text(&data["status"]).unwrap_or_else(|| "-".to_owned()),
    );
    if let Some(success) = data["success"].as_bool() {
        line.push_str(if success { "  success" } else { "  failed" });
    }
    if let Some(class) = text(&data["failureClass"]) {
        line.push_str(&format!("  failure={class}"));
    }
    if let Some(latency) = data["latencyMs"].as_u64() {
        line.push_str(&format!("  latency={latency}ms"));
    }
    if let Some(failures) = data["consecutiveFailures"].as_u64().filter(|n| *n > 0) {
        line.push_str(&format!("  failures={failures}"));
    }
    if let Some(reason) = text(&data["reason"]) {
        line.push_str(&format!("  reason={reason:?}"));
    }
    if let Some(actor) = text(&data["actor"]) {
        line.push_str(&format!("  by {actor}"));
    }
    if let Some(sequence) = event["sequence"].as_i64() {
        line.push_str(&format!("  #{sequence}"));
    }
    line
}

/// Subscribes and prints until interrupted (Ctrl-C) or the connection closes.
pub async fn run(config: &NatsConfig, args: &WatchArgs) -> anyhow::Result<()> {
    let subject = subject_filter(args.tenant.as_deref(), args.kind.as_deref())?;
    let client = crate::nats::connect(config, "catalogd-events-watch")
        .await?
        .ok_or_else(|| anyhow::anyhow!("NATS is disabled (nats.url is empty)"))?;
    let mut subscription = client.subscribe(subject.clone()).await?;
    eprintln!(
        "watching {subject} on {} (Ctrl-C to stop)",
        config.url.trim()
    );
    let mut stdout = std::io::stdout().lock();
    loop {
        let message = tokio::select! {
            message = subscription.next() => match message {
                Some(message) => message,
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        let line = if args.json {
            String::from_utf8_lossy(&message.payload).into_owned()
        } else {
            match serde_json::from_slice::<Value>(&message.payload) {
                Ok(event) => format_line(&event),
                Err(_) => format!(
                    "{}: (not JSON) {} bytes",
                    message.subject,
                    message.payload.len()
                ),
            }
        };
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (a closed pipe): stop quietly.
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_use_single_token_wildcards() {
        assert_eq!(
            subject_filter(None, None).unwrap(),
            "integrations.events.*.*"
        );
        assert_eq!(
            subject_filter(Some("acme"), None).unwrap(),
            "integrations.events.acme.*"
        );
        assert_eq!(
            subject_filter(None, Some("integration.unhealthy")).unwrap(),
            "integrations.events.*.unhealthy"
        );
        assert!(subject_filter(Some("a.b"), None).is_err());
        assert!(subject_filter(Some(">"), None).is_err());
        assert!(subject_filter(None, Some("broken")).is_err());
    }

    #[test]
    fn a_line_reads_like_a_sentence() {
        let event = serde_json::json!({
            "type": "integration.unhealthy", "time": "2026-01-02T03:04:05.000006Z",
            "tenantid": "acme", "sequence": 7,
            "data": {"integrationId": "0190", "name": "harbor-prod", "previousStatus": "active",
                     "status": "degraded", "failureClass": "http_status", "latencyMs": 120,
                     "consecutiveFailures": 3, "reason": null, "actor": "catalogd"}
        });
        assert_eq!(
            format_line(&event),
            "2026-01-02T03:04:05.000006Z  acme  unhealthy  harbor-prod (0190)  active → degraded  \
             failure=http_status  latency=120ms  failures=3  by catalogd  #7"
        );
    }
}
