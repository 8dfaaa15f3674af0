//! The provider names an integration may use: the built-in connectors (DESIGN §3), plus the
//! declarative providers [`crate::connectors::Connectors`] loaded from `plugins.directory`.

/// Providers implemented in code.
pub const BUILTIN: &[&str] = &[
    "http",
    "tcp",
    "harbor",
    "oci-registry",
    "github-app",
    "github",
    "gitlab",
    "gitea",
    "jenkins",
    "in-memory",
];

/// The set of providers this daemon knows.
#[derive(Debug, Clone)]
pub struct ProviderRegistry {
    names: Vec<String>,
}

impl ProviderRegistry {
    pub fn builtin() -> Self {
        ProviderRegistry {
            names: BUILTIN.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The built-in providers plus `declarative` ones (HTTP providers defined by files, which
    /// all need a `baseUrl`). Names already known are not repeated.
    pub fn with_declarative(mut self, declarative: impl IntoIterator<Item = String>) -> Self {
        let mut extra: Vec<String> = declarative
            .into_iter()
            .filter(|name| !self.contains(name))
            .collect();
        extra.sort();
        extra.dedup();
        self.names.extend(extra);
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Providers whose connector needs no `baseUrl`: `tcp` takes its address from the
    /// configuration and `in-memory` never touches the network.
    pub fn needs_base_url(&self, name: &str) -> bool {
        !matches!(name, "tcp" | "in-memory")
    }
}

impl Default for ProviderRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarative_providers_are_known_and_need_a_base_url() {
        let registry = ProviderRegistry::builtin().with_declarative([
            "nexus".to_owned(),
            "http".to_owned(),
            "artifactory".to_owned(),
        ]);
        assert!(registry.contains("nexus") && registry.contains("artifactory"));
        assert!(registry.needs_base_url("nexus"));
        assert_eq!(registry.names().filter(|n| *n == "http").count(), 1);
        assert_eq!(registry.names().last(), Some("nexus"));
    }
}
