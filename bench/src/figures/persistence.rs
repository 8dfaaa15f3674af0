//! (stub: filled in by the figure's owner)

use super::Outcome;
use crate::Tier;

pub async fn run(_tier: Tier) -> anyhow::Result<Outcome> {
    anyhow::bail!("not written yet")
}
