//! The provider names an integration may use: the built-in connectors (DESIGN §3), plus
//! declarative providers loaded from `plugins.directory` once the engine lands.

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
