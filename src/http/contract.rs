//! What the OpenAPI document states beyond what utoipa derives from the types: every rule of
//! [`crate::validation`] as JSON Schema (lengths, patterns, enums, ranges, the credential
//! rules, the provider list of this daemon and which providers need a `baseUrl`), the error
//! responses every operation can give, the scope each operation needs, the cursor formats and
//! the links between operations. It works on the document as JSON, after utoipa, so each rule
//! is written once here next to the constant it mirrors; the tests check the patterns against
//! the validator itself.
//!
//! Patterns are ECMA-262 as JSON Schema reads them, and avoid what engines disagree on
//! (`\s`, lookaround, flags): character classes are spelled out.

use serde_json::{json, Map, Value};

use crate::app::cursor::MAX_CURSOR_CHARS;
use crate::app::UseCase;
use crate::auth::Scope;
use crate::integration::IntegrationType;
use crate::providers::ProviderRegistry;
use crate::spellings::{self, Kind};
use crate::validation::{
    MAX_BASE_URL_CHARS, MAX_DEPENDENCIES, MAX_DESCRIPTION_CHARS, MAX_ENVIRONMENT_CHARS,
    MAX_FILTER_CHARS, MAX_INTERVAL_SECONDS, MAX_NAME_CHARS, MAX_OWNER_CHARS, MAX_REASON_CHARS,
    MAX_TAGS, MAX_TAG_CHARS, MAX_THRESHOLD, MAX_TICKET_CHARS, SECRET_KEY_SUFFIXES,
};

/// Characters no single-line field may hold: C0, DEL, C1, U+2028 and U+2029.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f\u2028\u2029";
/// The same, but newline and tab are allowed (descriptions, reasons, comments).
const CONTROL_BUT_NL_TAB: &str = r"\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029";
/// Unicode `White_Space`, as Rust's `char::is_whitespace` and `str::trim` read it.
const WHITESPACE: &str = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Neither a control character nor whitespace.
const VISIBLE: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// A name: no control characters and no whitespace at either end.
pub fn name_pattern() -> String {
    format!("^{VISIBLE}([^{CONTROL}]*{VISIBLE})?$")
}

/// Single-line free text: no control characters at all.
pub fn single_line_pattern() -> String {
    format!("^[^{CONTROL}]*$")
}

/// Multi-line free text: no control characters but newline and tab.
pub fn text_pattern() -> String {
    format!("^[^{CONTROL_BUT_NL_TAB}]*$")
}

/// A required reason: multi-line text with at least one visible character.
pub fn reason_pattern() -> String {
    format!("^[^{CONTROL_BUT_NL_TAB}]*{VISIBLE}[^{CONTROL_BUT_NL_TAB}]*$")
}

pub const ENVIRONMENT_PATTERN: &str = "^[A-Za-z0-9._-]+$";
pub const TAG_PATTERN: &str = "^[A-Za-z0-9._:/=-]+$";

/// `ref://<scope>/<provider>/<key>`: three segments of 1–128 characters of `[A-Za-z0-9._-]`,
/// none of them `.` or `..`.
pub fn auth_ref_pattern() -> String {
    let segment = "([A-Za-z0-9_-][A-Za-z0-9._-]{0,127}|\\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,126}|\\.\\.[A-Za-z0-9._-]{1,126})";
    format!("^ref://{segment}/{segment}/{segment}$")
}

/// An absolute http(s) URL as the validator accepts it: a host name (whose last label starts
/// with a letter, so it is not read as an IPv4 number), a dotted IPv4 address or a bracketed
/// IPv6 address in hex groups, an optional
/// port, then a path and query without whitespace, control characters or a fragment.
pub fn base_url_pattern() -> String {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?";
    let last_label = "[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?";
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let port = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})";
    let h = "[0-9a-fA-F]{1,4}";
    let ipv6 = [
        format!("({h}:){{7}}{h}"),
        format!("({h}:){{1,7}}:"),
        format!("({h}:){{1,6}}:{h}"),
        format!("({h}:){{1,5}}(:{h}){{1,2}}"),
        format!("({h}:){{1,4}}(:{h}){{1,3}}"),
        format!("({h}:){{1,3}}(:{h}){{1,4}}"),
        format!("({h}:){{1,2}}(:{h}){{1,5}}"),
        format!("{h}:(:{h}){{1,6}}"),
        format!(":((:{h}){{1,7}}|:)"),
    ]
    .join("|");
    let rest = format!("[^#{CONTROL}{WHITESPACE}]");
    format!(
        "^[hH][tT][tT][pP][sS]?://(({label}\\.)*{last_label}|({octet}\\.){{3}}{octet}|\\[({ipv6})\\])(:{port})?([/?\\\\]{rest}*)?$"
    )
}

/// What the validator calls a credential inside free text: a PEM private key or an http(s)
/// URL with userinfo.
fn credential_patterns() -> Vec<String> {
    vec![
        "-----BEGIN[\\s\\S]*PRIVATE KEY".to_owned(),
        "PRIVATE KEY[\\s\\S]*-----BEGIN".to_owned(),
        format!("[hH][tT][tT][pP][sS]?://[^/?#\\\\\"'<>{WHITESPACE}]*@"),
    ]
}

/// An `Authorization` header literal: `Bearer` or `Basic`, a space, a token68.
fn authorization_literal_pattern() -> String {
    format!(
        "^[{WHITESPACE}]*([bB][eE][aA][rR][eE][rR]|[bB][aA][sS][iI][cC]) [{WHITESPACE}]*[A-Za-z0-9._~+/-]+=*[{WHITESPACE}]*$"
    )
}

/// A configuration key that names a credential: lowercased and without `_`, `-` and `.`, it
/// ends with one of [`SECRET_KEY_SUFFIXES`]. (U+212A KELVIN SIGN lowercases to `k`.)
pub fn secret_key_pattern() -> String {
    let suffixes: Vec<String> = SECRET_KEY_SUFFIXES
        .iter()
        .map(|suffix| {
            suffix
                .chars()
                .map(|c| {
                    let upper = c.to_ascii_uppercase();
                    let extra = if c == 'k' { "\\u212a" } else { "" };
                    format!("[{c}{upper}{extra}][_.-]*")
                })
                .collect()
        })
        .collect();
    format!("({})$", suffixes.join("|"))
}

/// A string that is none of the things the validator refuses as a credential (one
/// alternation, so generators need no branching; `type` keeps it off non-strings).
fn credential_free(mut schema: Value, with_authorization: bool) -> Value {
    let mut patterns = credential_patterns();
    if with_authorization {
        patterns.push(authorization_literal_pattern());
    }
    schema["not"] = json!({"type": "string", "pattern": patterns.join("|")});
    schema
}

/// Nesting of `configuration` the schema states (the object itself is level 1).
const CONFIGURATION_LEVELS: usize = crate::validation::MAX_CONFIGURATION_DEPTH;

/// The schemas of configuration values, unrolled by depth: `ConfigurationValue{k}` is any
/// JSON value nested at most `k` levels, free of NUL characters and credentials;
/// `ConfigurationSecretValue{k}` is what may sit under a credential-named key (an AuthRef,
/// `""`, `null`, a boolean, or containers of those). Each is one schema with a list of types
/// and the keywords of each type, not a branching `anyOf`, which generators explore slowly.
fn configuration_schemas(schemas: &mut Map<String, Value>) {
    let no_nul = "^[^\\x00]*$";
    let auth_ref = auth_ref_pattern();
    let reference = format!("^(|{})$", &auth_ref[1..auth_ref.len() - 1]);
    for level in 0..CONFIGURATION_LEVELS {
        let mut value = credential_free(
            json!({"type": ["null", "boolean", "number", "string"], "pattern": no_nul}),
            true,
        );
        let mut secret = json!({"type": ["null", "boolean", "string"], "pattern": reference});
        if level > 0 {
            let below = format!("#/components/schemas/ConfigurationValue{}", level - 1);
            let secret_below =
                format!("#/components/schemas/ConfigurationSecretValue{}", level - 1);
            for (schema, items) in [(&mut value, &below), (&mut secret, &secret_below)] {
                schema["type"]
                    .as_array_mut()
                    .unwrap()
                    .extend([json!("array"), json!("object")]);
                schema["items"] = json!({"$ref": items});
                schema["propertyNames"] = json!({"pattern": no_nul});
                schema["patternProperties"] = json!({secret_key_pattern(): {"$ref": secret_below}});
                schema["additionalProperties"] = json!({"$ref": below});
            }
        }
        schemas.insert(format!("ConfigurationValue{level}"), value);
        schemas.insert(format!("ConfigurationSecretValue{level}"), secret);
    }
}

/// The schema of `configuration` in a request: an object (or `null`, read as `{}`).
fn configuration_schema() -> Value {
    let below = format!(
        "#/components/schemas/ConfigurationValue{}",
        CONFIGURATION_LEVELS - 1
    );
    let secret_below = format!(
        "#/components/schemas/ConfigurationSecretValue{}",
        CONFIGURATION_LEVELS - 1
    );
    json!({
        "type": ["object", "null"],
        "description": "Provider-specific settings: a JSON object nested at most 8 levels, \
            of at most 32 KiB serialized (a limit JSON Schema cannot state: 422 \
            `invalid_configuration`), without NUL characters and without raw credentials \
            (a key naming a credential holds an AuthRef; no value is a private key, a URL \
            with userinfo or an Authorization header value).",
        "propertyNames": {"pattern": "^[^\\x00]*$"},
        "patternProperties": {secret_key_pattern(): {"$ref": secret_below}},
        "additionalProperties": {"$ref": below},
    })
}

/// Sets `keywords` on the property `property` of the component schema `schema`.
fn constrain(doc: &mut Value, schema: &str, property: &str, keywords: Value) {
    let target = &mut doc["components"]["schemas"][schema]["properties"][property];
    assert!(
        target.is_object(),
        "{schema}.{property} is not in the document"
    );
    for (key, value) in keywords.as_object().expect("keywords are an object") {
        target[key] = value.clone();
    }
}

/// `name` and `description` as [`crate::validation`] checks them, wherever a resource has them.
fn name_and_description(doc: &mut Value, schema: &str) {
    constrain(
        doc,
        schema,
        "name",
        json!({"minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": name_pattern()}),
    );
    let description = credential_free(
        json!({"maxLength": MAX_DESCRIPTION_CHARS, "pattern": text_pattern()}),
        false,
    );
    constrain(doc, schema, "description", description);
}

/// The rules of [`crate::validation::spec`] on the request body of create (and replace).
fn spec_request(doc: &mut Value, providers: &ProviderRegistry) {
    let schema = "SpecRequest";
    name_and_description(doc, schema);
    // The seed's spellings (DESIGN §12) are accepted on input: any case, with or without
    // `-`/`_`, and a few aliases; the resource always shows the canonical value.
    let names: Vec<&str> = providers.names().collect();
    constrain(
        doc,
        schema,
        "provider",
        json!({
            "pattern": spellings::pattern(Kind::Provider, names.iter().copied()),
            "x-canonical-values": names,
            "description": format!(
                "A provider this daemon knows (built in or loaded from `plugins.directory`): {}. \
                 Any case, with or without `-`/`_` (`GitHubApp`, `github_app`), is accepted and \
                 stored as the canonical name.",
                names.join(", ")
            ),
        }),
    );
    let types: Vec<&str> = IntegrationType::ALL.iter().map(|t| t.as_str()).collect();
    doc["components"]["schemas"][schema]["properties"]["type"] = json!({
        "type": "string",
        "pattern": spellings::pattern(Kind::Type, types.iter().copied()),
        "x-canonical-values": types,
        "description": format!(
            "One of {}; any case, with or without `-`/`_` (`Registry`, `SCM`), is accepted and \
             stored as the canonical value.",
            types.join(", ")
        ),
    });
    constrain(
        doc,
        schema,
        "baseUrl",
        json!({"maxLength": MAX_BASE_URL_CHARS, "pattern": base_url_pattern()}),
    );
    constrain(
        doc,
        schema,
        "authRef",
        json!({"pattern": auth_ref_pattern()}),
    );
    doc["components"]["schemas"][schema]["properties"]["configuration"] = configuration_schema();
    constrain(
        doc,
        schema,
        "environment",
        json!({"minLength": 1, "maxLength": MAX_ENVIRONMENT_CHARS, "pattern": ENVIRONMENT_PATTERN}),
    );
    constrain(
        doc,
        schema,
        "tags",
        json!({"maxItems": MAX_TAGS, "uniqueItems": true, "items": {
            "type": "string", "minLength": 1, "maxLength": MAX_TAG_CHARS, "pattern": TAG_PATTERN,
        }}),
    );
    constrain(
        doc,
        schema,
        "dependsOn",
        json!({"maxItems": MAX_DEPENDENCIES, "uniqueItems": true, "items": {
            "type": "string", "format": "uuid",
        }}),
    );
    constrain(
        doc,
        schema,
        "ownerId",
        json!({"minLength": 1, "maxLength": MAX_OWNER_CHARS, "pattern": single_line_pattern()}),
    );
    // baseUrl is required unless the provider needs none: a rule on two fields that JSON
    // Schema can state, because the provider list is known.
    let without: Vec<&str> = providers
        .names()
        .filter(|name| !providers.needs_base_url(name))
        .collect();
    doc["components"]["schemas"][schema]["anyOf"] = json!([
        {"properties": {"provider": {"pattern": spellings::pattern(Kind::Provider, without)}}},
        {"required": ["baseUrl"], "properties": {"baseUrl": {"type": "string"}}},
    ]);
}

/// The health-check settings: ranges; `timeoutSeconds` at most the interval and
/// `failedAfter` at least `degradedAfter` compare two fields (or a field with the daemon's
/// defaults), so they are the documented 422 `invalid_health_check`.
fn health_check(doc: &mut Value) {
    for (property, max) in [
        ("intervalSeconds", MAX_INTERVAL_SECONDS),
        ("timeoutSeconds", MAX_INTERVAL_SECONDS),
        ("degradedAfter", MAX_THRESHOLD),
        ("failedAfter", MAX_THRESHOLD),
        ("recoverAfter", MAX_THRESHOLD),
    ] {
        constrain(
            doc,
            "HealthCheck",
            property,
            json!({"minimum": 1, "maximum": max}),
        );
    }
}

/// Pause, resume, activate: the reason, ticket and comment rules.
fn transition_requests(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    schemas["PauseRequest"]["required"] = json!(["reason"]);
    constrain(
        doc,
        "PauseRequest",
        "reason",
        json!({"type": "string", "maxLength": MAX_REASON_CHARS, "pattern": reason_pattern()}),
    );
    constrain(
        doc,
        "PauseRequest",
        "ticket",
        json!({"minLength": 1, "maxLength": MAX_TICKET_CHARS, "pattern": single_line_pattern()}),
    );
    constrain(
        doc,
        "ActivateRequest",
        "comment",
        json!({"maxLength": MAX_REASON_CHARS, "pattern": text_pattern()}),
    );
    constrain(
        doc,
        "ResumeRequest",
        "reason",
        json!({"maxLength": MAX_REASON_CHARS, "pattern": text_pattern()}),
    );
    constrain(
        doc,
        "ResumeRequest",
        "ticket",
        json!({"minLength": 1, "maxLength": MAX_TICKET_CHARS, "pattern": single_line_pattern()}),
    );
}

/// Submit, resume, test and activate take an optional body: none at all, or a JSON object
/// (not `null`).
fn optional_bodies(doc: &mut Value) {
    for (path, schema) in [
        ("/api/v1/integrations/{id}/submit", "EmptyRequest"),
        ("/api/v1/integrations/{id}/resume", "ResumeRequest"),
        ("/api/v1/integrations/{id}/test", "EmptyRequest"),
        ("/api/v1/integrations/{id}/activate", "ActivateRequest"),
    ] {
        let operation = &mut doc["paths"][path]["post"];
        assert!(operation.is_object(), "POST {path} is not in the document");
        operation["requestBody"] = json!({
            "description": "Optional: no body at all, or a JSON object",
            "required": false,
            "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{schema}")},
            }},
        });
    }
}

/// The replace body: the spec's fields, `version`, `integrationId`, and the resource's
/// server-set fields, which may be sent back as a GET returned them and are ignored.
fn update_request(doc: &mut Value) {
    let spec = doc["components"]["schemas"]["SpecRequest"].clone();
    let mut properties = spec["properties"].clone();
    properties["version"] = json!({
        "type": ["integer", "null"], "minimum": 1, "format": "int64",
        "description": "The version being replaced, unless `If-Match` names it. One of the two \
            is required (428 `version_required`); when both are sent they must agree.",
    });
    properties["integrationId"] = json!({
        "type": ["string", "null"], "format": "uuid",
        "description": "When sent, the id in the path (422 `id_mismatch`).",
    });
    for field in crate::app::integrations::READ_ONLY_FIELDS {
        properties[*field] =
            json!({"description": "Server-set: accepted as a GET returned it, and ignored."});
    }
    let mut update = spec;
    update["properties"] = properties;
    update["description"] = json!(
        "The body of a replace: every user-settable field (absent optional fields are cleared), \
         plus the expected `version` unless `If-Match` carries it. The server-set fields of \
         the resource may be sent back unchanged and are ignored; `integrationId` must match \
         the path."
    );
    doc["components"]["schemas"]["UpdateRequest"] = update;
}

/// Query parameters: filters, the cursor formats.
fn parameters(doc: &mut Value) {
    let status_names: Vec<&str> = catalogd_actors::Status::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let type_names: Vec<&str> = IntegrationType::ALL.iter().map(|t| t.as_str()).collect();
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for (method, operation) in item.as_object_mut().into_iter().flatten() {
            let cursor_format = match (path.as_str(), method.as_str()) {
                ("/api/v1/integrations", "get") => "integration-list-cursor",
                ("/api/v1/audit", "get") => "audit-cursor",
                (p, "get") if p.ends_with("/history") => "history-cursor",
                _ => "",
            };
            for parameter in operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let location = parameter["in"].as_str().unwrap_or_default().to_owned();
                let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                let schema = &mut parameter["schema"];
                match (Some(location.as_str()), Some(name.as_str())) {
                    (Some("query"), Some("cursor")) => {
                        // The format is the whole rule (a position this operation
                        // encoded, base64url without padding); a pattern would only restate
                        // part of it.
                        *schema = json!({
                            "type": "string", "format": cursor_format,
                            "minLength": 1, "maxLength": MAX_CURSOR_CHARS,
                        });
                        parameter["description"] = json!(format!(
                            "The `nextCursor` of the previous page: an opaque \
                             `{cursor_format}`, a position encoded by this operation \
                             (base64url of a small JSON object, without padding). Any other \
                             string is 400 `invalid_cursor`."
                        ));
                    }
                    (Some("query"), Some("status")) => {
                        *schema = json!({"type": "string",
                            "pattern": spellings::pattern(Kind::Status, status_names.iter().copied())});
                        parameter["description"] = json!(format!(
                            "Only integrations in this lifecycle status: one of {}, in any case, \
                             with or without `-`/`_` (`PendingVerification`).",
                            status_names.join(", ")
                        ));
                    }
                    (Some("query"), Some("type")) => {
                        *schema = json!({"type": "string",
                            "pattern": spellings::pattern(Kind::Type, type_names.iter().copied())});
                    }
                    (Some("query"), Some("provider" | "environment" | "tag" | "q")) => {
                        *schema = json!({"type": "string", "maxLength": MAX_FILTER_CHARS, "pattern": single_line_pattern()});
                    }
                    (Some("header"), Some("If-Match")) => {
                        *schema = json!({"type": "string", "pattern": "^(\\*|(W/)?\"[0-9]{1,18}\"|[0-9]{1,18})$"});
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The use case each authenticated operation runs, by operation id.
fn use_case(operation_id: &str) -> Option<UseCase> {
    Some(match operation_id {
        "listIntegrations" => UseCase::List,
        "getIntegration" => UseCase::Get,
        "createIntegration" => UseCase::Create,
        "replaceIntegration" => UseCase::Update,
        "deleteIntegration" => UseCase::Delete,
        "submitIntegration" => UseCase::Submit,
        "pauseIntegration" => UseCase::Pause,
        "resumeIntegration" => UseCase::Resume,
        "activateIntegration" => UseCase::Activate,
        "testIntegration" => UseCase::Test,
        "getHealth" => UseCase::Health,
        "getHistory" => UseCase::History,
        "listAudit" => UseCase::Audit,
        "listMaintenanceWindows" => UseCase::ListWindows,
        "getMaintenanceWindow" => UseCase::GetWindow,
        "createMaintenanceWindow" => UseCase::CreateWindow,
        "replaceMaintenanceWindow" => UseCase::UpdateWindow,
        "deleteMaintenanceWindow" => UseCase::DeleteWindow,
        "exportIntegrations" => UseCase::Export,
        "importIntegrations" => UseCase::Import,
        "getStatusPageConfig" => UseCase::GetStatusPage,
        "putStatusPageConfig" => UseCase::PutStatusPage,
        _ => return None,
    })
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}

/// The scope each authenticated operation needs, and the error responses every operation of
/// a kind can give: 401, 403, 429 and 503 on every authenticated one; 400, 413 and 415 on
/// every one with a body; 400 on every one with query parameters.
fn responses_and_scopes(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let operation_id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let has_body = operation.get("requestBody").is_some();
        let has_query = operation["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
        let responses = &mut operation["responses"];
        let mut add = |status: &str, response: Value| {
            if responses.get(status).is_none() {
                responses[status] = response;
            }
        };
        if has_body {
            add("400", problem("`invalid_json` (the body is not JSON) or `invalid_body` (wrong type, unknown or duplicate field)"));
            add(
                "413",
                problem("`payload_too_large`: the body exceeds `http.body_limit_bytes`"),
            );
            add(
                "415",
                problem("`unsupported_media_type`: a body must be `application/json`"),
            );
        }
        if has_query {
            add("400", problem("`invalid_query` (unknown, repeated or malformed parameter), `invalid_limit`, `invalid_filter` or `invalid_cursor`"));
        }
        let Some(use_case) = use_case(&operation_id) else {
            continue;
        };
        let scope = match use_case.scope() {
            Scope::Read => "integrations.read",
            Scope::Admin => "integrations.admin",
        };
        add(
            "401",
            problem("`unauthorized`: no bearer token, or one that is invalid or expired"),
        );
        add(
            "403",
            problem(&format!("`forbidden`: the token lacks `{scope}`")),
        );
        add(
            "429",
            json!({
                "description": "`rate_limited`: the tenant's request rate (`http.rate_limit`) is exceeded",
                "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 0}}},
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }),
        );
        add("503", problem("`unavailable` (the database cannot be reached) or `timeout` (the request exceeded `http.request_timeout`)"));
        operation["security"] = json!([{"bearer": [scope]}]);
        operation["x-required-scope"] = json!(scope);
        let description = operation["description"].as_str().unwrap_or_default();
        operation["description"] = json!(format!(
            "{description}{}Requires a token with scope `{scope}` (`integrations.admin` implies `integrations.read`).",
            if description.is_empty() { "" } else { "\n\n" }
        ));
    }
}

/// Links from a created (or fetched) integration to every operation on it, so a client (and
/// a stateful tester) can follow the id.
fn links(doc: &mut Value) {
    let id = json!({"id": "$response.body#/integrationId"});
    let mut to_item: Map<String, Value> = Map::new();
    for (name, operation) in [
        ("get", "getIntegration"),
        ("delete", "deleteIntegration"),
        ("submit", "submitIntegration"),
        ("pause", "pauseIntegration"),
        ("resume", "resumeIntegration"),
        ("activate", "activateIntegration"),
        ("test", "testIntegration"),
        ("health", "getHealth"),
        ("history", "getHistory"),
    ] {
        to_item.insert(
            name.to_owned(),
            json!({"operationId": operation, "parameters": id}),
        );
    }
    to_item.insert(
        "replace".to_owned(),
        json!({
            "operationId": "replaceIntegration",
            "parameters": {"id": "$response.body#/integrationId", "header.If-Match": "$response.header.ETag"},
            "requestBody": "$response.body",
        }),
    );
    to_item.insert(
        "audit".to_owned(),
        json!({"operationId": "listAudit", "parameters": {"integrationId": "$response.body#/integrationId"}}),
    );
    let paths = &mut doc["paths"];
    paths["/api/v1/integrations"]["post"]["responses"]["201"]["links"] =
        Value::Object(to_item.clone());
    for (path, method) in [
        ("/api/v1/integrations/{id}", "get"),
        ("/api/v1/integrations/{id}", "put"),
        ("/api/v1/integrations/{id}/submit", "post"),
        ("/api/v1/integrations/{id}/pause", "post"),
        ("/api/v1/integrations/{id}/resume", "post"),
        ("/api/v1/integrations/{id}/activate", "post"),
    ] {
        paths[path][method]["responses"]["200"]["links"] = Value::Object(to_item.clone());
    }
    let window = json!({"id": "$response.body#/windowId"});
    let to_window = json!({
        "get": {"operationId": "getMaintenanceWindow", "parameters": window},
        "delete": {"operationId": "deleteMaintenanceWindow", "parameters": window},
        "replace": {
            "operationId": "replaceMaintenanceWindow",
            "parameters": {"id": "$response.body#/windowId", "header.If-Match": "$response.header.ETag"},
            "requestBody": "$response.body",
        },
    });
    paths["/api/v1/maintenance-windows"]["post"]["responses"]["201"]["links"] = to_window.clone();
    for method in ["get", "put"] {
        paths["/api/v1/maintenance-windows/{id}"][method]["responses"]["200"]["links"] =
            to_window.clone();
    }
}

/// The rules that compare a field with another one (or with the daemon's settings), which
/// JSON Schema cannot state: a schema-valid request may break them, and is then refused with
/// the status and one of the problem codes named here (`x-cross-field-rules` on that
/// response).
pub const CROSS_FIELD_RULES: &[(&str, &str, &[&str])] = &[
    // `dependsOn` ids must name integrations of the tenant without closing a cycle (and two
    // spellings of one id are duplicates): the store decides.
    (
        "createIntegration",
        "422",
        &[
            "invalid_health_check",
            "invalid_depends_on",
            "unknown_dependency",
        ],
    ),
    (
        "replaceIntegration",
        "422",
        &[
            "invalid_health_check",
            "id_mismatch",
            "invalid_depends_on",
            "unknown_dependency",
            "dependency_cycle",
        ],
    ),
    ("replaceIntegration", "428", &["version_required"]),
    ("getHistory", "422", &["invalid_range"]),
    // A window's schedule: endsAt after startsAt, a valid RRULE, durationSeconds with rrule,
    // a known time zone.
    ("createMaintenanceWindow", "422", &["invalid_schedule"]),
    (
        "replaceMaintenanceWindow",
        "422",
        &["invalid_schedule", "id_mismatch"],
    ),
    ("replaceMaintenanceWindow", "428", &["version_required"]),
    // An import's items against each other and the catalog: names unique in the document,
    // a draft cannot be paused, and the create body's own cross-field rule.
    (
        "importIntegrations",
        "422",
        &[
            "invalid_health_check",
            "invalid_item",
            "invalid_name",
            "unknown_dependency",
            "dependency_cycle",
        ],
    ),
    // A title of whitespace only, an id that is not one of the tenant's integrations.
    (
        "putStatusPageConfig",
        "422",
        &["invalid_title", "invalid_selector"],
    ),
];

fn cross_field_rules(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        for (id, status, codes) in CROSS_FIELD_RULES {
            if operation["operationId"] == *id {
                let response = &mut operation["responses"][*status];
                assert!(response.is_object(), "{id} documents no {status}");
                response["x-cross-field-rules"] = json!(codes);
            }
        }
    }
}

/// Request examples: what a client sends, and the first requests a tester tries.
fn examples(doc: &mut Value) {
    let spec = json!({
        "name": "harbor-prod", "type": "registry", "provider": "harbor",
        "baseUrl": "https://harbor.example.com", "authRef": "ref://vault/harbor/robot-token",
        "environment": "prod", "tags": ["team:core"],
        "healthCheck": {"intervalSeconds": 60, "timeoutSeconds": 10},
    });
    let mut replace = spec.clone();
    replace["description"] = json!("The production registry");
    replace["version"] = json!(1);
    for (path, method, example) in [
        ("/api/v1/integrations", "post", spec),
        ("/api/v1/integrations/{id}", "put", replace),
        (
            "/api/v1/integrations/{id}/pause",
            "post",
            json!({"reason": "Planned maintenance", "ticket": "CHG-1234"}),
        ),
        (
            "/api/v1/integrations/{id}/activate",
            "post",
            json!({"comment": "Approved"}),
        ),
        ("/api/v1/integrations/{id}/submit", "post", json!({})),
        ("/api/v1/integrations/{id}/resume", "post", json!({})),
        ("/api/v1/integrations/{id}/test", "post", json!({})),
    ] {
        let media = &mut doc["paths"][path][method]["requestBody"]["content"]["application/json"];
        assert!(media.is_object(), "{method} {path} has no JSON body");
        media["example"] = example;
    }
}

/// The rules of [`crate::maintenance::validate`] that JSON Schema can state; the schedule's
/// (endsAt after startsAt, the RRULE, the time zone) are the cross-field `invalid_schedule`.
/// A replace body may carry the resource's server-set fields back; they are ignored.
fn window_request(doc: &mut Value) {
    let schema = "WindowRequest";
    name_and_description(doc, schema);
    constrain(
        doc,
        schema,
        "durationSeconds",
        json!({"minimum": 1, "maximum": crate::maintenance::schedule::MAX_DURATION_SECONDS}),
    );
    // A maintenance window's and a status page's selectors take the same values; a window
    // refuses a repeated tag, a status page drops it.
    for (selector, unique) in [("Selector", true), ("SelectorRequest", false)] {
        constrain(
            doc,
            selector,
            "integrationIds",
            json!({"maxItems": crate::maintenance::window::MAX_SELECTOR_IDS}),
        );
        constrain(
            doc,
            selector,
            "tags",
            json!({"maxItems": MAX_TAGS, "uniqueItems": unique, "items": {
                "type": "string", "minLength": 1, "maxLength": MAX_TAG_CHARS, "pattern": TAG_PATTERN,
            }}),
        );
        constrain(
            doc,
            selector,
            "environment",
            json!({"minLength": 1, "maxLength": MAX_ENVIRONMENT_CHARS, "pattern": ENVIRONMENT_PATTERN}),
        );
    }
    constrain(
        doc,
        schema,
        "version",
        json!({"minimum": 1, "format": "int64"}),
    );
    // A create carries no id or version yet (400 `invalid_body`).
    let mut create = doc["components"]["schemas"][schema].clone();
    for field in ["version", "windowId"] {
        create["properties"].as_object_mut().unwrap().remove(field);
    }
    create["description"] = json!("A new window's user-settable fields.");
    doc["components"]["schemas"]["WindowCreateRequest"] = create;
    let body = &mut doc["paths"]["/api/v1/maintenance-windows"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert!(body.is_object(), "POST maintenance window has no body");
    *body = json!({"$ref": "#/components/schemas/WindowCreateRequest"});
    let mut replace = doc["components"]["schemas"][schema].clone();
    for field in crate::app::maintenance::READ_ONLY_FIELDS {
        replace["properties"][*field] =
            json!({"description": "Server-set: accepted as a GET returned it, and ignored."});
    }
    replace["description"] = json!(
        "The body of a replace: every user-settable field (absent optional fields are cleared), \
         plus the expected `version` unless `If-Match` carries it. The server-set fields of \
         the resource may be sent back unchanged and are ignored; `windowId` must match the path."
    );
    doc["components"]["schemas"]["WindowReplaceRequest"] = replace;
    let body = &mut doc["paths"]["/api/v1/maintenance-windows/{id}"]["put"]["requestBody"]
        ["content"]["application/json"]["schema"];
    assert!(body.is_object(), "PUT maintenance window has no body");
    *body = json!({"$ref": "#/components/schemas/WindowReplaceRequest"});
}

/// The import/export document: its version and kind, and each item the create body's
/// fields (the same rules) plus `paused`.
fn transfer_document(doc: &mut Value) {
    let mut item = doc["components"]["schemas"]["SpecRequest"].clone();
    item["properties"]["paused"] = json!({
        "type": ["boolean", "null"],
        "description": "Whether the integration is paused. Applied to existing integrations (pause or resume); a created one starts as a draft.",
    });
    item["properties"]["dependsOn"] = json!({
        "type": ["array", "null"],
        "maxItems": crate::validation::MAX_DEPENDENCIES,
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": name_pattern()},
        "description": "The names of the integrations (of the document or the tenant) this one depends on.",
    });
    item["description"] = json!("One integration: its user-settable fields and `paused`.");
    doc["components"]["schemas"]["ImportItem"] = item;
    let document = &mut doc["components"]["schemas"]["Document"];
    assert!(document.is_object(), "Document is not in the document");
    document["properties"]["apiVersion"] =
        json!({"type": "string", "enum": [crate::transfer::API_VERSION]});
    document["properties"]["kind"] = json!({"type": "string", "enum": [crate::transfer::KIND]});
    document["properties"]["items"] =
        json!({"type": "array", "items": {"$ref": "#/components/schemas/ImportItem"}});
}

/// Every refinement, in order, on the document utoipa generated.
pub fn refine(doc: &mut Value, providers: &ProviderRegistry) {
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("the document has schemas");
    configuration_schemas(schemas);
    spec_request(doc, providers);
    health_check(doc);
    transition_requests(doc);
    update_request(doc);
    window_request(doc);
    transfer_document(doc);
    optional_bodies(doc);
    parameters(doc);
    responses_and_scopes(doc);
    cross_field_rules(doc);
    examples(doc);
    links(doc);
}

#[cfg(test)]
mod tests {
    use catalogd_actors::Thresholds;
    use proptest::prelude::*;

    use super::*;
    use crate::validation::{self, SpecRequest, SpecRules};

    /// The document a daemon with the built-in providers serves.
    fn document() -> Value {
        super::super::openapi::document_for(&ProviderRegistry::builtin())
    }

    /// A validator for the component schema `name`, resolving references in `doc`.
    fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
        let schema = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": doc["components"].clone(),
        });
        jsonschema::draft202012::new(&schema).expect("the schema compiles")
    }

    fn matches(pattern: &str, s: &str) -> bool {
        jsonschema::draft202012::new(&json!({"type": "string", "pattern": pattern}))
            .unwrap()
            .is_valid(&json!(s))
    }

    /// Strings at the edges of the character rules.
    const SAMPLES: &[&str] = &[
        "",
        "a",
        "harbor-prod",
        " a",
        "a ",
        "a b",
        "\u{3000}a",
        "a\u{a0}",
        "a\u{85}",
        "a\tb",
        "a\nb",
        "a\rb",
        "a\u{0}",
        "a\u{7f}b",
        "a\u{9f}b",
        "a\u{2028}b",
        "é✓",
        "😀",
        "\u{feff}a",
        "x\n",
        "\n",
        " ",
        ".",
        "..",
        "...",
        "ref://vault/harbor/token",
        "ref://./harbor/token",
        "ref://../harbor/token",
        "ref://.a/..b/...",
        "ref://a/b",
        "ref://a/b/c/d",
        "ref://a b/c/d",
    ];

    #[test]
    fn text_patterns_agree_with_the_validator() {
        for s in SAMPLES {
            assert_eq!(
                matches(&name_pattern(), s),
                validation::is_possible_name(s),
                "name {s:?}"
            );
            assert_eq!(
                matches(&auth_ref_pattern(), s),
                validation::is_auth_ref(s),
                "authRef {s:?}"
            );
            assert_eq!(
                matches(&reason_pattern(), s),
                validation::reason("reason", Some(s.to_string()), true).is_ok(),
                "reason {s:?}"
            );
            assert_eq!(
                matches(&text_pattern(), s),
                validation::reason("comment", Some(s.to_string()), false).is_ok(),
                "comment {s:?}"
            );
            assert_eq!(
                matches(&single_line_pattern(), s) && !s.is_empty(),
                validation::ticket(Some(s.to_string())).is_ok(),
                "ticket {s:?}"
            );
        }
    }

    #[test]
    fn secret_keys_match_the_validator() {
        for key in [
            "password",
            "Pass_Word",
            "db.password",
            "api-key",
            "apiKey",
            "x_TOKEN_",
            "token",
            "tokens",
            "user",
            "authority",
            "oauth",
            "host",
            "\u{212a}ey",
            "pwd",
            "author",
        ] {
            let literal = json!({"configuration": {key: "hunter2"}});
            let body = json!({"name": "a", "type": "host", "provider": "tcp", "configuration": literal["configuration"]});
            let request: SpecRequest = serde_json::from_value(body.clone()).unwrap();
            let refused = validation::spec(request, &rules(&ProviderRegistry::builtin()))
                .is_err_and(|errors| errors.iter().any(|e| e.rule.code() == "raw_secret"));
            let doc = document();
            assert_eq!(
                !validator(&doc, "SpecRequest").is_valid(&body),
                refused,
                "{key}"
            );
        }
    }

    fn rules(providers: &ProviderRegistry) -> SpecRules<'_> {
        SpecRules {
            providers,
            default_interval_seconds: 60,
            default_thresholds: Thresholds::default(),
        }
    }

    /// Candidate values of each field of a create body, valid and invalid; `None` leaves the
    /// field out.
    fn field(name: &'static str) -> BoxedStrategy<Option<Value>> {
        let values: Vec<Value> = match name {
            "name" => vec![
                json!("harbor"),
                json!(" x"),
                json!(""),
                json!("a\u{1}"),
                json!(5),
                json!("x".repeat(129)),
                json!("é"),
            ],
            "type" => vec![
                json!("registry"),
                json!("ci"),
                json!("Registry"),
                json!("SCM"),
                json!("container_registry"),
                json!("Regist ry"),
                json!("database"),
                json!(null),
            ],
            "provider" => vec![
                json!("harbor"),
                json!("tcp"),
                json!("in-memory"),
                json!("InMemory"),
                json!("TCP"),
                json!("GitHubApp"),
                json!("github_app"),
                json!("BitbucketServer"),
                json!("git hub"),
                json!("nope"),
                json!(null),
            ],
            "baseUrl" => vec![
                json!("https://harbor.example.com"),
                json!("http://10.0.0.1:8080/v2?x=1"),
                json!("ftp://x.example"),
                json!("https://u:p@x.example"),
                json!("https://x.example/#f"),
                json!("https://x.example/a b"),
                json!("https://999"),
                json!("https://x.example:70000"),
                json!("https://1.2.3.4"),
                json!(null),
                json!(""),
                json!("https://0x7f.1"),
                json!("https://[::1]:8443/x"),
                json!("https://[::ffff:127.0.0.1]"),
                json!("https://[1:2:3:4:5:6:7:8]"),
                json!("https://a.b-c.example"),
                json!("https://x.example\\y"),
                json!("HTTPS://X.EXAMPLE?q"),
            ],
            "authRef" => vec![
                json!("ref://vault/harbor/key"),
                json!("ref://../a/b"),
                json!("secret"),
                json!(null),
            ],
            "description" => vec![
                json!("plain"),
                json!("line\nbreak"),
                json!("bell\u{7}"),
                json!("see https://u:p@h.example"),
                json!(null),
            ],
            "configuration" => vec![
                json!({}),
                json!({"region": "eu"}),
                json!({"password": "x"}),
                json!({"password": "ref://a/b/c"}),
                json!({"nested": {"apiToken": 5}}),
                json!({"list": ["Bearer abcdef"]}),
                json!({"k": "a\u{0}"}),
                json!([1]),
                json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}),
                json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}),
                json!(null),
            ],
            "environment" => vec![json!("prod"), json!("pro d"), json!(""), json!(null)],
            "tags" => vec![
                json!(["a", "b"]),
                json!(["a", "a"]),
                json!(["a b"]),
                json!([]),
                json!(null),
            ],
            "ownerId" => vec![json!("team-a"), json!(""), json!("a\tb"), json!(null)],
            "healthCheck" => vec![
                json!({}),
                json!({"intervalSeconds": 30, "timeoutSeconds": 5}),
                json!({"intervalSeconds": 0}),
                json!({"intervalSeconds": 5.0}),
                json!({"degradedAfter": 1001}),
                json!({"bogus": 1}),
                json!("fast"),
                json!(null),
            ],
            _ => unreachable!(),
        };
        prop_oneof![Just(None), proptest::sample::select(values).prop_map(Some)].boxed()
    }

    const FIELDS: [&str; 11] = [
        "name",
        "type",
        "provider",
        "baseUrl",
        "authRef",
        "description",
        "configuration",
        "environment",
        "tags",
        "ownerId",
        "healthCheck",
    ];

    /// The create body's schema, compiled once for the property test.
    static SPEC_REQUEST: std::sync::LazyLock<jsonschema::Validator> =
        std::sync::LazyLock::new(|| validator(&document(), "SpecRequest"));

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The document's request schema and the API agree on every body: what the schema
        /// accepts, the API accepts (unless a documented cross-field rule refuses it), and
        /// what the schema refuses, the API refuses.
        #[test]
        fn the_create_schema_is_the_validator(
            changed in proptest::sample::subsequence(FIELDS.to_vec(), 0..=3),
            values in FIELDS.map(field),
        ) {
            // A valid body with up to three fields replaced by candidates (or left out), so
            // that each candidate meets otherwise valid bodies.
            let mut body = json!({"name": "harbor", "type": "registry", "provider": "harbor",
                "baseUrl": "https://harbor.example.com"});
            for (name, value) in FIELDS.iter().zip(values) {
                if changed.contains(name) {
                    match value {
                        Some(value) => body[*name] = value,
                        None => _ = body.as_object_mut().unwrap().remove(*name),
                    }
                }
            }
            let schema_valid = SPEC_REQUEST.is_valid(&body);
            let providers = ProviderRegistry::builtin();
            let outcome = serde_json::from_value::<SpecRequest>(body.clone())
                .map_err(|_| vec!["invalid_body".to_owned()])
                .and_then(|request| {
                    validation::spec(request, &rules(&providers))
                        .map_err(|errors| errors.iter().map(|e| e.rule.code().to_owned()).collect())
                });
            let allowed = ["invalid_health_check"];
            match outcome {
                Ok(_) => prop_assert!(schema_valid, "the API accepts {body} but the schema refuses it"),
                Err(codes) if schema_valid => prop_assert!(
                    codes.iter().all(|code| allowed.contains(&code.as_str())),
                    "the schema accepts {body} but the API refuses it: {codes:?}"
                ),
                Err(_) => {}
            }
        }
    }

    #[test]
    fn every_authenticated_operation_names_its_scope_and_errors() {
        let doc = document();
        let mut authenticated = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(use_case) = use_case(operation["operationId"].as_str().unwrap()) else {
                    assert!(operation["security"].is_null(), "{method} {path}");
                    continue;
                };
                authenticated += 1;
                let scope = operation["x-required-scope"].as_str().unwrap();
                assert_eq!(operation["security"], json!([{"bearer": [scope]}]));
                assert_eq!(
                    scope == "integrations.admin",
                    use_case.scope() == Scope::Admin
                );
                for status in ["401", "403", "429", "503"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} {status}"
                    );
                }
                assert!(operation["responses"]["429"]["headers"]["Retry-After"].is_object());
                if operation.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(
                            operation["responses"][status].is_object(),
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
        assert_eq!(authenticated, UseCase::ALL.len());
    }

    #[test]
    fn cross_field_rules_and_links_are_stated() {
        let doc = document();
        let put = &doc["paths"]["/api/v1/integrations/{id}"]["put"];
        assert_eq!(
            put["responses"]["428"]["x-cross-field-rules"],
            json!(["version_required"])
        );
        let created = &doc["paths"]["/api/v1/integrations"]["post"]["responses"]["201"];
        assert_eq!(created["links"]["get"]["operationId"], "getIntegration");
        assert_eq!(created["links"]["replace"]["requestBody"], "$response.body");
        // Every link names an operation of the document.
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        for link in created["links"].as_object().unwrap().values() {
            assert!(
                ids.contains(&link["operationId"].as_str().unwrap()),
                "{link}"
            );
        }
        let audit = validator(&doc, "AuditEntry");
        let creation = json!({"entryId": uuid::Uuid::nil(), "tenantId": "t", "sequence": 1,
            "actor": "a", "action": "integration.create", "targetType": "integration",
            "targetId": uuid::Uuid::nil(), "before": null, "after": {}, "reason": null,
            "ticket": null, "occurredAt": "2025-01-01T00:00:00Z", "prevHash": "0", "hash": "1"});
        assert!(audit.is_valid(&creation), "a creation's before is null");
    }
}
