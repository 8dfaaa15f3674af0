//! The original catalog's ("the seed's") enum spellings (DESIGN §12): input may spell a type,
//! a provider or a status in any case, with or without `-` and `_` (`Registry`, `SCM`,
//! `GitHubApp`, `github_app`, `InMemory`, `PendingVerification`, `pending-verification`), plus
//! a few names the seed used for the same thing ([`ALIASES`]); output is always the canonical
//! lower-case form of DESIGN §3.
//!
//! One rule, used by validation (bodies) and the list filters (REST query and NATS control
//! alike), and stated as a JSON Schema pattern ([`pattern`]) for the OpenAPI document, whose
//! tests check it against this module.

use catalogd_actors::Status;

use crate::integration::IntegrationType;

/// Spellings of the seed that are other words, not other cases or separators of ours:
/// `(kind, normalized seed spelling, canonical name)`.
pub const ALIASES: &[(Kind, &str, &str)] = &[
    (Kind::Type, "containerregistry", "registry"),
    (Kind::Type, "sourcecontrol", "scm"),
    (Kind::Type, "runtimehost", "host"),
    (Kind::Type, "vulnerabilityfeed", "feed"),
    (Kind::Type, "artifactsink", "artifact"),
    (Kind::Provider, "dockerhub", "oci-registry"),
    (Kind::Provider, "githubenterprise", "github"),
    (Kind::Provider, "bitbucketcloud", "bitbucket"),
    (Kind::Provider, "bitbucketserver", "bitbucket"),
    (Kind::Provider, "bitbucketdatacenter", "bitbucket"),
    (Kind::Provider, "azuredevopsservices", "azure-devops"),
    (Kind::Provider, "azuredevopsserver", "azure-devops"),
];

/// Which enum a spelling belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Type,
    Provider,
    Status,
}

/// The comparison form of a spelling: ASCII lower case without `-` and `_`. Anything else
/// (spaces, dots, other letters) stays, so it cannot match a canonical name by accident.
pub fn normalize(raw: &str) -> String {
    raw.chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The canonical name among `names` that `raw` spells, if exactly one does. An exact match
/// wins; an empty normalized form matches nothing.
pub fn canonical<'a>(
    kind: Kind,
    raw: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let names: Vec<&'a str> = names.into_iter().collect();
    if let Some(exact) = names.iter().copied().find(|name| *name == raw) {
        return Some(exact);
    }
    let key = normalize(raw);
    if key.is_empty() {
        return None;
    }
    let mut found = names.iter().copied().filter(|name| normalize(name) == key);
    match (found.next(), found.next()) {
        (Some(name), None) => Some(name),
        // Two names that differ only in separators: neither is meant more than the other.
        (Some(_), Some(_)) => None,
        (None, _) => {
            let target = ALIASES
                .iter()
                .find(|(k, alias, _)| *k == kind && *alias == key)
                .map(|(_, _, target)| *target)?;
            names.iter().copied().find(|name| *name == target)
        }
    }
}

/// The type `raw` spells.
pub fn integration_type(raw: &str) -> Option<IntegrationType> {
    let name = canonical(
        Kind::Type,
        raw,
        IntegrationType::ALL.iter().map(|t| t.as_str()),
    )?;
    IntegrationType::parse(name)
}

/// The status `raw` spells.
pub fn status(raw: &str) -> Option<Status> {
    let name = canonical(Kind::Status, raw, Status::ALL.iter().map(|s| s.as_str()))?;
    name.parse().ok()
}

/// A JSON Schema (ECMA 262) pattern that matches exactly the spellings [`canonical`] maps to
/// one of `names` (assumed distinct after [`normalize`]), aliases included.
pub fn pattern<'a>(kind: Kind, names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let mut keys: Vec<String> = names.iter().map(|name| normalize(name)).collect();
    keys.extend(
        ALIASES
            .iter()
            .filter(|(k, _, target)| *k == kind && names.contains(target))
            .map(|(_, alias, _)| (*alias).to_owned()),
    );
    keys.sort();
    keys.dedup();
    let alternatives: Vec<String> = keys
        .iter()
        .map(|key| {
            key.chars()
                .map(|c| {
                    let class = if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c, c.to_ascii_uppercase())
                    } else {
                        regex_escape(c)
                    };
                    format!("{class}[-_]*")
                })
                .collect()
        })
        .collect();
    format!("^[-_]*(?:{})$", alternatives.join("|"))
}

fn regex_escape(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        format!("\\{c}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spellings and what they mean; `None` must be refused.
    const TYPES: &[(&str, Option<&str>)] = &[
        ("registry", Some("registry")),
        ("Registry", Some("registry")),
        ("REGISTRY", Some("registry")),
        ("SCM", Some("scm")),
        ("Ci", Some("ci")),
        ("ContainerRegistry", Some("registry")),
        ("container-registry", Some("registry")),
        ("Artifact", Some("artifact")),
        ("registries", None),
        ("reg istry", None),
        ("registry ", None),
        ("", None),
        ("-", None),
        ("database", None),
    ];

    const STATUSES: &[(&str, Option<&str>)] = &[
        ("pending_verification", Some("pending_verification")),
        ("PendingVerification", Some("pending_verification")),
        ("pending-verification", Some("pending_verification")),
        ("PENDING_VERIFICATION", Some("pending_verification")),
        ("pendingverification", Some("pending_verification")),
        ("Active", Some("active")),
        ("Paused", Some("paused")),
        ("pending verification", None),
        ("pending.verification", None),
        ("healthy", None),
    ];

    #[test]
    fn types_and_statuses() {
        for (raw, expected) in TYPES {
            assert_eq!(
                integration_type(raw).map(|t| t.as_str()),
                *expected,
                "{raw:?}"
            );
        }
        for (raw, expected) in STATUSES {
            assert_eq!(status(raw).map(|s| s.as_str()), *expected, "{raw:?}");
        }
    }

    #[test]
    fn ambiguous_spellings_match_nothing_but_exact_names() {
        let names = ["foo-bar", "foobar", "baz"];
        assert_eq!(canonical(Kind::Provider, "foo-bar", names), Some("foo-bar"));
        assert_eq!(canonical(Kind::Provider, "foobar", names), Some("foobar"));
        assert_eq!(canonical(Kind::Provider, "FooBar", names), None);
        assert_eq!(canonical(Kind::Provider, "BAZ", names), Some("baz"));
        // An alias whose target this daemon lacks means nothing.
        assert_eq!(canonical(Kind::Provider, "DockerHub", names), None);
    }

    #[test]
    fn the_pattern_accepts_exactly_what_canonical_accepts() {
        let names: Vec<&str> = IntegrationType::ALL.iter().map(|t| t.as_str()).collect();
        let regex = regex_lite(&pattern(Kind::Type, names.iter().copied()));
        for (raw, expected) in TYPES {
            assert_eq!(regex(raw), expected.is_some(), "{raw:?}");
        }
        let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        let regex = regex_lite(&pattern(Kind::Status, names.iter().copied()));
        for (raw, expected) in STATUSES {
            assert_eq!(regex(raw), expected.is_some(), "{raw:?}");
        }
    }

    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let validator = jsonschema::draft202012::new(
            &serde_json::json!({"type": "string", "pattern": pattern}),
        )
        .unwrap();
        move |s| validator.is_valid(&serde_json::json!(s))
    }
}
