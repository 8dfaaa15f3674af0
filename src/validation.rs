//! Validation of user-supplied integration specs and query parameters. Each failure has a
//! stable machine-readable code that the API returns in its problem+json body.
//!
//! Everything here is a pure function of the request and a few daemon-wide settings; the
//! application layer ([`crate::app`]) applies it for the REST API and the NATS control service
//! alike, so both share one set of rules. Error details name
//! the field and the rule, never the offending value: a value refused as a raw secret must not
//! come back in the response.

use std::collections::HashSet;

use catalogd_actors::{Status, Thresholds};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::integration::{HealthCheck, IntegrationSpec, IntegrationType};
use crate::providers::ProviderRegistry;
use crate::spellings;

pub const MAX_NAME_CHARS: usize = 128;
pub const MAX_DESCRIPTION_CHARS: usize = 2048;
pub const MAX_BASE_URL_CHARS: usize = 2048;
pub const MAX_AUTH_REF_SEGMENT_CHARS: usize = 128;
/// Serialized size of `configuration`, in bytes.
pub const MAX_CONFIGURATION_BYTES: usize = 32 * 1024;
/// Nesting of `configuration`; the configuration object itself is level 1.
pub const MAX_CONFIGURATION_DEPTH: usize = 8;
pub const MAX_ENVIRONMENT_CHARS: usize = 64;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_OWNER_CHARS: usize = 128;
pub const MAX_INTERVAL_SECONDS: u32 = 86_400;
pub const MAX_THRESHOLD: u32 = 1000;
/// Dependencies of one integration (DESIGN §10).
pub const MAX_DEPENDENCIES: usize = 16;
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// Longest accepted value of a free-text list filter (`provider`, `environment`, `tag`, `q`).
pub const MAX_FILTER_CHARS: usize = 128;
/// A configuration full of secrets gets this many `raw_secret` errors, not thousands.
const MAX_SECRET_REPORTS: usize = 16;

/// Configuration keys whose normalized form (lowercase, without `_`, `-`, `.`) is or ends
/// with one of these carry credentials, and must hold an AuthRef rather than a literal.
pub const SECRET_KEY_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "clientsecret",
    "credentials",
    "credential",
    "authorization",
    "auth",
    "bearer",
    "sessionkey",
    "cookie",
];

/// The rule a spec field broke; its code is part of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    InvalidName,
    InvalidDescription,
    UnknownType,
    UnknownProvider,
    InvalidBaseUrl,
    BaseUrlRequired,
    InvalidAuthRef,
    RawSecret,
    InvalidConfiguration,
    InvalidEnvironment,
    InvalidTags,
    InvalidOwner,
    InvalidHealthCheck,
    /// `dependsOn` is not a list of at most 16 distinct integration ids.
    InvalidDependsOn,
    /// A `dependsOn` id names no integration of the tenant (checked by the application).
    UnknownDependency,
    /// `dependsOn` would make the integration depend on itself, directly or through others
    /// (checked by the application).
    DependencyCycle,
    /// An update body names another integration than its path (checked by the API).
    IdMismatch,
    /// A pause without a reason, or a reason/comment that is too long or has control
    /// characters.
    InvalidReason,
    InvalidTicket,
    /// A maintenance window's times, rule, duration or time zone (DESIGN §10).
    InvalidSchedule,
    /// A maintenance window's or a status page's selector (for a status page also an id that
    /// is not one of the tenant's integrations).
    InvalidSelector,
    /// An import's item that is not an integration's fields (DESIGN §12).
    InvalidItem,
    /// A status page's title: missing, too long or with control characters.
    InvalidTitle,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::InvalidName => "invalid_name",
            Rule::InvalidDescription => "invalid_description",
            Rule::UnknownType => "unknown_type",
            Rule::UnknownProvider => "unknown_provider",
            Rule::InvalidBaseUrl => "invalid_base_url",
            Rule::BaseUrlRequired => "base_url_required",
            Rule::InvalidAuthRef => "invalid_auth_ref",
            Rule::RawSecret => "raw_secret",
            Rule::InvalidConfiguration => "invalid_configuration",
            Rule::InvalidEnvironment => "invalid_environment",
            Rule::InvalidTags => "invalid_tags",
            Rule::InvalidOwner => "invalid_owner",
            Rule::InvalidHealthCheck => "invalid_health_check",
            Rule::InvalidDependsOn => "invalid_depends_on",
            Rule::UnknownDependency => "unknown_dependency",
            Rule::DependencyCycle => "dependency_cycle",
            Rule::IdMismatch => "id_mismatch",
            Rule::InvalidReason => "invalid_reason",
            Rule::InvalidTicket => "invalid_ticket",
            Rule::InvalidSchedule => "invalid_schedule",
            Rule::InvalidSelector => "invalid_selector",
            Rule::InvalidItem => "invalid_item",
            Rule::InvalidTitle => "invalid_title",
        }
    }
}

/// One broken rule: where (a JSON pointer into the request body, such as `/healthCheck/timeoutSeconds`),
/// which rule, and a sentence for humans that never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub rule: Rule,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: Rule, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            rule,
            detail: detail.into(),
        }
    }
}

/// The user-settable fields of an integration exactly as a client sent them, before
/// validation: `type` is still a string and required fields may be missing, so that one
/// response can list every problem at once.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpecRequest {
    /// Unique per tenant; 1–128 characters, no control characters, no surrounding whitespace.
    #[schema(required = true, value_type = String, example = "harbor-prod")]
    pub name: Option<String>,
    /// Up to 2048 characters.
    pub description: Option<String>,
    /// One of `registry`, `scm`, `ci`, `host`, `feed`, `artifact`.
    #[serde(rename = "type")]
    #[schema(required = true, value_type = IntegrationType)]
    pub kind: Option<String>,
    /// A known provider, such as `harbor`, `github` or `http`.
    #[schema(required = true, value_type = String, example = "harbor")]
    pub provider: Option<String>,
    /// An http(s) URL without credentials or fragment; required unless the provider is
    /// `tcp` or `in-memory`.
    #[schema(example = "https://harbor.example.com")]
    pub base_url: Option<String>,
    /// A reference to a secret, `ref://<scope>/<provider>/<key>`; never the secret itself.
    #[schema(example = "ref://vault/harbor/robot-token")]
    pub auth_ref: Option<String>,
    /// Provider-specific settings: a JSON object of at most 32 KiB and depth 8 that holds no
    /// raw credentials.
    #[schema(value_type = Option<Object>)]
    pub configuration: Option<Value>,
    /// 1–64 characters of `[A-Za-z0-9._-]`.
    pub environment: Option<String>,
    /// At most 32 distinct tags of 1–64 characters of `[A-Za-z0-9._:/=-]`.
    pub tags: Option<Vec<String>>,
    /// 1–128 characters.
    pub owner_id: Option<String>,
    #[serde(default, deserialize_with = "health_check_object")]
    pub health_check: Option<HealthCheck>,
    /// Ids of at most 16 other integrations of the tenant this one depends on (no cycles):
    /// while one of them is degraded or failed, this one's failures count towards nothing.
    #[schema(value_type = Option<Vec<Uuid>>)]
    pub depends_on: Option<Vec<String>>,
}

/// `healthCheck` is a JSON object or `null`: serde's derived struct visitor would also take
/// an array of the fields in order (`[null, null]`), which the document refuses.
fn health_check_object<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<HealthCheck>, D::Error> {
    match Option::<Map<String, Value>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(map) => serde_json::from_value(Value::Object(map))
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// The daemon-wide settings that some rules depend on.
#[derive(Debug, Clone, Copy)]
pub struct SpecRules<'a> {
    pub providers: &'a ProviderRegistry,
    /// `monitor.interval`, the ceiling of `timeoutSeconds` when no interval is set.
    pub default_interval_seconds: u32,
    /// `monitor.*` thresholds, for the ones an integration does not set.
    pub default_thresholds: Thresholds,
}

/// Checks every field of `request` and returns the spec, or every broken rule in field order.
pub fn spec(
    request: SpecRequest,
    rules: &SpecRules<'_>,
) -> Result<IntegrationSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    check_name(request.name.as_deref(), &mut errors);
    if let Some(description) = &request.description {
        check_description(description, &mut errors);
    }
    let kind = check_kind(request.kind.as_deref(), &mut errors);
    let provider = check_provider(request.provider.as_deref(), rules.providers, &mut errors);
    match (&request.base_url, &provider) {
        (Some(base_url), _) => {
            if let Err(detail) = check_base_url(base_url) {
                errors.push(FieldError::new("/baseUrl", Rule::InvalidBaseUrl, detail));
            }
        }
        (None, Some(provider)) if rules.providers.needs_base_url(provider) => {
            errors.push(FieldError::new(
                "/baseUrl",
                Rule::BaseUrlRequired,
                "baseUrl is required for this provider",
            ));
        }
        (None, _) => {}
    }
    if let Some(auth_ref) = &request.auth_ref {
        if !is_auth_ref(auth_ref) {
            errors.push(FieldError::new(
                "/authRef",
                Rule::InvalidAuthRef,
                "authRef must be ref://<scope>/<provider>/<key>, each segment 1-128 characters of [A-Za-z0-9._-]",
            ));
        }
    }
    let configuration = check_configuration(request.configuration, &mut errors);
    if let Some(environment) = &request.environment {
        if !is_environment(environment) {
            errors.push(FieldError::new(
                "/environment",
                Rule::InvalidEnvironment,
                "environment must be 1-64 characters of [A-Za-z0-9._-]",
            ));
        }
    }
    let tags = request.tags.unwrap_or_default();
    check_tags(&tags, &mut errors);
    if let Some(owner) = &request.owner_id {
        let count = owner.chars().count();
        if count == 0 || count > MAX_OWNER_CHARS || owner.chars().any(is_forbidden_control) {
            errors.push(FieldError::new(
                "/ownerId",
                Rule::InvalidOwner,
                "ownerId must be 1-128 characters without control characters",
            ));
        }
    }
    let health_check = request.health_check.unwrap_or_default();
    check_health_check(&health_check, rules, &mut errors);
    let depends_on = check_depends_on(request.depends_on.unwrap_or_default(), &mut errors);

    match (request.name, kind, provider) {
        (Some(name), Some(kind), Some(provider)) if errors.is_empty() => Ok(IntegrationSpec {
            name,
            description: request.description,
            kind,
            provider,
            base_url: request.base_url,
            auth_ref: request.auth_ref,
            configuration,
            environment: request.environment,
            tags,
            owner_id: request.owner_id,
            health_check,
            depends_on,
        }),
        _ => Err(errors),
    }
}

/// Whether `s` is a well-formed AuthRef: `ref://<scope>/<provider>/<key>`, exactly three
/// segments of 1–128 characters of `[A-Za-z0-9._-]`, none of them `.` or `..`.
pub fn is_auth_ref(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("ref://") else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    segments.len() == 3
        && segments.iter().all(|segment| {
            is_token(segment, MAX_AUTH_REF_SEGMENT_CHARS, is_environment_char)
                && *segment != "."
                && *segment != ".."
        })
}

/// C0, DEL, C1 and the Unicode line and paragraph separators, which break log lines and
/// JSON-in-JavaScript alike.
fn is_forbidden_control(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn is_environment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn is_tag_char(c: char) -> bool {
    is_environment_char(c) || matches!(c, ':' | '/' | '=')
}

/// A non-empty ASCII token of at most `max` characters drawn from `allowed`.
/// Whether `s` is a well-formed environment name: 1-64 characters of `[A-Za-z0-9._-]`.
pub(crate) fn is_environment(s: &str) -> bool {
    is_token(s, MAX_ENVIRONMENT_CHARS, is_environment_char)
}

fn is_token(s: &str, max: usize, allowed: fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(allowed)
}

pub(crate) fn check_name(name: Option<&str>, errors: &mut Vec<FieldError>) {
    let detail = match name {
        None => "name is required",
        Some(name) => {
            let count = name.chars().count();
            if count == 0 || count > MAX_NAME_CHARS {
                "name must be 1-128 characters"
            } else if name.chars().any(is_forbidden_control) {
                "name must not contain control characters"
            } else if name.trim() != name {
                "name must not start or end with whitespace"
            } else {
                return;
            }
        }
    };
    errors.push(FieldError::new("/name", Rule::InvalidName, detail));
}

pub(crate) fn check_description(description: &str, errors: &mut Vec<FieldError>) {
    let (rule, detail) = if description.chars().count() > MAX_DESCRIPTION_CHARS {
        (
            Rule::InvalidDescription,
            "description must be at most 2048 characters",
        )
    } else if description
        .chars()
        .any(|c| is_forbidden_control(c) && c != '\n' && c != '\t')
    {
        (
            Rule::InvalidDescription,
            "description must not contain control characters other than newline and tab",
        )
    } else if contains_credentials(description) {
        (
            Rule::RawSecret,
            "description contains a credential (a private key or a URL with userinfo)",
        )
    } else {
        return;
    };
    errors.push(FieldError::new("/description", rule, detail));
}

/// The type in any of the seed's spellings ([`crate::spellings`]), as its canonical value.
fn check_kind(kind: Option<&str>, errors: &mut Vec<FieldError>) -> Option<IntegrationType> {
    let parsed = kind.and_then(spellings::integration_type);
    if parsed.is_none() {
        let detail = match kind {
            None => "type is required",
            Some(_) => "type must be one of registry, scm, ci, host, feed, artifact",
        };
        errors.push(FieldError::new("/type", Rule::UnknownType, detail));
    }
    parsed
}

/// Returns the provider's canonical name when it is known in any of the seed's spellings.
fn check_provider(
    provider: Option<&str>,
    providers: &ProviderRegistry,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let detail = match provider {
        None => "provider is required".to_owned(),
        Some(p) => match providers.canonical(p) {
            Some(name) => return Some(name.to_owned()),
            None => format!(
                "provider must be one of {}",
                providers.names().collect::<Vec<_>>().join(", ")
            ),
        },
    };
    errors.push(FieldError::new("/provider", Rule::UnknownProvider, detail));
    None
}

/// A host name as written: labels of ASCII letters, digits and inner hyphens, or of
/// characters beyond ASCII (an internationalized name, which the URL parser maps to its
/// ASCII form), the last label not starting with a digit; one trailing dot (a fully qualified
/// name) is allowed.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let part = |c: char| c.is_ascii_alphanumeric() || !c.is_ascii();
    let labels: Vec<&str> = host.split('.').collect();
    labels.iter().all(|label| {
        !label.is_empty()
            && label.chars().all(|c| part(c) || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    }) && labels
        .last()
        .and_then(|last| last.chars().next())
        .is_some_and(|c| c.is_ascii_alphabetic() || !c.is_ascii())
}

fn check_base_url(raw: &str) -> Result<(), &'static str> {
    if raw.chars().count() > MAX_BASE_URL_CHARS {
        return Err("baseUrl must be at most 2048 characters");
    }
    // The URL parser silently drops tabs and newlines and trims spaces; refuse them so that
    // what is stored is exactly what is checked.
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("baseUrl must not contain whitespace or control characters");
    }
    let url = url::Url::parse(raw).map_err(|_| "baseUrl must be an absolute http or https URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("baseUrl must be an absolute http or https URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("baseUrl must have a host");
    }
    // An IP address is written the usual way: IPv4 as a dotted quad (not `2130706433`,
    // `0x7f.1` or `0177.0.0.1`, which the URL parser also reads) and IPv6 in hex groups (no
    // embedded dotted IPv4). Both are what the OpenAPI document's pattern states.
    let authority = &raw[raw.find("://").map_or(0, |at| at + 3)..];
    match url.host() {
        Some(url::Host::Ipv4(address)) => {
            let written = authority
                .split([':', '/', '?', '\\'])
                .next()
                .unwrap_or_default();
            if written != address.to_string() {
                return Err("baseUrl must write an IPv4 address as a dotted quad");
            }
        }
        Some(url::Host::Ipv6(_)) => {
            let written = authority.split([']']).next().unwrap_or_default();
            if written.contains('.') {
                return Err("baseUrl must write an IPv6 address in hex groups");
            }
        }
        _ => {}
    }
    if !url.username().is_empty() || url.password().is_some() || has_userinfo(raw) {
        return Err("baseUrl must not contain credentials; use authRef");
    }
    // A name is written as DNS has it: the URL parser also takes `*`, `_`, `$` and other
    // ASCII punctuation no resolver finds. (The OpenAPI document's pattern states ASCII
    // names only; internationalized names and a trailing dot are accepted here beyond it.)
    if let Some(url::Host::Domain(_)) = url.host() {
        let written = authority
            .split([':', '/', '?', '\\', '#'])
            .next()
            .unwrap_or_default();
        if !is_dns_name(written) {
            return Err(
                "baseUrl's host must be a DNS name (letters, digits, hyphens) or an IP address",
            );
        }
    }
    if url.fragment().is_some() {
        return Err("baseUrl must not have a fragment");
    }
    Ok(())
}

/// Returns the configuration object, `{}` when absent.
fn check_configuration(value: Option<Value>, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    let map = match value {
        None | Some(Value::Null) => return Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            errors.push(FieldError::new(
                "/configuration",
                Rule::InvalidConfiguration,
                "configuration must be a JSON object",
            ));
            return Map::new();
        }
    };
    let value = Value::Object(map);
    let invalid = if value.to_string().len() > MAX_CONFIGURATION_BYTES {
        Some("configuration must be at most 32 KiB")
    } else if depth(&value) > MAX_CONFIGURATION_DEPTH {
        Some("configuration must be nested at most 8 levels deep")
    } else if contains_nul(&value) {
        Some("configuration must not contain NUL characters")
    } else {
        None
    };
    if let Some(detail) = invalid {
        errors.push(FieldError::new(
            "/configuration",
            Rule::InvalidConfiguration,
            detail,
        ));
    }
    let mut secrets = Vec::new();
    find_secrets(&value, &mut "/configuration".to_owned(), &mut secrets);
    errors.extend(secrets.into_iter().take(MAX_SECRET_REPORTS).map(|field| {
        let detail = format!("{field} holds a raw credential; store it in a secret store and reference it with an AuthRef");
        FieldError::new(field, Rule::RawSecret, detail)
    }));
    match value {
        Value::Object(map) => map,
        _ => unreachable!("built from an object above"),
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// PostgreSQL JSONB cannot store `\u0000`, in keys or values.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Array(items) => items.iter().any(contains_nul),
        _ => false,
    }
}

/// Collects the JSON pointers of every raw credential under `value`.
fn find_secrets(value: &Value, pointer: &mut String, found: &mut Vec<String>) {
    let base = pointer.len();
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                if is_secret_key(key) && carries_literal(child) {
                    found.push(pointer.clone());
                } else {
                    find_secrets(child, pointer, found);
                }
                pointer.truncate(base);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointer.push('/');
                pointer.push_str(&index.to_string());
                find_secrets(child, pointer, found);
                pointer.truncate(base);
            }
        }
        Value::String(s) if looks_like_secret(s) => found.push(pointer.clone()),
        _ => {}
    }
}

fn is_secret_key(key: &str) -> bool {
    let normalized: String = key
        .to_lowercase()
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .collect();
    SECRET_KEY_SUFFIXES
        .iter()
        .any(|suffix| normalized.ends_with(suffix))
}

/// Whether the value under a credential-named key is a literal credential: a non-empty string
/// that is not an AuthRef, a number, or an array holding one.
fn carries_literal(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.is_empty() && !is_auth_ref(s),
        Value::Number(_) => true,
        Value::Array(items) => items.iter().any(carries_literal),
        _ => false,
    }
}

/// A string that is a credential whatever key it sits under.
fn looks_like_secret(s: &str) -> bool {
    contains_credentials(s) || is_authorization_literal(s)
}

/// A PEM private key or an http(s) URL with userinfo anywhere in `s`.
fn contains_credentials(s: &str) -> bool {
    if s.contains("-----BEGIN") && s.contains("PRIVATE KEY") {
        return true;
    }
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `s` too.
    let lower = s.to_ascii_lowercase();
    ["http://", "https://"]
        .iter()
        .flat_map(|scheme| lower.match_indices(scheme))
        .any(|(at, _)| has_userinfo(&s[at..]))
}

/// Whether the URL at the start of `s` has an `@` in its authority.
fn has_userinfo(s: &str) -> bool {
    let Some((_, rest)) = s.split_once("://") else {
        return false;
    };
    rest.split(|c: char| {
        matches!(c, '/' | '?' | '#' | '\\' | '"' | '\'' | '<' | '>') || c.is_whitespace()
    })
    .next()
    .is_some_and(|authority| authority.contains('@'))
}

/// An `Authorization` header value: `Bearer` or `Basic`, a space, and a token68.
fn is_authorization_literal(s: &str) -> bool {
    let s = s.trim();
    let Some((scheme, credentials)) = s.split_once(' ') else {
        return false;
    };
    let token = credentials.trim().trim_end_matches('=');
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("basic"))
        && !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/'))
}

pub(crate) fn check_tags(tags: &[String], errors: &mut Vec<FieldError>) {
    if tags.len() > MAX_TAGS {
        errors.push(FieldError::new(
            "/tags",
            Rule::InvalidTags,
            "at most 32 tags",
        ));
        return;
    }
    let mut seen = HashSet::new();
    for (index, tag) in tags.iter().enumerate() {
        let detail = if !is_token(tag, MAX_TAG_CHARS, is_tag_char) {
            "each tag must be 1-64 characters of [A-Za-z0-9._:/=-]"
        } else if !seen.insert(tag.as_str()) {
            "duplicate tag"
        } else {
            continue;
        };
        errors.push(FieldError::new(
            format!("/tags/{index}"),
            Rule::InvalidTags,
            detail,
        ));
    }
}

/// At most 16 distinct integration ids. Whether they exist in the tenant and make no cycle is
/// the application's check (it needs the store).
fn check_depends_on(raw: Vec<String>, errors: &mut Vec<FieldError>) -> Vec<Uuid> {
    if raw.len() > MAX_DEPENDENCIES {
        errors.push(FieldError::new(
            "/dependsOn",
            Rule::InvalidDependsOn,
            "at most 16 dependencies",
        ));
        return Vec::new();
    }
    let mut ids = Vec::with_capacity(raw.len());
    for (index, text) in raw.iter().enumerate() {
        let detail = match Uuid::try_parse(text) {
            Ok(id) if ids.contains(&id) => "duplicate dependency",
            Ok(id) => {
                ids.push(id);
                continue;
            }
            Err(_) => "each dependency must be an integration id (a UUID)",
        };
        errors.push(FieldError::new(
            format!("/dependsOn/{index}"),
            Rule::InvalidDependsOn,
            detail,
        ));
    }
    ids
}

fn check_health_check(hc: &HealthCheck, rules: &SpecRules<'_>, errors: &mut Vec<FieldError>) {
    let mut fail = |field: &str, detail: String| {
        errors.push(FieldError::new(
            format!("/healthCheck/{field}"),
            Rule::InvalidHealthCheck,
            detail,
        ));
    };
    let in_range = |value: Option<u32>, max: u32| value.is_none_or(|v| (1..=max).contains(&v));
    if !in_range(hc.interval_seconds, MAX_INTERVAL_SECONDS) {
        fail(
            "intervalSeconds",
            format!("intervalSeconds must be 1-{MAX_INTERVAL_SECONDS}"),
        );
    }
    let interval = hc
        .interval_seconds
        .unwrap_or(rules.default_interval_seconds);
    if !in_range(hc.timeout_seconds, interval) {
        fail(
            "timeoutSeconds",
            format!("timeoutSeconds must be at least 1 and at most the interval ({interval})"),
        );
    }
    for (field, value) in [
        ("degradedAfter", hc.degraded_after),
        ("recoverAfter", hc.recover_after),
    ] {
        if !in_range(value, MAX_THRESHOLD) {
            fail(field, format!("{field} must be 1-{MAX_THRESHOLD}"));
        }
    }
    // Compare the effective thresholds whenever the integration sets either, so that a
    // lone `degradedAfter` above the default `failedAfter` is caught too.
    if hc.failed_after.is_some() || hc.degraded_after.is_some() {
        let effective = hc.thresholds(rules.default_thresholds);
        if effective.failed_after < effective.degraded_after.max(1)
            || effective.failed_after > MAX_THRESHOLD
        {
            fail(
                "failedAfter",
                format!(
                    "failedAfter must be at least degradedAfter ({}) and at most {MAX_THRESHOLD}",
                    effective.degraded_after
                ),
            );
        }
    }
}

/// The kind of a refused query parameter; its code is part of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryRule {
    InvalidLimit,
    InvalidFilter,
    InvalidQuery,
}

impl QueryRule {
    pub fn code(self) -> &'static str {
        match self {
            QueryRule::InvalidLimit => "invalid_limit",
            QueryRule::InvalidFilter => "invalid_filter",
            QueryRule::InvalidQuery => "invalid_query",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub rule: QueryRule,
    pub detail: String,
}

impl QueryError {
    fn new(rule: QueryRule, detail: impl Into<String>) -> Self {
        QueryError {
            rule,
            detail: detail.into(),
        }
    }
}

/// A page size: an integer in 1..=500, 50 when absent.
pub fn limit(raw: Option<&str>) -> Result<u32, QueryError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                QueryError::new(
                    QueryRule::InvalidLimit,
                    "limit must be an integer from 1 to 500",
                )
            }),
    }
}

/// The `type` list filter, in any of the seed's spellings.
pub fn kind_filter(raw: Option<&str>) -> Result<Option<IntegrationType>, QueryError> {
    raw.map(|raw| {
        spellings::integration_type(raw).ok_or_else(|| {
            QueryError::new(
                QueryRule::InvalidFilter,
                "type must be one of registry, scm, ci, host, feed, artifact",
            )
        })
    })
    .transpose()
}

/// The `status` list filter, in any of the seed's spellings.
pub fn status_filter(raw: Option<&str>) -> Result<Option<Status>, QueryError> {
    raw.map(|raw| {
        spellings::status(raw).ok_or_else(|| {
            let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            QueryError::new(
                QueryRule::InvalidFilter,
                format!("status must be one of {}", names.join(", ")),
            )
        })
    })
    .transpose()
}

/// The `provider` list filter: a known provider in any of the seed's spellings becomes its
/// canonical name; any other text is kept (it matches no integration).
pub fn provider_filter(
    raw: Option<String>,
    providers: &ProviderRegistry,
) -> Result<Option<String>, QueryError> {
    Ok(
        text_filter("provider", raw)?.map(|raw| match providers.canonical(&raw) {
            Some(name) => name.to_owned(),
            None => raw,
        }),
    )
}

/// A free-text filter (`provider`, `environment`, `tag`, `q`): bounded in length, and free of
/// control characters, which no stored value holds and PostgreSQL cannot even compare (NUL).
pub fn text_filter(parameter: &str, raw: Option<String>) -> Result<Option<String>, QueryError> {
    match raw {
        Some(value)
            if value.chars().count() > MAX_FILTER_CHARS
                || value.chars().any(is_forbidden_control) =>
        {
            Err(QueryError::new(
                QueryRule::InvalidQuery,
                format!(
                    "{parameter} must be at most {MAX_FILTER_CHARS} characters, without control characters"
                ),
            ))
        }
        other => Ok(other),
    }
}

/// Whether `name` could be an integration's name; a list cursor holding anything else was
/// not issued by the API.
pub fn is_possible_name(name: &str) -> bool {
    let mut errors = Vec::new();
    check_name(Some(name), &mut errors);
    errors.is_empty()
}

/// Longest pause reason or activation comment.
pub const MAX_REASON_CHARS: usize = 1024;
/// Longest change ticket reference.
pub const MAX_TICKET_CHARS: usize = 128;

/// A pause's reason (required) and ticket (optional), or an activation's optional comment:
/// free text for the audit trail, bounded, without control characters other than newlines
/// and tabs.
pub fn reason(
    field: &str,
    value: Option<String>,
    required: bool,
) -> Result<Option<String>, FieldError> {
    let value = value.filter(|v| !v.trim().is_empty());
    match value {
        None if required => Err(FieldError::new(
            format!("/{field}"),
            Rule::InvalidReason,
            format!("{field} is required"),
        )),
        None => Ok(None),
        Some(v)
            if v.chars().count() > MAX_REASON_CHARS
                || v.chars()
                    .any(|c| is_forbidden_control(c) && c != '\n' && c != '\t') =>
        {
            Err(FieldError::new(
                format!("/{field}"),
                Rule::InvalidReason,
                format!("{field} must be at most 1024 characters without control characters"),
            ))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// An optional change-ticket reference: 1–128 characters without control characters.
pub fn ticket(value: Option<String>) -> Result<Option<String>, FieldError> {
    match value {
        None => Ok(None),
        Some(v)
            if v.is_empty()
                || v.chars().count() > MAX_TICKET_CHARS
                || v.chars().any(is_forbidden_control) =>
        {
            Err(FieldError::new(
                "/ticket",
                Rule::InvalidTicket,
                "ticket must be 1-128 characters without control characters",
            ))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// The most integration ids and tags a status page's selector may list.
pub const MAX_SELECTOR_IDS: usize = 1000;

/// A status page configuration as a request states it (`PUT /api/v1/status-page`); wrong
/// types and unknown fields are refused by the decoder (400), values by
/// [`status_page_config`] (422).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusPageRequest {
    /// Whether `/status/{tenant}` is served at all (404 otherwise).
    pub enabled: bool,
    /// Whether the page is served without a token; otherwise a read token of the tenant is
    /// needed (`Authorization` or `?token=`). Default false.
    #[serde(default)]
    pub public: bool,
    /// 1-128 characters, no control characters.
    #[schema(min_length = 1, max_length = 128)]
    pub title: String,
    /// At most 2048 characters.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub description: Option<String>,
    #[serde(default)]
    pub selector: SelectorRequest,
}

/// Which integrations the page shows: those matching any listed id or tag (every one of the
/// tenant's when both lists are empty), and the environment when one is given.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectorRequest {
    /// Integration ids of the tenant, at most 1000.
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub integration_ids: Vec<String>,
    /// At most 32 tags.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

/// Checks a status page configuration's values, collecting every broken rule. Whether the
/// listed ids name integrations of the tenant is the application's to check (it reads the
/// store).
pub fn status_page_config(
    request: StatusPageRequest,
) -> Result<crate::store::status_pages::StatusPageConfig, Vec<FieldError>> {
    let mut errors = Vec::new();
    let title = request.title.trim();
    if title.is_empty()
        || title.chars().count() > MAX_NAME_CHARS
        || title.chars().any(is_forbidden_control)
    {
        errors.push(FieldError::new(
            "/title",
            Rule::InvalidTitle,
            "title must be 1-128 characters without control characters",
        ));
    }
    if let Some(description) = &request.description {
        check_description(description, &mut errors);
    }
    let selector = request.selector;
    let mut ids = Vec::new();
    if selector.integration_ids.len() > MAX_SELECTOR_IDS {
        errors.push(FieldError::new(
            "/selector/integrationIds",
            Rule::InvalidSelector,
            "at most 1000 integration ids",
        ));
    } else {
        for (index, raw) in selector.integration_ids.iter().enumerate() {
            match uuid::Uuid::try_parse(raw) {
                Ok(id) if !ids.contains(&id) => ids.push(id),
                Ok(_) => errors.push(FieldError::new(
                    format!("/selector/integrationIds/{index}"),
                    Rule::InvalidSelector,
                    "duplicate integration id",
                )),
                Err(_) => errors.push(FieldError::new(
                    format!("/selector/integrationIds/{index}"),
                    Rule::InvalidSelector,
                    "each integration id must be a UUID",
                )),
            }
        }
    }
    if selector.tags.len() > MAX_TAGS {
        errors.push(FieldError::new(
            "/selector/tags",
            Rule::InvalidSelector,
            "at most 32 tags",
        ));
    } else {
        for (index, tag) in selector.tags.iter().enumerate() {
            if !is_token(tag, MAX_TAG_CHARS, is_tag_char) {
                errors.push(FieldError::new(
                    format!("/selector/tags/{index}"),
                    Rule::InvalidSelector,
                    "each tag must be 1-64 characters of [A-Za-z0-9._:/=-]",
                ));
            }
        }
    }
    if let Some(environment) = &selector.environment {
        if !is_token(environment, MAX_ENVIRONMENT_CHARS, is_environment_char) {
            errors.push(FieldError::new(
                "/selector/environment",
                Rule::InvalidSelector,
                "environment must be 1-64 characters of [A-Za-z0-9._-]",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut tags = selector.tags;
    tags.sort();
    tags.dedup();
    Ok(crate::store::status_pages::StatusPageConfig {
        enabled: request.enabled,
        public: request.public,
        title: title.to_owned(),
        description: request.description.filter(|d| !d.trim().is_empty()),
        selector: crate::store::status_pages::Selector {
            integration_ids: ids,
            tags,
            environment: selector.environment,
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(providers: &ProviderRegistry) -> SpecRules<'_> {
        SpecRules {
            providers,
            default_interval_seconds: 60,
            default_thresholds: Thresholds::default(),
        }
    }

    fn minimal() -> Value {
        json!({"name": "harbor-prod", "type": "registry", "provider": "harbor", "baseUrl": "https://harbor.example.com"})
    }

    /// Validates `minimal()` with `patch` merged in and returns the codes and fields of the
    /// errors (empty when valid).
    fn check(patch: Value) -> Vec<(&'static str, String)> {
        let mut body = minimal();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let request: SpecRequest = serde_json::from_value(body).expect("well-formed request");
        let providers = ProviderRegistry::builtin();
        match spec(request, &rules(&providers)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| (e.rule.code(), e.field))
                .collect(),
        }
    }

    /// Runs a table of `(patch, expected code or None)`; every error must carry the code.
    fn table(cases: &[(Value, Option<&str>)]) {
        for (patch, expected) in cases {
            let errors = check(patch.clone());
            match expected {
                None => assert!(errors.is_empty(), "{patch} should pass, got {errors:?}"),
                Some(code) => assert!(
                    !errors.is_empty() && errors.iter().all(|(c, _)| c == code),
                    "{patch} should fail with {code}, got {errors:?}"
                ),
            }
        }
    }

    #[test]
    fn minimal_spec_is_valid_and_defaults_apply() {
        let request: SpecRequest = serde_json::from_value(minimal()).unwrap();
        let providers = ProviderRegistry::builtin();
        let spec = spec(request, &rules(&providers)).unwrap();
        assert_eq!(spec.kind, IntegrationType::Registry);
        assert!(spec.configuration.is_empty() && spec.tags.is_empty());
        assert_eq!(spec.health_check, HealthCheck::default());
    }

    #[test]
    fn name() {
        let long = "n".repeat(128);
        let too_long = "n".repeat(129);
        let unicode_128 = "é".repeat(128);
        table(&[
            (json!({"name": "a"}), None),
            (json!({"name": long}), None),
            (json!({"name": unicode_128}), None),
            (json!({"name": "Harbor (prod) ✓"}), None),
            (json!({"name": null}), Some("invalid_name")),
            (json!({"name": ""}), Some("invalid_name")),
            (json!({"name": too_long}), Some("invalid_name")),
            (json!({"name": " lead"}), Some("invalid_name")),
            (json!({"name": "trail\u{a0}"}), Some("invalid_name")),
            (json!({"name": "a\u{0}b"}), Some("invalid_name")),
            (json!({"name": "a\nb"}), Some("invalid_name")),
            (json!({"name": "a\u{7f}b"}), Some("invalid_name")),
            (json!({"name": "a\u{85}b"}), Some("invalid_name")),
            (json!({"name": "a\u{2028}b"}), Some("invalid_name")),
            (json!({"name": "a\u{2029}b"}), Some("invalid_name")),
        ]);
    }

    #[test]
    fn description() {
        table(&[
            (json!({"description": ""}), None),
            (json!({"description": "line one\n\tline two"}), None),
            (json!({"description": "x".repeat(2048)}), None),
            (
                json!({"description": "x".repeat(2049)}),
                Some("invalid_description"),
            ),
            (
                json!({"description": "bell\u{7}"}),
                Some("invalid_description"),
            ),
            (json!({"description": "cr\r"}), Some("invalid_description")),
            (
                json!({"description": "sep\u{2028}"}),
                Some("invalid_description"),
            ),
            (
                json!({"description": "see https://bob:hunter2@example.com/x"}),
                Some("raw_secret"),
            ),
            (
                json!({"description": "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----"}),
                Some("raw_secret"),
            ),
        ]);
    }

    #[test]
    fn kind_and_provider() {
        let mut cases: Vec<(Value, Option<&str>)> = IntegrationType::ALL
            .iter()
            .map(|t| (json!({"type": t.as_str()}), None))
            .collect();
        cases.extend([
            (json!({"type": "Registry"}), None),
            (json!({"type": "SCM"}), None),
            (json!({"type": "Regist ry"}), Some("unknown_type")),
            (json!({"type": "database"}), Some("unknown_type")),
            (json!({"type": null}), Some("unknown_type")),
            (json!({"provider": "github"}), None),
            (json!({"provider": "nope"}), Some("unknown_provider")),
            (json!({"provider": null}), Some("unknown_provider")),
        ]);
        table(&cases);
    }

    #[test]
    fn base_url() {
        table(&[
            (json!({"baseUrl": "http://harbor.local:8080/api?x=1"}), None),
            (json!({"baseUrl": "https://[::1]/"}), None),
            (json!({"baseUrl": null}), Some("base_url_required")),
            (json!({"baseUrl": null, "provider": "tcp"}), None),
            (json!({"baseUrl": null, "provider": "in-memory"}), None),
            (json!({"baseUrl": ""}), Some("invalid_base_url")),
            (
                json!({"baseUrl": "harbor.example.com"}),
                Some("invalid_base_url"),
            ),
            (
                json!({"baseUrl": "ftp://harbor.example.com"}),
                Some("invalid_base_url"),
            ),
            (
                json!({"baseUrl": "file:///etc/passwd"}),
                Some("invalid_base_url"),
            ),
            (
                json!({"baseUrl": "https://user:pw@harbor.example.com"}),
                Some("invalid_base_url"),
            ),
            (
                json!({"baseUrl": "https://user@harbor.example.com"}),
                Some("invalid_base_url"),
            ),
            (
                json!({"baseUrl": "https://harbor.example.com/#frag"}),
                Some("invalid_base_url"),
            ),
            (
                json!({"baseUrl": " https://harbor.example.com"}),
                Some("invalid_base_url"),
            ),
            (
                json!({"baseUrl": "https://harbor.exa\tmple.com"}),
                Some("invalid_base_url"),
            ),
            (
                json!({"baseUrl": format!("https://h.example.com/{}", "a".repeat(2048))}),
                Some("invalid_base_url"),
            ),
        ]);
        // An unknown provider is reported once, not also as a missing baseUrl.
        assert_eq!(
            check(json!({"provider": "nope", "baseUrl": null})),
            vec![("unknown_provider", "/provider".to_owned())]
        );
    }

    #[test]
    fn auth_ref() {
        let segment_128 = "k".repeat(128);
        table(&[
            (json!({"authRef": "ref://vault/harbor/robot-token"}), None),
            (json!({"authRef": "ref://env/gh/GH_TOKEN.v2_x"}), None),
            (json!({"authRef": format!("ref://a/b/{segment_128}")}), None),
            (
                json!({"authRef": format!("ref://a/b/{segment_128}k")}),
                Some("invalid_auth_ref"),
            ),
            (
                json!({"authRef": "ref://vault/harbor"}),
                Some("invalid_auth_ref"),
            ),
            (
                json!({"authRef": "ref://vault/harbor/a/b"}),
                Some("invalid_auth_ref"),
            ),
            (
                json!({"authRef": "ref://vault//key"}),
                Some("invalid_auth_ref"),
            ),
            (
                json!({"authRef": "ref://vault/../key"}),
                Some("invalid_auth_ref"),
            ),
            (
                json!({"authRef": "ref://vault/harbor/key with space"}),
                Some("invalid_auth_ref"),
            ),
            (
                json!({"authRef": "vault://a/b/c"}),
                Some("invalid_auth_ref"),
            ),
            (json!({"authRef": "hunter2"}), Some("invalid_auth_ref")),
            (json!({"authRef": ""}), Some("invalid_auth_ref")),
        ]);
    }

    #[test]
    fn configuration_shape() {
        let mut deep = json!(1);
        for _ in 0..8 {
            deep = json!({ "k": deep });
        }
        let too_deep = json!({ "k": deep.clone() });
        table(&[
            (json!({"configuration": {}}), None),
            (
                json!({"configuration": {"project": "library", "verifyTls": true, "retries": 3}}),
                None,
            ),
            (deep_config(deep), None),
            (deep_config(too_deep), Some("invalid_configuration")),
            (
                json!({"configuration": [1, 2]}),
                Some("invalid_configuration"),
            ),
            (json!({"configuration": "x"}), Some("invalid_configuration")),
            (
                json!({"configuration": {"a": "nul\u{0}"}}),
                Some("invalid_configuration"),
            ),
            (
                json!({"configuration": {"a\u{0}": 1}}),
                Some("invalid_configuration"),
            ),
            (
                json!({"configuration": {"blob": "x".repeat(MAX_CONFIGURATION_BYTES)}}),
                Some("invalid_configuration"),
            ),
        ]);
    }

    fn deep_config(inner: Value) -> Value {
        json!({ "configuration": inner })
    }

    #[test]
    fn raw_secrets_in_configuration() {
        table(&[
            (
                json!({"configuration": {"password": "hunter2"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"db": {"Admin_Password": "x"}}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"api-key": "x"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"client.secret": "x"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"privateKey": "x"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"githubToken": "ghp_x"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"pin": {"pwd": 1234}}}),
                Some("raw_secret"),
            ),
            (json!({"configuration": {"oauth": "x"}}), Some("raw_secret")),
            (
                json!({"configuration": {"Cookie": "session=1"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"tokens": ["ok"], "credentials": ["x"]}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"list": [{"secret": "x"}]}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"header": "Bearer eyJhbGciOi.x.y"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"header": "Basic dXNlcjpwYXNz"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"mirror": "https://u:p@mirror.example.com"}}),
                Some("raw_secret"),
            ),
            (
                json!({"configuration": {"key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA"}}),
                Some("raw_secret"),
            ),
            // References, empty values and non-literal values are fine.
            (
                json!({"configuration": {"password": "ref://vault/db/password"}}),
                None,
            ),
            (json!({"configuration": {"token": ""}}), None),
            (
                json!({"configuration": {"basicAuth": true, "auth": null}}),
                None,
            ),
            (
                json!({"configuration": {"tokenUrl": "https://sso.example.com/token"}}),
                None,
            ),
            (
                json!({"configuration": {"author": "alice", "authRef": "ref://a/b/c"}}),
                None,
            ),
            (
                json!({"configuration": {"note": "Basic auth is configured elsewhere"}}),
                None,
            ),
            (
                json!({"configuration": {"mirror": "https://mirror.example.com/@scope/pkg"}}),
                None,
            ),
            (
                json!({"configuration": {"cert": "-----BEGIN CERTIFICATE-----"}}),
                None,
            ),
        ]);
    }

    #[test]
    fn raw_secret_errors_name_the_path_never_the_value() {
        let request: SpecRequest = serde_json::from_value(json!({
            "name": "x", "type": "ci", "provider": "jenkins", "baseUrl": "https://ci.example.com",
            "configuration": {"nested": {"a/b": {"password": "hunter2"}}, "list": ["Bearer abcdef"]}
        }))
        .unwrap();
        let providers = ProviderRegistry::builtin();
        let errors = spec(request, &rules(&providers)).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "/configuration/list/0",
                "/configuration/nested/a~1b/password"
            ]
        );
        for e in &errors {
            assert!(!e.detail.contains("hunter2") && !e.detail.contains("abcdef"));
        }
    }

    #[test]
    fn environment_tags_owner() {
        let tags_32: Vec<String> = (0..32).map(|i| format!("t{i}")).collect();
        let tags_33: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        table(&[
            (json!({"environment": "prod-eu.1_a"}), None),
            (json!({"environment": "e".repeat(64)}), None),
            (
                json!({"environment": "e".repeat(65)}),
                Some("invalid_environment"),
            ),
            (json!({"environment": ""}), Some("invalid_environment")),
            (
                json!({"environment": "prod eu"}),
                Some("invalid_environment"),
            ),
            (json!({"environment": "prød"}), Some("invalid_environment")),
            (
                json!({"tags": ["team:core", "tier=1", "a/b", "x.y_z-1"]}),
                None,
            ),
            (json!({"tags": tags_32}), None),
            (json!({"tags": tags_33}), Some("invalid_tags")),
            (json!({"tags": [""]}), Some("invalid_tags")),
            (json!({"tags": ["t".repeat(65)]}), Some("invalid_tags")),
            (json!({"tags": ["has space"]}), Some("invalid_tags")),
            (json!({"tags": ["dup", "dup"]}), Some("invalid_tags")),
            (json!({"ownerId": "team-platform@example.com"}), None),
            (json!({"ownerId": "o".repeat(128)}), None),
            (json!({"ownerId": "o".repeat(129)}), Some("invalid_owner")),
            (json!({"ownerId": ""}), Some("invalid_owner")),
            (json!({"ownerId": "a\u{1b}[31m"}), Some("invalid_owner")),
        ]);
        assert_eq!(
            check(json!({"tags": ["a", "b", "a"]})),
            vec![("invalid_tags", "/tags/2".to_owned())]
        );
    }

    #[test]
    fn health_check() {
        table(&[
            (json!({"healthCheck": {}}), None),
            (
                json!({"healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1}}),
                None,
            ),
            (
                json!({"healthCheck": {"intervalSeconds": 86400, "timeoutSeconds": 86400}}),
                None,
            ),
            (json!({"healthCheck": {"timeoutSeconds": 60}}), None),
            (
                json!({"healthCheck": {"degradedAfter": 5, "failedAfter": 5, "recoverAfter": 1000}}),
                None,
            ),
            (json!({"healthCheck": {"failedAfter": 3}}), None),
            (
                json!({"healthCheck": {"degradedAfter": 1000, "failedAfter": 1000}}),
                None,
            ),
            (
                json!({"healthCheck": {"intervalSeconds": 0}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"intervalSeconds": 86401}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"timeoutSeconds": 0}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"timeoutSeconds": 61}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"intervalSeconds": 5, "timeoutSeconds": 6}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"degradedAfter": 0}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"degradedAfter": 1001, "failedAfter": 1001}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"failedAfter": 2}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"degradedAfter": 4, "failedAfter": 3}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"degradedAfter": 6}}),
                Some("invalid_health_check"),
            ),
            (
                json!({"healthCheck": {"recoverAfter": 0}}),
                Some("invalid_health_check"),
            ),
        ]);
        assert_eq!(
            check(json!({"healthCheck": {"intervalSeconds": 10, "timeoutSeconds": 11}})),
            vec![(
                "invalid_health_check",
                "/healthCheck/timeoutSeconds".to_owned()
            )]
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_the_request_type() {
        assert!(serde_json::from_value::<SpecRequest>(json!({"name": "x", "bogus": 1})).is_err());
        assert!(serde_json::from_value::<SpecRequest>(
            json!({"healthCheck": {"intervalSeconds": 1, "bogus": 1}})
        )
        .is_err());
    }

    #[test]
    fn every_error_is_listed_in_field_order() {
        let codes: Vec<&str> = check(json!({
            "name": "", "type": "nope", "provider": "nope", "authRef": "x",
            "environment": "", "tags": [""], "ownerId": "", "healthCheck": {"intervalSeconds": 0},
        }))
        .into_iter()
        .map(|(c, _)| c)
        .collect();
        assert_eq!(
            codes,
            [
                "invalid_name",
                "unknown_type",
                "unknown_provider",
                "invalid_auth_ref",
                "invalid_environment",
                "invalid_tags",
                "invalid_owner",
                "invalid_health_check"
            ]
        );
    }

    #[test]
    fn query_parameters() {
        assert_eq!(limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some("1")), Ok(1));
        assert_eq!(limit(Some("500")), Ok(500));
        for bad in ["0", "501", "-1", "ten", "", "1.5", "99999999999"] {
            assert_eq!(
                limit(Some(bad)).unwrap_err().rule,
                QueryRule::InvalidLimit,
                "{bad}"
            );
        }
        assert_eq!(kind_filter(Some("ci")), Ok(Some(IntegrationType::Ci)));
        assert_eq!(kind_filter(None), Ok(None));
        assert_eq!(kind_filter(Some("CI")), Ok(Some(IntegrationType::Ci)));
        assert_eq!(
            kind_filter(Some("C I")).unwrap_err().rule,
            QueryRule::InvalidFilter
        );
        assert_eq!(
            status_filter(Some("PendingVerification")),
            Ok(Some(Status::PendingVerification))
        );
        let providers = ProviderRegistry::builtin();
        assert_eq!(
            provider_filter(Some("GitHubApp".into()), &providers),
            Ok(Some("github-app".into()))
        );
        assert_eq!(
            provider_filter(Some("nope".into()), &providers),
            Ok(Some("nope".into()))
        );
        assert_eq!(
            status_filter(Some("pending_verification")),
            Ok(Some(Status::PendingVerification))
        );
        assert_eq!(
            status_filter(Some("broken")).unwrap_err().rule,
            QueryRule::InvalidFilter
        );
        assert_eq!(
            text_filter("q", Some("a".repeat(128))),
            Ok(Some("a".repeat(128)))
        );
        for bad in ["a".repeat(129), "a\0b".into(), "a\nb".into()] {
            assert_eq!(
                text_filter("q", Some(bad)).unwrap_err().rule,
                QueryRule::InvalidQuery
            );
        }
        assert!(is_possible_name("harbor ✓") && !is_possible_name("a\0") && !is_possible_name(""));
    }
}
