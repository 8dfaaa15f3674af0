//! The provider names an integration may use: the built-in connectors (DESIGN §3, §12), plus
//! the declarative providers [`crate::connectors::Connectors`] loaded from `plugins.directory`.

/// Providers built into the binary: implemented in code, or declarative definitions compiled
/// in (`src/connectors/builtin/`, DESIGN §12).
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
    "artifactory",
    "nexus",
    "sonarqube",
    "bitbucket",
    "azure-devops",
    "circleci",
    "github-actions",
    "gitlab-ci",
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

    /// The canonical name `raw` spells: itself, or a known name in another case, with or
    /// without `-`/`_`, or one of the seed's aliases ([`crate::spellings`]).
    pub fn canonical(&self, raw: &str) -> Option<&str> {
        crate::spellings::canonical(
            crate::spellings::Kind::Provider,
            raw,
            self.names.iter().map(String::as_str),
        )
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
    fn seed_spellings_name_the_canonical_provider() {
        let registry = ProviderRegistry::builtin();
        for (raw, expected) in [
            ("github-app", Some("github-app")),
            ("GitHubApp", Some("github-app")),
            ("github_app", Some("github-app")),
            ("GITHUB-APP", Some("github-app")),
            ("InMemory", Some("in-memory")),
            ("OciRegistry", Some("oci-registry")),
            ("DockerHub", Some("oci-registry")),
            ("HTTP", Some("http")),
            ("GitHubActions", Some("github-actions")),
            ("GitLabCI", Some("gitlab-ci")),
            ("AzureDevOps", Some("azure-devops")),
            ("BitbucketServer", Some("bitbucket")),
            ("CircleCI", Some("circleci")),
            ("SonarQube", Some("sonarqube")),
            ("git hub", None),
            ("githubb", None),
            ("", None),
        ] {
            assert_eq!(registry.canonical(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn declarative_providers_are_known_and_need_a_base_url() {
        let registry = ProviderRegistry::builtin().with_declarative([
            "zeta".to_owned(),
            "http".to_owned(),
            "nexus".to_owned(),
            "acme".to_owned(),
        ]);
        assert!(registry.contains("zeta") && registry.contains("acme"));
        assert!(registry.needs_base_url("zeta") && registry.needs_base_url("nexus"));
        assert_eq!(registry.names().filter(|n| *n == "http").count(), 1);
        assert_eq!(registry.names().filter(|n| *n == "nexus").count(), 1);
        assert_eq!(registry.names().last(), Some("zeta"));
    }
}
