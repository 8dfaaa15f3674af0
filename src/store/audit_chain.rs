//! The hash-chained audit trail: the entry type, its canonical encoding, its hash, and the
//! pure verifier that both backends feed.
//!
//! Each tenant has its own chain: entry `n` stores the hash of entry `n - 1` (zeros for the
//! first) and its own hash over a canonical encoding of every field, sequence number included.
//! Editing an entry breaks its hash, deleting one breaks the next link or the tenant's head,
//! and reordering breaks the sequence. The `before`/`after` snapshots are stored as canonical
//! JSON *text*, never as JSONB, so the database cannot re-encode what was hashed.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::integration::AuditRecord;

/// The `prevHash` of a chain's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub entry_id: Uuid,
    pub tenant_id: String,
    /// Position in the tenant's chain, from 1, without gaps.
    pub sequence: i64,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Uuid,
    /// Canonical JSON of the state before the change; `null` for a creation.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// Canonical JSON of the state after the change; `null` for a deletion.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub prev_hash: String,
    pub hash: String,
}

/// An audit entry as the database holds it: snapshots as canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEntry {
    pub entry_id: Uuid,
    pub tenant_id: String,
    pub sequence: i64,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Uuid,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredAuditEntry {
    /// Chains `record` after `(prev_sequence, prev_hash)`.
    pub fn chain(record: &AuditRecord, prev_sequence: i64, prev_hash: &str) -> Self {
        let mut entry = StoredAuditEntry {
            entry_id: Uuid::now_v7(),
            tenant_id: record.tenant_id.clone(),
            sequence: prev_sequence + 1,
            actor: record.actor.clone(),
            action: record.action.clone(),
            // The resource an action is about is its prefix: `integration.update` is about
            // an integration, `status_page.update` about a tenant's status page.
            target_type: record
                .action
                .split_once('.')
                .map_or(record.action.as_str(), |(kind, _)| kind)
                .to_owned(),
            target_id: record.target_id,
            before: record.before.as_ref().map(canonical_json),
            after: record.after.as_ref().map(canonical_json),
            reason: record.reason.clone(),
            ticket: record.ticket.clone(),
            occurred_at: record.occurred_at,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// SHA-256 over the canonical encoding of every field but the hash itself: the object
    /// `{"v": 1, "entryId": …, "prevHash": …}` with its keys sorted, which
    /// [`Self::canonical_fields`] writes directly.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_fields()))
    }

    /// The canonical JSON of the hashed fields, written key by key in sorted order rather
    /// than built as a `serde_json::Value` and walked: that copied both snapshots into the
    /// value and escaped them again, once per committed transition (bench F6). The test
    /// `the_hashed_encoding_never_changes` holds it to the generic encoding byte for byte,
    /// since every stored hash depends on it.
    fn canonical_fields(&self) -> Vec<u8> {
        let snapshots = self.before.as_ref().map_or(0, String::len)
            + self.after.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(512 + snapshots + snapshots / 8);
        let mut object = CanonicalObject::new(&mut out);
        // Sorted by their UTF-8 bytes, as `canonical_json` sorts keys.
        object.field("action", &self.action);
        object.field("actor", &self.actor);
        object.field("after", &self.after);
        object.field("before", &self.before);
        object.field("entryId", &self.entry_id);
        object.field(
            "occurredAt",
            &self
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        object.field("prevHash", &self.prev_hash);
        object.field("reason", &self.reason);
        object.field("sequence", &self.sequence);
        object.field("targetId", &self.target_id);
        object.field("targetType", &self.target_type);
        object.field("tenantId", &self.tenant_id);
        object.field("ticket", &self.ticket);
        object.field("v", &1);
        object.end();
        out
    }

    /// The API view. A snapshot that no longer parses (only possible after tampering) is
    /// shown as a JSON string rather than failing the whole listing.
    pub fn into_entry(self) -> AuditEntry {
        let parse = |text: Option<String>| {
            text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
        };
        AuditEntry {
            entry_id: self.entry_id,
            tenant_id: self.tenant_id,
            sequence: self.sequence,
            actor: self.actor,
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            before: parse(self.before),
            after: parse(self.after),
            reason: self.reason,
            ticket: self.ticket,
            occurred_at: self.occurred_at,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

/// JSON with object keys sorted (by UTF-8 bytes) at every level and no insignificant
/// whitespace. Written by hand rather than relying on `serde_json::Map`'s ordering, which a
/// dependency enabling `preserve_order` would silently change.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Keys are unique, so an unstable sort orders them the same way.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut object = CanonicalObject::new(out);
            for (key, item) in entries {
                object.key(key);
                write_canonical(item, object.out);
            }
            object.end();
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // serde_json's compact writer, as its `Display` is, straight into the buffer.
        scalar => write_json(scalar, out),
    }
}

/// An object being written: its keys must come in canonical order.
struct CanonicalObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> CanonicalObject<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        CanonicalObject { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_json(key, self.out);
        self.out.push(b':');
    }

    /// A key and a value that serializes to canonical JSON by itself (a string, a number,
    /// `null`, an id: nothing with keys).
    fn field(&mut self, key: &str, value: &impl Serialize) {
        self.key(key);
        write_json(value, self.out);
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

fn write_json(value: &(impl Serialize + ?Sized), out: &mut Vec<u8>) {
    serde_json::to_writer(out, value).expect("JSON of a string, number or id into memory");
}

/// What is wrong with a chain, naming the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainProblem {
    pub tenant_id: String,
    /// The sequence number at which the chain first goes wrong.
    pub sequence: i64,
    pub entry_id: Option<Uuid>,
    pub kind: ChainProblemKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChainProblemKind {
    /// The entry's content does not match its hash: it was edited.
    HashMismatch,
    /// The entry does not link to its predecessor's hash: an entry before it was removed,
    /// replaced or moved.
    BrokenLink,
    /// The sequence skips or repeats: entries were deleted or reordered.
    SequenceGap,
    /// The tenant's recorded head is beyond the last entry: trailing entries were deleted.
    MissingTail,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            ChainProblemKind::HashMismatch => "content does not match its hash (edited)",
            ChainProblemKind::BrokenLink => {
                "does not link to the previous entry (entries removed or replaced)"
            }
            ChainProblemKind::SequenceGap => {
                "sequence is out of order (entries deleted or reordered)"
            }
            ChainProblemKind::MissingTail => {
                "is recorded as the chain head but missing (trailing entries deleted)"
            }
        };
        write!(f, "tenant {:?} entry #{}", self.tenant_id, self.sequence)?;
        if let Some(id) = self.entry_id {
            write!(f, " ({id})")?;
        }
        write!(f, ": {what}")
    }
}

/// Verifies one tenant's chain incrementally, entry by entry in stored sequence order, so a
/// chain of millions of entries is checked in constant memory.
#[derive(Debug)]
pub struct ChainVerifier {
    tenant_id: String,
    expected_sequence: i64,
    prev_hash: String,
    entries: u64,
}

impl ChainVerifier {
    pub fn new(tenant_id: &str) -> Self {
        ChainVerifier {
            tenant_id: tenant_id.to_owned(),
            expected_sequence: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            entries: 0,
        }
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Checks the next entry; returns the problem if the chain breaks here.
    pub fn push(&mut self, entry: &StoredAuditEntry) -> Result<(), ChainProblem> {
        let problem = |kind| ChainProblem {
            tenant_id: self.tenant_id.clone(),
            sequence: entry.sequence,
            entry_id: Some(entry.entry_id),
            kind,
        };
        if entry.sequence != self.expected_sequence {
            return Err(problem(ChainProblemKind::SequenceGap));
        }
        if entry.compute_hash() != entry.hash {
            return Err(problem(ChainProblemKind::HashMismatch));
        }
        if entry.prev_hash != self.prev_hash {
            return Err(problem(ChainProblemKind::BrokenLink));
        }
        self.prev_hash = entry.hash.clone();
        self.expected_sequence += 1;
        self.entries += 1;
        Ok(())
    }

    /// Compares the end of the chain with the tenant's recorded head `(sequence, hash)`.
    pub fn finish(self, head: Option<(i64, &str)>) -> Result<(), ChainProblem> {
        let last = self.expected_sequence - 1;
        match head {
            None if last == 0 => Ok(()),
            Some((sequence, hash)) if sequence == last && hash == self.prev_hash => Ok(()),
            Some((sequence, _)) if sequence > last => Err(ChainProblem {
                tenant_id: self.tenant_id,
                sequence: last + 1,
                entry_id: None,
                kind: ChainProblemKind::MissingTail,
            }),
            _ => Err(ChainProblem {
                tenant_id: self.tenant_id,
                sequence: last,
                entry_id: None,
                kind: ChainProblemKind::BrokenLink,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            tenant_id: "acme".into(),
            actor: "alice".into(),
            action: "integration.update".into(),
            target_id: Uuid::nil(),
            before: Some(serde_json::json!({"b": n, "a": [1, {"z": 1, "y": "é"}]})),
            after: None,
            reason: None,
            ticket: None,
            occurred_at: Utc
                .timestamp_opt(1_700_000_000 + n as i64, 123_456_000)
                .unwrap(),
        }
    }

    fn chain(n: u32) -> Vec<StoredAuditEntry> {
        let mut out: Vec<StoredAuditEntry> = Vec::new();
        for i in 0..n {
            let (seq, hash) = out
                .last()
                .map(|e| (e.sequence, e.hash.clone()))
                .unwrap_or((0, GENESIS_HASH.to_owned()));
            out.push(StoredAuditEntry::chain(&record(i), seq, &hash));
        }
        out
    }

    fn verify(entries: &[StoredAuditEntry], head: Option<(i64, &str)>) -> Result<(), ChainProblem> {
        let mut v = ChainVerifier::new("acme");
        for e in entries {
            v.push(e)?;
        }
        v.finish(head)
    }

    /// The encoding before `canonical_fields` (a `Value` walked by `reference_canonical`),
    /// which every hash stored until then was taken over.
    fn reference_hash(entry: &StoredAuditEntry) -> String {
        let fields = serde_json::json!({
            "v": 1,
            "entryId": entry.entry_id.to_string(),
            "tenantId": entry.tenant_id,
            "sequence": entry.sequence,
            "actor": entry.actor,
            "action": entry.action,
            "targetType": entry.target_type,
            "targetId": entry.target_id.to_string(),
            "before": entry.before,
            "after": entry.after,
            "reason": entry.reason,
            "ticket": entry.ticket,
            "occurredAt": entry.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "prevHash": entry.prev_hash,
        });
        hex::encode(Sha256::digest(reference_canonical(&fields).as_bytes()))
    }

    /// `canonical_json` as it was first written.
    fn reference_canonical(value: &serde_json::Value) -> String {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let fields: Vec<String> = keys
                    .into_iter()
                    .map(|key| {
                        format!(
                            "{}:{}",
                            Value::String(key.clone()),
                            reference_canonical(&map[key])
                        )
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(reference_canonical).collect();
                format!("[{}]", items.join(","))
            }
            scalar => scalar.to_string(),
        }
    }

    /// JSON values with keys and strings that need escaping (quotes, backslashes, control
    /// characters, non-ASCII), numbers of every kind, nesting.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e300f64..1e300).prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|map| { serde_json::Value::Object(map.into_iter().collect()) }),
            ]
        })
    }

    proptest! {
        /// Every stored hash depends on these bytes: the direct writers produce exactly what
        /// the generic encoding did, for any snapshot and any field.
        #[test]
        fn the_hashed_encoding_never_changes(
            before in proptest::option::of(json_value()),
            after in proptest::option::of(json_value()),
            texts in proptest::collection::vec(any::<String>(), 5),
            reason in proptest::option::of(any::<String>()),
            sequence in any::<i64>(),
            micros in 0i64..4_000_000_000_000_000,
        ) {
            let record = AuditRecord {
                tenant_id: texts[0].clone(),
                actor: texts[1].clone(),
                action: texts[2].clone(),
                target_id: Uuid::now_v7(),
                before: before.clone(),
                after,
                reason,
                ticket: Some(texts[3].clone()),
                occurred_at: DateTime::from_timestamp_micros(micros).unwrap(),
            };
            let entry = StoredAuditEntry::chain(&record, sequence.saturating_sub(1), &texts[4]);
            if let Some(before) = &before {
                prop_assert_eq!(canonical_json(before), reference_canonical(before));
            }
            prop_assert_eq!(&entry.hash, &reference_hash(&entry));
        }
    }

    /// A fixed entry's hash, as the encoding before `canonical_fields` computed it.
    #[test]
    fn a_known_entry_keeps_its_hash() {
        let entry = StoredAuditEntry::chain(&record(7), 41, GENESIS_HASH);
        let entry = StoredAuditEntry {
            entry_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            ..entry
        };
        assert_eq!(entry.compute_hash(), reference_hash(&entry));
        assert_eq!(
            entry.compute_hash(),
            "d0b48e15531f93d21f427c823b87e2996dfe59bac492cb6c7ca8e6596a442cca"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"d": [true, null], "c": "x\"y"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x\"y","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn tampering_is_detected_at_the_first_bad_entry() {
        let good = chain(5);
        let head = (5, good[4].hash.as_str());
        assert_eq!(verify(&good, Some(head)), Ok(()));

        let mut edited = good.clone();
        edited[2].actor = "mallory".into();
        let p = verify(&edited, Some(head)).unwrap_err();
        assert_eq!((p.sequence, p.kind), (3, ChainProblemKind::HashMismatch));

        let mut deleted = good.clone();
        deleted.remove(1);
        let p = verify(&deleted, Some(head)).unwrap_err();
        assert_eq!((p.sequence, p.kind), (3, ChainProblemKind::SequenceGap));

        let mut reordered = good.clone();
        reordered.swap(1, 3);
        let p = verify(&reordered, Some(head)).unwrap_err();
        assert_eq!((p.sequence, p.kind), (4, ChainProblemKind::SequenceGap));

        // Swapping contents but keeping the sequence numbers in place breaks the hash.
        let mut swapped = good.clone();
        let (s1, s3) = (swapped[1].sequence, swapped[3].sequence);
        swapped.swap(1, 3);
        swapped[1].sequence = s1;
        swapped[3].sequence = s3;
        let p = verify(&swapped, Some(head)).unwrap_err();
        assert_eq!((p.sequence, p.kind), (2, ChainProblemKind::HashMismatch));

        let truncated = &good[..4];
        let p = verify(truncated, Some(head)).unwrap_err();
        assert_eq!((p.sequence, p.kind), (5, ChainProblemKind::MissingTail));
    }
}
