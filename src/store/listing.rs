//! The integration list as the database writes it: each row's JSON object read, not built, and
//! the page's objects joined (on SQLite by the database, `string_agg`; on PostgreSQL here,
//! from the page's rows, see [`Assembly`]), handed out as one string that is never parsed.
//!
//! Why: at a million rows the list's cost was not the query plan but decoding 26 columns of
//! 100 rows through sqlx (a copy of every value, SQLite's worker thread handing each row
//! across a channel), parsing the JSON columns and serializing the page again (bench F8).
//! Assembling each object at read time (`json_object` over 25 columns, the id and the times
//! formatted) still cost SQLite about 7 µs a row; so migration `0006_list_json` keeps each
//! row's object in two fragments, `list_head` and `list_tail`, rendered by triggers whenever
//! a field in them is written (by any writer: every node of a cluster, an operator's SQL, so
//! they cannot go stale), and this module renders only the three fields a check rewrites
//! (`lastTestedAt`, `lastTestSuccess`, `consecutiveFailures`) between them, taking the time and
//! outcome of a check newer than the row's from `check_results` ([`Dialect::latest_check`]). Migration
//! `0007_flap_dependencies` makes the triggers again with the fields of DESIGN §10 at the end
//! of the tail. The history
//! writer's batch updates of those fields therefore never fire the triggers.
//!
//! Each object must mean exactly what `serde_json` makes of [`crate::integration::Integration`]
//! (the same keys in the same order, the same nulls, RFC 3339 times with chrono's fractional
//! digits and `Z`, booleans, the JSON columns embedded as JSON): [`FIELDS`] lists them, the
//! tests here check it against the serialized resource and the migrations, and
//! `tests/it/store.rs` and `tests/it/api/integrations.rs` compare every value, on both
//! backends, with a GET.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The resource's fields in `Integration`'s declaration order (what `serde_json` writes), and
/// the columns they come from. `consecutive_successes` is engine bookkeeping, not part of the
/// resource. The first [`HEAD`] are `list_head`'s, the last [`TAIL`] `list_tail`'s, the rest
/// are rendered at read time.
#[cfg(test)]
const FIELDS: [(&str, &str); 29] = [
    ("integrationId", "integration_id"),
    ("tenantId", "tenant_id"),
    ("name", "name"),
    ("description", "description"),
    ("type", "type"),
    ("provider", "provider"),
    ("baseUrl", "base_url"),
    ("authRef", "auth_ref"),
    ("configuration", "configuration"),
    ("environment", "environment"),
    ("tags", "tags"),
    ("ownerId", "owner_id"),
    ("healthCheck", "health_check"),
    ("status", "status"),
    ("paused", "paused"),
    ("pauseReason", "pause_reason"),
    ("pauseTicket", "pause_ticket"),
    ("lastTestedAt", "last_tested_at"),
    ("lastTestSuccess", "last_test_success"),
    ("consecutiveFailures", "consecutive_failures"),
    ("createdAt", "created_at"),
    ("createdBy", "created_by"),
    ("modifiedAt", "modified_at"),
    ("modifiedBy", "modified_by"),
    ("version", "version"),
    ("dependsOn", "depends_on"),
    ("suppressedBy", "suppressed_by"),
    ("flapping", "flapping"),
    ("maintenance", "maintenance"),
];
#[cfg(test)]
const HEAD: usize = 17;
#[cfg(test)]
const TAIL: usize = 9;

/// SQLite: the check the row has not recorded yet, as `checked_at µs × 2 + success`, or
/// `NULL`; see [`Dialect::latest_check`]. The row's times are RFC 3339 text (read to the
/// millisecond here, so the row's own check can come back: it says the same).
const SQLITE_LATEST: &str = "CASE WHEN i.status = 'active' THEN (SELECT max(p) FROM \
     (SELECT r.checked_at * 2 + (r.outcome = 0) AS p, r.outcome AS o FROM check_results r \
     WHERE r.integration_id = i.integration_id \
     AND r.checked_at > CAST(round(max(coalesce(unixepoch(i.last_tested_at, 'subsec'), 0), \
     unixepoch(i.modified_at, 'subsec')) * 1000) AS INTEGER) * 1000 \
     ORDER BY r.checked_at DESC LIMIT 100) WHERE o <> 2) END";

/// PostgreSQL: as [`SQLITE_LATEST`].
const POSTGRES_LATEST: &str = "CASE WHEN i.status = 'active' THEN (SELECT max(p) FROM (SELECT \
     (extract(epoch FROM r.checked_at) * 1000000)::int8 * 2 + (r.outcome = 0)::int AS p, \
     r.outcome AS o FROM check_results r WHERE r.integration_id = i.integration_id \
     AND r.checked_at > GREATEST(i.last_tested_at, i.modified_at) \
     ORDER BY r.checked_at DESC LIMIT 100) AS x WHERE o <> 2) END";

/// SQLite: the JSON object of the row `i`. sqlx stores times as `to_rfc3339_opts(AutoSi,
/// false)`: chrono's digits with `+00:00` where serde writes `Z`; `json_quote(NULL)` is `null`.
/// A check newer than the row's (`x.l`, [`SQLITE_LATEST`] evaluated once) is formatted from
/// its microseconds the way chrono's `AutoSi` writes them (0, 3 or 6 digits).
static SQLITE_ITEM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "(SELECT format('%s,\"lastTestedAt\":%s,\"lastTestSuccess\":%s,\
         \"consecutiveFailures\":%d,%s', i.list_head, \
         CASE WHEN x.l IS NULL THEN json_quote(replace(i.last_tested_at, '+00:00', 'Z')) \
         ELSE '\"' || strftime('%Y-%m-%dT%H:%M:%S', x.l / 2000000, 'unixepoch') || \
         CASE WHEN x.l / 2 % 1000000 = 0 THEN '' \
         WHEN x.l / 2 % 1000 = 0 THEN printf('.%03d', x.l / 2 % 1000000 / 1000) \
         ELSE printf('.%06d', x.l / 2 % 1000000) END || 'Z\"' END, \
         CASE WHEN x.l IS NOT NULL THEN CASE WHEN x.l % 2 = 1 THEN 'true' ELSE 'false' END \
         WHEN i.last_test_success IS NULL THEN 'null' \
         WHEN i.last_test_success THEN 'true' ELSE 'false' END, \
         i.consecutive_failures, i.list_tail) FROM (SELECT {SQLITE_LATEST} AS l) AS x)"
    )
});

/// PostgreSQL: what the page's rows select of `i` for their items: the fragments, the three
/// fields rendered at read time, and the newest check the row does not show yet
/// ([`POSTGRES_LATEST`]) as `l`; decoded as a [`ListRow`] and rendered by [`push_item`].
///
/// Why `l` is a column: PostgreSQL pulled a `(SELECT … AS l) AS x` of an item built in the
/// row up into it and planned `l` once per use, four sub-plans a row (four index seeks into
/// `check_results` for an active row). Selected as a column of the limited page, `l` is
/// evaluated once; 3,600 → 5,300 pages/s from `pgbench` at 1M drafts (bench F8).
static POSTGRES_ROW: LazyLock<String> = LazyLock::new(|| {
    format!(
        "i.list_head, i.list_tail, i.last_tested_at, i.last_test_success, \
         i.consecutive_failures, {POSTGRES_LATEST} AS l"
    )
});

/// A PostgreSQL page row ([`POSTGRES_ROW`], then the row's name and id).
pub(crate) type ListRow = (
    String,
    String,
    Option<DateTime<Utc>>,
    Option<bool>,
    i64,
    Option<i64>,
    String,
    Uuid,
);

/// Appends the JSON object of a PostgreSQL page row to `items`: `list_head`, the three
/// fields a check rewrites, `list_tail`. A check newer than the row's (`l`: its microseconds
/// × 2, plus 1 if it succeeded) stands in for the row's time and outcome. Times are written
/// by serde, as a GET writes them.
pub(crate) fn push_item(items: &mut String, row: &ListRow) {
    use std::fmt::Write as _;
    let (head, tail, tested_at, success, failures, newer, _, _) = row;
    let (tested_at, success) = match newer {
        Some(l) => (DateTime::from_timestamp_micros(l / 2), Some(l % 2 == 1)),
        None => (*tested_at, *success),
    };
    let tested_at = tested_at.map_or_else(
        || "null".to_owned(),
        |at| serde_json::to_string(&at).expect("a time serializes"),
    );
    let success = success.map_or("null", |s| if s { "true" } else { "false" });
    let _ = write!(
        items,
        "{head}, \"lastTestedAt\" : {tested_at}, \"lastTestSuccess\" : {success}, \
         \"consecutiveFailures\" : {failures}, {tail}"
    );
}

/// SQLite: the page row's item, built in the row (SQLite evaluates the `l` of
/// [`SQLITE_ITEM`] once).
static SQLITE_ROW: LazyLock<String> = LazyLock::new(|| format!("{} AS item", *SQLITE_ITEM));

/// What differs between the backends in the page's statement ([`super::backend::Backend`]).
#[derive(Debug)]
pub(crate) struct Dialect {
    /// What each of the page's rows selects of the integration row `i` (besides its name
    /// and id) for its item.
    pub(crate) row: &'static LazyLock<String>,
    /// The newest check of the integration row `i` that its row does not show yet, as
    /// `checked_at µs × 2 + (1 if it succeeded)`, or `NULL`. The history writer does not
    /// rewrite the row for a success that changes nothing but the time (see
    /// `history::batch`), so reads take the time and outcome from the results. Only checks
    /// after the row's last change count (a check of a version since edited is not shown, as
    /// the writer's version guard keeps it off the row), and only the last 100 of them
    /// (skipped checks do not count: a longer run of skipped checks shows the row's). Only
    /// an active integration's checks can be settled, so no other row is looked up.
    pub(crate) latest_check: &'static str,
    /// Where the page's items are joined.
    pub(crate) assembly: Assembly,
}

/// Where a page's items are joined into one string.
#[derive(Debug)]
pub(crate) enum Assembly {
    /// By the database, in one statement ([`page_head`]): SQLite, whose rows each cross from
    /// its worker thread on a channel, so one aggregated value costs far less than 100 rows.
    Database {
        /// The JSON object of a page row, as text, over what [`Dialect::row`] selected.
        item: &'static str,
        /// The id of the page's last row, beside `max(n)` (names are unique in a tenant).
        last_id: &'static str,
        /// How `string_agg` keeps the page's order.
        order: &'static str,
    },
    /// Here, from the page's rows and one more ([`ListRow`], [`push_item`]): PostgreSQL,
    /// where building the items (`concat`, formatting the times) and aggregating them was
    /// most of its CPU per page. `pgbench` of the two statements at 1M drafts, interleaved:
    /// 5,228 / 4,127 pages/s aggregated, 8,140 / 8,043 as rows; through the API (`wrk`, 8
    /// connections), 1,813 / 1,892 → 2,667 / 2,633 requests/s, the whole box's CPU per page
    /// 1,082 / 1,029 → 719 / 729 µs, the daemon's unchanged (bench F8).
    Daemon,
}

pub(crate) static SQLITE: Dialect = Dialect {
    row: &SQLITE_ROW,
    latest_check: SQLITE_LATEST,
    assembly: Assembly::Database {
        item: "item",
        // SQLite's bare column: taken from the row that gave `max(n)`.
        last_id: "id",
        // SQLite runs the page's subquery as a co-routine and aggregates its rows as they
        // come, in its ORDER BY; an `ORDER BY` in the aggregate would copy every item into a
        // B-tree and cost about as much as reading them. The tests page through every
        // filter to check it.
        order: "",
    },
};

pub(crate) static POSTGRES: Dialect = Dialect {
    row: &POSTGRES_ROW,
    latest_check: POSTGRES_LATEST,
    assembly: Assembly::Daemon,
};

/// The statement of one page, written around the list's `FROM … WHERE … ORDER BY` (its keyset
/// table `k`), which goes in twice:
///
/// ```text
/// SELECT string_agg({item}, ',' {order}), max(n), {last_id},
///        (SELECT count(*) FROM (SELECT 1 {rows} LIMIT {limit + 1}) AS ahead)
/// FROM (SELECT {row}, k.name AS n, k.integration_id AS id {rows} LIMIT {limit}) AS page
/// ```
///
/// One row: the items joined by commas (`NULL` when none), the last item's name and id, and
/// how many rows there are from the page's start up to one beyond it (more than `limit`:
/// another page follows). The count reads only the index, and the extra row's JSON is never
/// assembled; no CTE is materialized (SQLite writes a materialized CTE into a B-tree, which
/// cost more than the JSON). `string_agg` is PostgreSQL's and SQLite's (3.44+) alike.
pub(super) fn page_head(item: &str, order: &str, last_id: &str) -> String {
    format!(
        "SELECT string_agg({item}, ','{order}) AS items, max(n) AS last_name, \
         {last_id} AS last_id, (SELECT count(*) FROM (SELECT 1 AS one"
    )
}

/// After the counted rows and their `limit + 1`: the page's own select, up to its rows.
pub(super) fn page_middle(dialect: &Dialect, key: &str) -> String {
    format!(") AS ahead) AS found FROM ({}", page_rows(dialect, key))
}

/// The select of a page's rows ([`Dialect::row`], the row's name as `n` and id as `id`), up
/// to its `FROM`; the whole page's statement when the daemon assembles it.
pub(super) fn page_rows(dialect: &Dialect, key: &str) -> String {
    format!(
        "SELECT {}, {key}.name AS n, {key}.integration_id AS id",
        dialect.row.as_str()
    )
}

/// After the page's rows and its `limit`.
pub(super) const PAGE_TAIL: &str = ") AS page";

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
            depends_on: Vec::new(),
        };
        let integration = Integration::new("t", spec, "a", chrono::Utc::now());
        // The keys in the order serde writes them (nothing nested here has keys).
        let text = serde_json::to_string(&integration).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value.as_object().unwrap().len(), FIELDS.len());
        assert_keys_in_order(&text, &FIELDS);
        for (_, column) in FIELDS {
            assert!(
                super::super::rows::INTEGRATION_COLUMNS.contains(&column),
                "{column}"
            );
        }
    }

    /// Each migration's latest triggers (0006's, made again with the §10 fields by 0007 and 0010)
    /// render the head's and the tail's fields in order and no other, and each item renders
    /// the fields between them, in order (where they go: tests/it).
    #[test]
    fn the_migrations_and_the_items_render_every_field_in_order() {
        let (head, rest) = FIELDS.split_at(HEAD);
        let (middle, tail) = rest.split_at(rest.len() - TAIL);
        for migration in [
            include_str!("../../migrations/sqlite/0010_maintenance_engine.sql"),
            include_str!("../../migrations/postgres/0010_maintenance_engine.sql"),
        ] {
            let rendered =
                |(key, column): &(&str, &str)| (format!("'{key}', "), format!("NEW.{column}"));
            let mut from = 0;
            for field in head.iter().chain(tail) {
                let (key, column) = rendered(field);
                let at = migration[from..].find(&key).expect(&key) + from;
                assert!(migration[at..].contains(&column), "{column}");
                from = at;
            }
            for (_, column) in middle {
                assert!(!migration.contains(&format!("NEW.{column}")), "{column}");
            }
        }
        let mut postgres_item = String::new();
        push_item(
            &mut postgres_item,
            &list_row("list_head", "list_tail", None, None, None),
        );
        for item in [SQLITE_ITEM.as_str(), &postgres_item] {
            let keys: Vec<String> = middle.iter().map(|(key, _)| format!("\"{key}\"")).collect();
            let mut from = 0;
            for key in &keys {
                from += item[from..].find(key.as_str()).expect(key);
            }
            assert!(item.contains("list_head") && item.contains("list_tail"));
        }
        assert!(POSTGRES_ROW.contains("i.list_head") && POSTGRES_ROW.contains("i.list_tail"));
    }

    /// A page row with these fragments and check fields, 3 consecutive failures.
    fn list_row(
        head: &str,
        tail: &str,
        tested_at: Option<DateTime<Utc>>,
        success: Option<bool>,
        newer: Option<i64>,
    ) -> ListRow {
        let (head, tail) = (head.to_owned(), tail.to_owned());
        (
            head,
            tail,
            tested_at,
            success,
            3,
            newer,
            "n".into(),
            Uuid::nil(),
        )
    }

    /// A PostgreSQL row's item is an object whose middle fields say what serde writes for
    /// the row's own check, or for a newer one (`l`), whichever stands.
    #[test]
    fn postgres_items_render_the_check_as_serde_does() {
        let at = |micros: i64| DateTime::from_timestamp_micros(micros).unwrap();
        // (the row's time and outcome, a newer check, what the item says)
        let cases = [
            (None, None, None, None),
            (
                Some(at(1_700_000_000_000_000)),
                Some(true),
                None,
                Some((at(1_700_000_000_000_000), true)),
            ),
            (
                Some(at(1_700_000_000_123_000)),
                Some(false),
                None,
                Some((at(1_700_000_000_123_000), false)),
            ),
            (
                Some(at(1_700_000_000_000_000)),
                Some(false),
                Some(1_700_000_001_000_007 * 2 + 1),
                Some((at(1_700_000_001_000_007), true)),
            ),
            (
                None,
                None,
                Some(1_700_000_002_500_000 * 2),
                Some((at(1_700_000_002_500_000), false)),
            ),
        ];
        for (tested_at, success, newer, says) in cases {
            let mut item = String::new();
            let row = list_row(r#"{"a" : 1"#, r#""z" : 2}"#, tested_at, success, newer);
            push_item(&mut item, &row);
            let value: serde_json::Value = serde_json::from_str(&item).expect(&item);
            let (time, outcome) = match says {
                Some((time, outcome)) => (
                    serde_json::to_value(time).unwrap(),
                    serde_json::Value::Bool(outcome),
                ),
                None => (serde_json::Value::Null, serde_json::Value::Null),
            };
            assert_eq!(
                value,
                serde_json::json!({"a": 1, "lastTestedAt": time, "lastTestSuccess": outcome, "consecutiveFailures": 3, "z": 2}),
                "{item}"
            );
        }
    }

    fn assert_keys_in_order(text: &str, fields: &[(&str, &str)]) {
        let positions: Vec<usize> = fields
            .iter()
            .map(|(key, _)| {
                text.find(&format!("\"{key}\":"))
                    .unwrap_or_else(|| panic!("{key} is not serialized"))
            })
            .collect();
        assert!(positions.is_sorted(), "{text}");
    }
}
