//! The hash-chained audit trail: the entry type, its canonical encoding, its hash, and the
//! pure verifier that both backends feed.
//!
//! Each tenant has its own chain: entry `n` stores the hash of entry `n - 1` (zeros for the
//! first) and its own hash over a canonical encoding of every field, sequence number included.
//! Editing an entry breaks its hash, deleting one breaks the next link or the tenant's head,
//! and reordering breaks the sequence. The `before`/`after` snapshots are stored as canonical
//! JSON *text*, never as JSONB, so the database cannot re-encode what was hashed.

use std::fmt::Write as _;

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

    /// SHA-256 over the canonical encoding of every field but the hash itself.
    pub fn compute_hash(&self) -> String {
        let fields = serde_json::json!({
            "v": 1,
            "entryId": self.entry_id.to_string(),
            "tenantId": self.tenant_id,
            "sequence": self.sequence,
            "actor": self.actor,
            "action": self.action,
            "targetType": self.target_type,
            "targetId": self.target_id.to_string(),
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "ticket": self.ticket,
            "occurredAt": self.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "prevHash": self.prev_hash,
        });
        hex::encode(Sha256::digest(canonical_json(&fields).as_bytes()))
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
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
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
