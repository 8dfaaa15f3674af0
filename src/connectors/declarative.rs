//! Declarative providers: a TOML file is a request template plus success conditions, so a new
//! HTTP-based provider needs no code. Files are read from `plugins.directory` at start; the
//! built-in `github`, `gitlab`, `gitea`, `jenkins`, `artifactory`, `nexus`, `sonarqube`,
//! `bitbucket`, `azure-devops`, `circleci`, `github-actions` and `gitlab-ci` providers are such
//! files compiled in (`src/connectors/builtin/`); a file in `plugins.directory` with one of
//! their names replaces it.
//!
//! ```toml
//! name = "artifactory"                 # [a-z0-9-], unique, not a built-in name
//! description = "..."
//! requires_auth = false                # without an AuthRef the check is a `config` failure
//!
//! [request]                            # the health check
//! method = "GET"                       # GET, HEAD or POST
//! path = "/artifactory/api/system/ping"  # appended to baseUrl; may use {{config.NAME}}
//! headers = { Accept = "text/plain" }  # values may use {{secret}}, {{secret.user}},
//!                                      # {{secret.password}}, {{config.NAME}}
//! auth = "none"                        # none, basic (user:password), bearer, header
//! auth_header = "X-JFrog-Art-Api"      # with auth = "header": carries {{secret}}
//!
//! [expect]                             # all must hold
//! status = [200]                       # default 200-299
//! anonymous_status = [401]             # also fine when no AuthRef is configured
//! auth_status = [203]                  # with credentials, also means `auth` (as 401/403 do)
//! body_contains = "OK"
//! headers = [{ name = "X-Jenkins", contains = "2." }]   # equals / contains / present
//! json = [{ path = "$.status", equals = "UP" }]         # RFC 9535 JSONPath; no equals: exists
//!                                      # each condition may set class = "auth" (default assertion)
//!
//! [test]                               # optional: the connection test's authenticated call
//! path = "/artifactory/api/system/version"  # method, headers, auth as in [request]
//! auth = "bearer"                      # (auth and headers default to [request]'s)
//! [test.expect]
//! json = [{ path = "$.version" }]
//! ```
//!
//! Header values that carry a secret placeholder are sent only with credentials: the
//! connection test's `http` stage leaves them out to show plain reachability.
//!
//! One provider may speak to several editions of a product whose APIs differ (Bitbucket Cloud
//! and Data Center): instead of `[request]`, `[editions.<name>]` tables each hold their own
//! `request`, `expect`, `test` and `requires_auth`. The integration picks one with the
//! configuration key `edition_key` names; without it, the edition whose `hosts` list the base
//! URL's host, else the one marked `default = true`.
//!
//! ```toml
//! name = "bitbucket"
//! edition_key = "edition"
//! [editions.cloud]
//! hosts = ["api.bitbucket.org"]
//! [editions.cloud.request]
//! path = "/2.0/user"
//! [editions.datacenter]
//! default = true
//! [editions.datacenter.request]
//! path = "/rest/api/1.0/projects?limit=1"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use catalogd_actors::FailureClass;
use http::header::HeaderName;
use http::Method;
use serde::Deserialize;

use super::request::{
    Auth, Call, CallConnector, Expect, HeaderCondition, JsonCondition, StatusSet, Template,
};
use super::{Connector, ConnectorError, Failure, Session, Verdict};

/// A provider defined by a file.
#[derive(Debug, Clone)]
pub struct DeclarativeProvider {
    pub name: String,
    pub description: Option<String>,
    /// The file it came from (`builtin:<name>` for compiled-in definitions).
    pub source: PathBuf,
    pub connector: Editions,
}

/// The calls of a provider: one connector, or one per edition of the product.
#[derive(Debug, Clone)]
pub enum Editions {
    // Boxed: a connector is large, and a provider holds one either way.
    Single(Box<CallConnector>),
    Several {
        /// The configuration key that names the edition.
        key: String,
        editions: Vec<Edition>,
        /// The index of the edition used when neither the key nor a host picks one.
        default: Option<usize>,
    },
}

/// One edition of a product (Bitbucket Cloud, Bitbucket Data Center).
#[derive(Debug, Clone)]
pub struct Edition {
    pub name: String,
    /// Base URL hosts for which this edition is the default.
    pub hosts: Vec<String>,
    pub connector: CallConnector,
}

impl Editions {
    /// The connector for this target: the configured edition, else the one whose hosts list
    /// the base URL's host, else the default.
    pub fn select(&self, session: &Session<'_>) -> Result<&CallConnector, Failure> {
        let (key, editions, default) = match self {
            Editions::Single(connector) => return Ok(connector),
            Editions::Several {
                key,
                editions,
                default,
            } => (key, editions, default),
        };
        let names = || {
            editions
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(value) = session.target.configuration.get(key) {
            let wanted = value.as_str().map(crate::spellings::normalize);
            return editions
                .iter()
                .find(|e| Some(crate::spellings::normalize(&e.name)) == wanted)
                .map(|e| &e.connector)
                .ok_or_else(|| {
                    Failure::config(format!("configuration.{key} must be one of {}", names()))
                });
        }
        let host = session
            .base_url()
            .ok()
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase));
        if let Some(edition) = host.and_then(|host| {
            editions
                .iter()
                .find(|e| e.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)))
        }) {
            return Ok(&edition.connector);
        }
        default
            .as_ref()
            .map(|index| &editions[*index].connector)
            .ok_or_else(|| {
                Failure::config(format!(
                    "configuration.{key} is required: one of {}",
                    names()
                ))
            })
    }
}

#[async_trait]
impl Connector for DeclarativeProvider {
    async fn check_health(&self, session: &Session<'_>) -> Verdict {
        match self.connector.select(session) {
            Ok(connector) => connector.run_check(session).await.into(),
            Err(failure) => Verdict::Failed(failure),
        }
    }

    async fn test_connection(&self, session: &Session<'_>) -> Verdict {
        match self.connector.select(session) {
            Ok(connector) => connector.run_test(session).await.into(),
            Err(failure) => Verdict::Failed(failure),
        }
    }
}

/// The compiled-in definitions (DESIGN §3, §12), usable by name without any file.
const BUILTIN: &[(&str, &str)] = &[
    ("github", include_str!("builtin/github.toml")),
    ("gitlab", include_str!("builtin/gitlab.toml")),
    ("gitea", include_str!("builtin/gitea.toml")),
    ("jenkins", include_str!("builtin/jenkins.toml")),
    ("artifactory", include_str!("builtin/artifactory.toml")),
    ("nexus", include_str!("builtin/nexus.toml")),
    ("sonarqube", include_str!("builtin/sonarqube.toml")),
    ("bitbucket", include_str!("builtin/bitbucket.toml")),
    ("azure-devops", include_str!("builtin/azure-devops.toml")),
    ("circleci", include_str!("builtin/circleci.toml")),
    (
        "github-actions",
        include_str!("builtin/github-actions.toml"),
    ),
    ("gitlab-ci", include_str!("builtin/gitlab-ci.toml")),
];

/// The compiled-in definitions.
pub fn builtin() -> Vec<DeclarativeProvider> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            parse(text, Path::new(&format!("builtin:{name}")))
                .expect("built-in provider definitions are valid")
        })
        .collect()
}

/// Every `*.toml` file in `directory`, in file-name order. A missing directory holds none.
pub fn load_directory(directory: &Path) -> Result<Vec<DeclarativeProvider>, ConnectorError> {
    let directory_error = |source| ConnectorError::Directory {
        path: directory.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(directory_error(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(directory_error)?.path();
        if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut providers: Vec<DeclarativeProvider> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| ConnectorError::Definition {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let provider = parse(&text, &path)?;
        if providers.iter().any(|p| p.name == provider.name) {
            return Err(ConnectorError::Definition {
                path,
                reason: format!("provider {} is defined twice", provider.name),
            });
        }
        providers.push(provider);
    }
    Ok(providers)
}

/// Parses one definition; `source` names it in errors.
pub fn parse(text: &str, source: &Path) -> Result<DeclarativeProvider, ConnectorError> {
    let invalid = |reason: String| ConnectorError::Definition {
        path: source.to_owned(),
        reason,
    };
    let file: ProviderFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let valid_name = !file.name.is_empty()
        && file.name.len() <= 64
        && file
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_name {
        return Err(invalid(
            "name must be 1-64 characters of a-z, 0-9 and -".to_owned(),
        ));
    }
    let connector = match (file.request, file.editions.is_empty(), file.edition_key) {
        (Some(request), true, None) => Editions::Single(Box::new(
            connector(request, file.expect, file.test, file.requires_auth, None)
                .map_err(invalid)?,
        )),
        (None, false, Some(key)) => {
            if file.expect.is_some() || file.test.is_some() {
                return Err(invalid(
                    "with editions, expect and test belong in each edition".to_owned(),
                ));
            }
            let mut editions = Vec::new();
            let mut default = None;
            for (name, edition) in file.editions {
                let at = format!("editions.{name}");
                if edition.default {
                    if default.is_some() {
                        return Err(invalid("only one edition may be the default".to_owned()));
                    }
                    default = Some(editions.len());
                }
                let requires_auth = edition.requires_auth.unwrap_or(file.requires_auth);
                editions.push(Edition {
                    connector: connector(
                        edition.request,
                        edition.expect,
                        edition.test,
                        requires_auth,
                        Some(&at),
                    )
                    .map_err(invalid)?,
                    name,
                    hosts: edition.hosts,
                });
            }
            Editions::Several {
                key,
                editions,
                default,
            }
        }
        (None, true, _) => return Err(invalid("missing field `request`".to_owned())),
        (None, false, None) => {
            return Err(invalid("edition_key is required with editions".to_owned()))
        }
        (Some(_), _, _) => {
            return Err(invalid(
                "request and editions (with edition_key) exclude each other".to_owned(),
            ))
        }
    };
    Ok(DeclarativeProvider {
        name: file.name,
        description: file.description,
        source: source.to_owned(),
        connector,
    })
}

/// One connector from its request, expectations and optional test; `at` prefixes messages.
fn connector(
    request: RequestSpec,
    expect: Option<ExpectSpec>,
    test: Option<TestSpec>,
    requires_auth: bool,
    at: Option<&str>,
) -> Result<CallConnector, String> {
    let prefix = |e: String| match at {
        Some(at) => format!("{at}.{e}"),
        None => e,
    };
    let check = request
        .call(expect.unwrap_or_default(), None)
        .map_err(prefix)?;
    let auth_test = test
        .map(|test| test.call(&request))
        .transpose()
        .map_err(prefix)?;
    Ok(CallConnector {
        check,
        auth_test,
        requires_credentials: requires_auth,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    name: String,
    description: Option<String>,
    #[serde(default)]
    requires_auth: bool,
    request: Option<RequestSpec>,
    expect: Option<ExpectSpec>,
    test: Option<TestSpec>,
    /// The configuration key naming the edition, with `editions`.
    edition_key: Option<String>,
    #[serde(default)]
    editions: BTreeMap<String, EditionSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditionSpec {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    default: bool,
    requires_auth: Option<bool>,
    request: RequestSpec,
    expect: Option<ExpectSpec>,
    test: Option<TestSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthSpec {
    #[default]
    None,
    Basic,
    Bearer,
    Header,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    method: Option<String>,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    auth: AuthSpec,
    auth_header: Option<String>,
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    method: Option<String>,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    auth: Option<AuthSpec>,
    auth_header: Option<String>,
    body: Option<String>,
    #[serde(default)]
    expect: ExpectSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    status: Option<Vec<u16>>,
    #[serde(default)]
    anonymous_status: Vec<u16>,
    #[serde(default)]
    auth_status: Vec<u16>,
    body_contains: Option<String>,
    #[serde(default)]
    headers: Vec<HeaderSpec>,
    #[serde(default)]
    json: Vec<JsonSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderSpec {
    name: String,
    equals: Option<String>,
    contains: Option<String>,
    class: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSpec {
    path: String,
    equals: Option<toml::Value>,
    class: Option<String>,
}

impl TestSpec {
    /// The test call; auth and headers default to the check request's.
    fn call(self, request: &RequestSpec) -> Result<Call, String> {
        let mut headers = request.headers.clone();
        headers.extend(self.headers);
        let spec = RequestSpec {
            method: self.method,
            path: self.path,
            headers,
            auth: self.auth.unwrap_or(request.auth),
            auth_header: self.auth_header.or_else(|| request.auth_header.clone()),
            body: self.body,
        };
        spec.call(self.expect, Some("test"))
    }
}

impl RequestSpec {
    fn call(&self, expect: ExpectSpec, section: Option<&str>) -> Result<Call, String> {
        let at = |what: &str| match section {
            Some(section) => format!("{section}.{what}"),
            None => what.to_owned(),
        };
        let method = match self.method.as_deref().unwrap_or("GET") {
            m if m.eq_ignore_ascii_case("GET") => Method::GET,
            m if m.eq_ignore_ascii_case("HEAD") => Method::HEAD,
            m if m.eq_ignore_ascii_case("POST") => Method::POST,
            _ => return Err(format!("{} must be GET, HEAD or POST", at("method"))),
        };
        if !self.path.starts_with('/') || self.path.contains(['\r', '\n', '#']) {
            return Err(format!("{} must be a path starting with /", at("path")));
        }
        let path =
            Template::parse(&self.path, false).map_err(|e| format!("{}: {e}", at("path")))?;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            headers.push((
                header_name(name).map_err(|e| format!("{}: {e}", at("headers")))?,
                Template::parse(value, true).map_err(|e| format!("{}: {e}", at("headers")))?,
            ));
        }
        let auth = match (self.auth, &self.auth_header) {
            (AuthSpec::Header, Some(name)) => {
                headers.push((
                    header_name(name).map_err(|e| format!("{}: {e}", at("auth_header")))?,
                    Template::parse("{{secret}}", true)?,
                ));
                Auth::None
            }
            (AuthSpec::Header, None) => {
                return Err(format!(
                    "{} is required with auth = \"header\"",
                    at("auth_header")
                ))
            }
            (_, Some(_)) => {
                return Err(format!(
                    "{} is only used with auth = \"header\"",
                    at("auth_header")
                ))
            }
            (AuthSpec::None, None) => Auth::None,
            (AuthSpec::Basic, None) => Auth::Basic,
            (AuthSpec::Bearer, None) => Auth::Bearer,
        };
        Ok(Call {
            method,
            path,
            headers,
            auth,
            body: self.body.clone().map(Into::into),
            expect: expect
                .build()
                .map_err(|e| format!("{}: {e}", at("expect")))?,
        })
    }
}

impl ExpectSpec {
    fn build(self) -> Result<Expect, String> {
        let valid = |code: &u16| (100..=599).contains(code);
        let status = match self.status {
            None => StatusSet::range(200..=299),
            Some(codes) if !codes.is_empty() && codes.iter().all(valid) => StatusSet::of(&codes),
            Some(_) => return Err("status must list codes between 100 and 599".to_owned()),
        };
        if !self.anonymous_status.iter().all(valid) {
            return Err("anonymous_status must list codes between 100 and 599".to_owned());
        }
        if !self.auth_status.iter().all(valid) {
            return Err("auth_status must list codes between 100 and 599".to_owned());
        }
        let mut expect = Expect::status(status);
        expect.anonymous_status = self.anonymous_status;
        expect.auth_status = self.auth_status;
        expect.body_contains = self.body_contains.filter(|needle| !needle.is_empty());
        for header in self.headers {
            expect.headers.push(HeaderCondition {
                name: header_name(&header.name)?,
                equals: header.equals,
                contains: header.contains,
                class: failure_class(header.class.as_deref())?,
            });
        }
        for json in self.json {
            let equals = json
                .equals
                .map(serde_json::to_value)
                .transpose()
                .map_err(|_| format!("json {}: equals is not a JSON value", json.path))?;
            let mut condition = JsonCondition::parse(&json.path, equals)?;
            condition.class = failure_class(json.class.as_deref())?;
            expect.json.push(condition);
        }
        Ok(expect)
    }
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::try_from(name).map_err(|_| format!("invalid header name {name:?}"))
}

fn failure_class(name: Option<&str>) -> Result<FailureClass, String> {
    match name {
        None => Ok(FailureClass::Assertion),
        Some(name) => FailureClass::ALL
            .into_iter()
            .find(|class| class.as_str() == name)
            .ok_or_else(|| format!("unknown failure class {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_definitions_parse_and_are_known_providers() {
        let names: Vec<_> = builtin().into_iter().map(|p| p.name).collect();
        let files: Vec<_> = BUILTIN.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, files, "each file is named as its provider");
        for name in &names {
            assert!(crate::providers::BUILTIN.contains(&name.as_str()), "{name}");
        }
        for name in [
            "artifactory",
            "nexus",
            "sonarqube",
            "bitbucket",
            "azure-devops",
            "circleci",
            "github-actions",
            "gitlab-ci",
        ] {
            assert!(names.contains(&name.to_owned()), "{name}");
        }
    }

    #[test]
    fn bitbucket_picks_its_edition_by_key_then_host_then_default() {
        use crate::connectors::{Context, Diagnostics, Target};
        let provider = builtin()
            .into_iter()
            .find(|p| p.name == "bitbucket")
            .unwrap();
        let context = Context {
            egress: crate::egress::EgressClient::new(&Default::default()),
            secrets: crate::secrets::SecretResolver::new(&Default::default()),
            clock: std::sync::Arc::new(catalogd_actors::SystemClock),
        };
        let diagnostics = Diagnostics::disabled();
        let path_for = |base: &str, configuration: serde_json::Value| {
            let target = Target::new("bitbucket", Some(base)).with_configuration(configuration);
            let session = Session::new(&target, &context, &diagnostics);
            provider
                .connector
                .select(&session)
                .map(|c| format!("{:?}", c.check.path))
                .map_err(|f| f.class)
        };
        let cloud = path_for("https://api.bitbucket.org", serde_json::json!({})).unwrap();
        assert!(cloud.contains("/2.0/user"), "{cloud}");
        let server = path_for("https://git.example.com", serde_json::json!({})).unwrap();
        assert!(server.contains("/rest/api/1.0/"), "{server}");
        let chosen = path_for(
            "https://git.example.com",
            serde_json::json!({"edition": "Cloud"}),
        )
        .unwrap();
        assert_eq!(chosen, cloud);
        let chosen = path_for(
            "https://api.bitbucket.org",
            serde_json::json!({"edition": "data-center"}),
        )
        .unwrap();
        assert_eq!(chosen, server);
        assert_eq!(
            path_for(
                "https://git.example.com",
                serde_json::json!({"edition": "nope"})
            ),
            Err(FailureClass::Config)
        );
    }

    #[test]
    fn bad_definitions_are_refused_with_their_file() {
        for (text, needle) in [
            ("name = \"x\"\n", "request"),
            (
                "name = \"x\"\nedition_key = \"e\"\n[request]\npath = \"/\"\n",
                "exclude",
            ),
            (
                "name = \"x\"\n[editions.a.request]\npath = \"/\"\n",
                "edition_key",
            ),
            (
                "name = \"x\"\nedition_key = \"e\"\n[editions.a.request]\npath = \"nope\"\n",
                "editions.a.path",
            ),
            ("name = \"X Y\"\n[request]\npath = \"/\"\n", "name"),
            ("name = \"x\"\n[request]\npath = \"nope\"\n", "path"),
            (
                "name = \"x\"\n[request]\npath = \"/{{secret}}\"\n",
                "secret",
            ),
            (
                "name = \"x\"\n[request]\npath = \"/\"\nauth = \"header\"\n",
                "auth_header",
            ),
            (
                "name = \"x\"\n[request]\npath = \"/\"\n[expect]\njson = [{ path = \"$[\" }]\n",
                "JSON path",
            ),
            (
                "name = \"x\"\n[request]\npath = \"/\"\nmethod = \"DELETE\"\n",
                "method",
            ),
            (
                "name = \"x\"\n[request]\npath = \"/\"\nextra = 1\n",
                "extra",
            ),
            (
                "name = \"x\"\n[request]\npath = \"/\"\n[expect]\nstatus = [700]\n",
                "status",
            ),
        ] {
            let error = parse(text, Path::new("p/x.toml")).unwrap_err().to_string();
            assert!(error.contains("p/x.toml"), "{error}");
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }
}
