//! The `in-memory` connector: scripted outcomes for demos and tests, no network.
//!
//! `configuration.script` is a list cycled through, one entry per check or test of the same
//! integration: `success`, `skipped`, `failure:<class>` (any failure class), `timeout`
//! (an immediate `timeout` failure), `hang` (never answers; the caller's timeout ends it) or
//! `panic` (panics, to exercise supervision). Without a script every check succeeds.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use catalogd_actors::FailureClass;
use serde_json::Value;
use uuid::Uuid;

use super::{Connector, Failure, Session, Verdict};

#[derive(Debug, Default)]
pub struct InMemoryConnector {
    /// The next script position of each integration.
    positions: Mutex<HashMap<Uuid, usize>>,
}

enum Step {
    Verdict(Verdict),
    Hang,
    Panic,
}

impl InMemoryConnector {
    async fn next(&self, session: &Session<'_>) -> Verdict {
        let step = match self.step(session) {
            Ok(step) => step,
            Err(failure) => return Verdict::Failed(failure),
        };
        match step {
            Step::Verdict(verdict) => verdict,
            Step::Hang => std::future::pending().await,
            Step::Panic => panic!("in-memory connector: scripted panic"),
        }
    }

    fn step(&self, session: &Session<'_>) -> Result<Step, Failure> {
        let invalid = || Failure::config("configuration.script must be a list of outcomes");
        let script = match session.target.configuration.get("script") {
            None => return Ok(Step::Verdict(Verdict::Healthy)),
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(_) => return Err(invalid()),
        };
        let position = {
            let mut positions = self
                .positions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let next = positions.entry(session.target.integration_id).or_insert(0);
            let position = *next % script.len();
            *next = position + 1;
            position
        };
        let entry = script[position].as_str().ok_or_else(invalid)?;
        parse_step(entry)
            .ok_or_else(|| Failure::config("configuration.script has an unknown outcome"))
    }
}

fn parse_step(entry: &str) -> Option<Step> {
    let failed = |class| Step::Verdict(Verdict::Failed(Failure::new(class, "scripted failure")));
    Some(match entry {
        "success" => Step::Verdict(Verdict::Healthy),
        "skipped" => Step::Verdict(Verdict::Skipped("scripted skip")),
        "timeout" => failed(FailureClass::Timeout),
        "hang" => Step::Hang,
        "panic" => Step::Panic,
        _ => {
            let class = entry.strip_prefix("failure:")?;
            failed(
                FailureClass::ALL
                    .into_iter()
                    .find(|candidate| candidate.as_str() == class)?,
            )
        }
    })
}

#[async_trait]
impl Connector for InMemoryConnector {
    async fn check_health(&self, session: &Session<'_>) -> Verdict {
        self.next(session).await
    }

    async fn test_connection(&self, session: &Session<'_>) -> Verdict {
        let diagnostics = session.diagnostics;
        diagnostics.enter("script");
        let verdict = self.next(session).await;
        match &verdict {
            Verdict::Healthy => diagnostics.leave("script", Ok("scripted success".into())),
            Verdict::Skipped(reason) => diagnostics.leave("script", Ok((*reason).into())),
            Verdict::Failed(failure) => diagnostics.leave("script", Err(failure)),
        }
        verdict
    }

    fn uses_network(&self) -> bool {
        false
    }
}
