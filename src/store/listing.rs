//! The integration list as the database writes it: each row's JSON object assembled by SQLite
//! (`json_object`) or PostgreSQL (`json_build_object`), the page's objects joined by the
//! database (`string_agg`), and handed out as one string that is never parsed here.
//!
//! Why: at a million rows the list's cost was not the query plan but decoding 26 columns of
//! 100 rows through sqlx (a copy of every value, SQLite's worker thread handing each row
//! across a channel), parsing the JSON columns and serializing the page again (bench F8). One
//! row of four columns per page removes all of that.
//!
//! Each object must mean exactly what `serde_json` makes of [`crate::integration::Integration`]
//! (the same keys in the same order, the same nulls, RFC 3339 times with chrono's fractional
//! digits and `Z`, booleans, the JSON columns embedded as JSON): [`FIELDS`] is the one list
//! both dialects are generated from, and the tests compare it with the serialized resource
//! (here the keys; `tests/it/store.rs` and `tests/it/api/integrations.rs` every value, on both
//! backends, against a GET).

use std::sync::LazyLock;

/// How a column becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string, or `null`.
    Text,
    /// The id: a 16-byte BLOB on SQLite, `uuid` on PostgreSQL; a hyphenated lowercase string.
    Uuid,
    /// A JSON column (TEXT on SQLite, JSONB on PostgreSQL), embedded as JSON.
    Json,
    /// `true`/`false` (SQLite stores 0/1), or `null`.
    Bool,
    /// A number.
    Integer,
    /// A time at microsecond precision, or `null`: RFC 3339 in UTC with `Z` and 0, 3 or 6
    /// fractional digits (the fewest that hold it), as chrono's `Serialize` writes it.
    Time,
}

/// The resource's fields in `Integration`'s declaration order (what `serde_json` writes):
/// `(JSON key, column, kind)`. `consecutive_successes` is engine bookkeeping, not part of the
/// resource.
const FIELDS: [(&str, &str, Kind); 25] = [
    ("integrationId", "integration_id", Kind::Uuid),
    ("tenantId", "tenant_id", Kind::Text),
    ("name", "name", Kind::Text),
    ("description", "description", Kind::Text),
    ("type", "type", Kind::Text),
    ("provider", "provider", Kind::Text),
    ("baseUrl", "base_url", Kind::Text),
    ("authRef", "auth_ref", Kind::Text),
    ("configuration", "configuration", Kind::Json),
    ("environment", "environment", Kind::Text),
    ("tags", "tags", Kind::Json),
    ("ownerId", "owner_id", Kind::Text),
    ("healthCheck", "health_check", Kind::Json),
    ("status", "status", Kind::Text),
    ("paused", "paused", Kind::Bool),
    ("pauseReason", "pause_reason", Kind::Text),
    ("pauseTicket", "pause_ticket", Kind::Text),
    ("lastTestedAt", "last_tested_at", Kind::Time),
    ("lastTestSuccess", "last_test_success", Kind::Bool),
    ("consecutiveFailures", "consecutive_failures", Kind::Integer),
    ("createdAt", "created_at", Kind::Time),
    ("createdBy", "created_by", Kind::Text),
    ("modifiedAt", "modified_at", Kind::Time),
    ("modifiedBy", "modified_by", Kind::Text),
    ("version", "version", Kind::Integer),
];

/// SQLite: the JSON text of the row `i`.
pub(super) static SQLITE_ITEM: LazyLock<String> = LazyLock::new(|| {
    let pairs: Vec<String> = FIELDS
        .iter()
        .map(|(key, column, kind)| format!("'{key}', {}", sqlite_value(column, *kind)))
        .collect();
    format!("json_object({})", pairs.join(", "))
});

/// PostgreSQL: the JSON text of the row `i`.
pub(super) static POSTGRES_ITEM: LazyLock<String> = LazyLock::new(|| {
    let pairs: Vec<String> = FIELDS
        .iter()
        .map(|(key, column, kind)| format!("'{key}', {}", postgres_value(column, *kind)))
        .collect();
    format!("json_build_object({})::text", pairs.join(", "))
});

fn sqlite_value(column: &str, kind: Kind) -> String {
    let c = format!("i.{column}");
    match kind {
        Kind::Text | Kind::Integer => c,
        // `hex` of byte ranges of the BLOB: 8-4-4-4-12 digits.
        Kind::Uuid => format!(
            "lower(hex(substr({c}, 1, 4)) || '-' || hex(substr({c}, 5, 2)) || '-' || \
             hex(substr({c}, 7, 2)) || '-' || hex(substr({c}, 9, 2)) || '-' || \
             hex(substr({c}, 11, 6)))"
        ),
        // Without `json()` the text would be embedded as a string.
        Kind::Json => format!("json({c})"),
        Kind::Bool => {
            format!("json(CASE WHEN {c} IS NULL THEN NULL WHEN {c} THEN 'true' ELSE 'false' END)")
        }
        // sqlx writes `to_rfc3339_opts(AutoSi, false)`: chrono's digits with `+00:00`.
        Kind::Time => format!(
            "CASE WHEN substr({c}, -6) = '+00:00' THEN substr({c}, 1, length({c}) - 6) || 'Z' \
             ELSE {c} END"
        ),
    }
}

fn postgres_value(column: &str, kind: Kind) -> String {
    let c = format!("i.{column}");
    match kind {
        // `uuid`, JSONB, booleans and numbers are already what JSON wants.
        Kind::Text | Kind::Uuid | Kind::Json | Kind::Bool | Kind::Integer => c,
        // PostgreSQL's own JSON time drops trailing zeros one digit at a time (`.12`); chrono
        // writes 3 or 6 digits (`.120`), none for whole seconds.
        Kind::Time => {
            let utc = format!("({c} AT TIME ZONE 'UTC')");
            format!(
                "to_char({utc}, CASE WHEN date_trunc('second', {utc}) = {utc} \
                 THEN 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"' \
                 WHEN date_trunc('milliseconds', {utc}) = {utc} \
                 THEN 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"' \
                 ELSE 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"' END)"
            )
        }
    }
}

/// The statement of one page is `PAGE_HEAD`, then `rows`: `SELECT {item} AS item, k.name AS
/// n, k.integration_id AS id FROM … WHERE … ORDER BY k.name, k.integration_id LIMIT {limit +
/// 1}`, then `PAGE_KEPT`, the bound `limit`, and `PAGE_TAIL`. It answers one row: the first
/// `limit` items joined by commas (`NULL` when none), how many rows `rows` found (more than
/// `limit`: another page follows), and the name and id of the last item kept. Both CTEs are
/// materialized so that no item is assembled twice. `string_agg` with `ORDER BY` is
/// PostgreSQL's and SQLite's (3.44+) alike.
pub(super) const PAGE_HEAD: &str = "WITH page AS MATERIALIZED (";
pub(super) const PAGE_KEPT: &str =
    "), kept AS MATERIALIZED (SELECT item, n, id FROM page ORDER BY n, id LIMIT ";
pub(super) const PAGE_TAIL: &str =
    "), last AS (SELECT n, id FROM kept ORDER BY n DESC, id DESC LIMIT 1) \
     SELECT (SELECT string_agg(item, ',' ORDER BY n, id) FROM kept) AS items, \
     (SELECT count(*) FROM page) AS found, \
     (SELECT n FROM last) AS last_name, (SELECT id FROM last) AS last_id";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integration::{Integration, IntegrationSpec, IntegrationType};

    #[test]
    fn fields_are_the_serialized_resource_in_order() {
        let spec = IntegrationSpec {
            name: "n".into(),
            description: None,
            kind: IntegrationType::Host,
            provider: "tcp".into(),
            base_url: None,
            auth_ref: None,
            configuration: Default::default(),
            environment: None,
            tags: Vec::new(),
            owner_id: None,
            health_check: Default::default(),
        };
        let integration = Integration::new("t", spec, "a", chrono::Utc::now());
        // The keys in the order serde writes them (nothing nested here has keys).
        let text = serde_json::to_string(&integration).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value.as_object().unwrap().len(), FIELDS.len());
        let positions: Vec<usize> = FIELDS
            .iter()
            .map(|(key, _, _)| {
                text.find(&format!("\"{key}\":"))
                    .unwrap_or_else(|| panic!("{key} is not serialized"))
            })
            .collect();
        assert!(positions.is_sorted(), "{text}");
        for (_, column, _) in FIELDS {
            assert!(
                super::super::rows::INTEGRATION_COLUMNS.contains(&column),
                "{column}"
            );
        }
    }

    #[test]
    fn both_dialects_name_every_field() {
        for (key, column, _) in FIELDS {
            for item in [&*SQLITE_ITEM, &*POSTGRES_ITEM] {
                assert!(item.contains(&format!("'{key}', ")), "{key}");
                assert!(item.contains(&format!("i.{column}")), "{column}");
            }
        }
    }
}
