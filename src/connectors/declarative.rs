//! Declarative providers: a TOML file is a request template plus success conditions, so a new
//! HTTP-based provider needs no code. Files are read from `plugins.directory` at start; the
//! built-in `github`, `gitlab`, `gitea` and `jenkins` providers are such files compiled in
//! (`src/connectors/builtin/`).
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
use super::{Connector, ConnectorError, Session, Verdict};

/// A provider defined by a file.
#[derive(Debug, Clone)]
pub struct DeclarativeProvider {
    pub name: String,
    pub description: Option<String>,
    /// The file it came from (`builtin:<name>` for compiled-in definitions).
    pub source: PathBuf,
    pub connector: CallConnector,
}

#[async_trait]
impl Connector for DeclarativeProvider {
    async fn check_health(&self, session: &Session<'_>) -> Verdict {
        self.connector.run_check(session).await.into()
    }

    async fn test_connection(&self, session: &Session<'_>) -> Verdict {
        self.connector.run_test(session).await.into()
    }
}

const BUILTIN: &[(&str, &str)] = &[
    ("github", include_str!("builtin/github.toml")),
    ("gitlab", include_str!("builtin/gitlab.toml")),
    ("gitea", include_str!("builtin/gitea.toml")),
    ("jenkins", include_str!("builtin/jenkins.toml")),
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
    let check = file.request.call(file.expect, None).map_err(invalid)?;
    let auth_test = file
        .test
        .map(|test| test.call(&file.request))
        .transpose()
        .map_err(invalid)?;
    Ok(DeclarativeProvider {
        name: file.name,
        description: file.description,
        source: source.to_owned(),
        connector: CallConnector {
            check,
            auth_test,
            requires_credentials: file.requires_auth,
        },
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    name: String,
    description: Option<String>,
    #[serde(default)]
    requires_auth: bool,
    request: RequestSpec,
    #[serde(default)]
    expect: ExpectSpec,
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
        let mut expect = Expect::status(status);
        expect.anonymous_status = self.anonymous_status;
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
    fn builtin_definitions_parse() {
        let names: Vec<_> = builtin().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["github", "gitlab", "gitea", "jenkins"]);
    }

    #[test]
    fn shipped_definitions_parse() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/providers");
        let providers = load_directory(&directory).unwrap();
        assert!(providers.len() >= 2);
    }

    #[test]
    fn bad_definitions_are_refused_with_their_file() {
        for (text, needle) in [
            ("name = \"x\"\n", "request"),
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
