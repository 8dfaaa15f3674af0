//! The figures of issue 6 (F1–F9), issue 12 (F10), issue 14 (F11) and issue 15 (F12), each a function from the tier to table rows. A figure starts and
//! stops everything it needs, so each can run alone (`--only F4`).

use std::future::Future;
use std::pin::Pin;

use crate::report::Row;
use crate::Tier;

mod api;
mod checks;
mod cluster;
mod events;
mod fleet;
mod metrics;
mod persistence;
mod status_page;
mod transfer;

/// What a figure produced: rows for the table, and notes (what stood in the way of a target,
/// what was left out at this tier).
#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

type Run = fn(Tier) -> Pin<Box<dyn Future<Output = anyhow::Result<Outcome>>>>;

pub struct Figure {
    pub id: &'static str,
    pub title: &'static str,
    pub run: Run,
}

pub const ALL: &[Figure] = &[
    Figure {
        id: "F1",
        title: "memory per integration; F2 scheduling lateness; F3 start-up",
        run: |tier| Box::pin(fleet::run(tier)),
    },
    Figure {
        id: "F4",
        title: "check efficiency vs blackbox_exporter and a bare client",
        run: |tier| Box::pin(checks::run(tier)),
    },
    Figure {
        id: "F5",
        title: "failure isolation: 10% of targets hanging",
        run: |tier| Box::pin(fleet::isolation(tier)),
    },
    Figure {
        id: "F6",
        title: "events: transition commit → NATS subscriber",
        run: |tier| Box::pin(events::run(tier)),
    },
    Figure {
        id: "F7",
        title: "/metrics render time and size",
        run: |tier| Box::pin(metrics::run(tier)),
    },
    Figure {
        id: "F8",
        title: "API: list integrations at 1M rows",
        run: |tier| Box::pin(api::run(tier)),
    },
    Figure {
        id: "F9",
        title: "persistence: check results and state changes per second",
        run: |tier| Box::pin(persistence::run(tier)),
    },
    Figure {
        id: "F10",
        title: "cluster: 1, 2 and 3 daemons on one PostgreSQL, takeover, lease traffic",
        run: |tier| Box::pin(cluster::run(tier)),
    },
    Figure {
        id: "F11",
        title: "status page render at 1,000 integrations × 90 days",
        run: |tier| Box::pin(status_page::run(tier)),
    },
    Figure {
        id: "F12",
        title: "import: a document of integrations into an empty tenant, all in one transaction",
        run: |tier| Box::pin(transfer::run(tier)),
    },
];
