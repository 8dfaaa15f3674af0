//! The integration collection and its items: list, get, create, update (a full replacement
//! of the user-settable fields) and delete, with their requests.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::cursor::{self, ListCursor};
use super::decode::from_json_value;
use super::{author, require, App, AppError, UseCase};
use crate::auth::Principal;
use crate::integration::{Change, Integration, IntegrationType};
use crate::providers::ProviderRegistry;
use crate::store::{JsonPage, ListQuery};
use crate::validation::{self, FieldError, Rule, SpecRequest};

/// Fields of the resource that only the server sets. A replace body may carry them, as a GET
/// returned them, and they are ignored.
pub const READ_ONLY_FIELDS: &[&str] = &[
    "tenantId",
    "status",
    "paused",
    "pauseReason",
    "pauseTicket",
    "lastTestedAt",
    "lastTestSuccess",
    "consecutiveFailures",
    "createdAt",
    "createdBy",
    "modifiedAt",
    "modifiedBy",
    "suppressedBy",
    "flapping",
    "maintenance",
];

/// Filters and paging of the integration list. Every value is checked by
/// [`crate::validation`]; unknown parameters are refused.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only integrations of this type (the seed's spellings, such as `Registry` or `SCM`,
    /// are accepted too).
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<IntegrationType>)]
    pub kind: Option<String>,
    /// Only integrations of this provider (in any case, with or without `-`/`_`).
    pub provider: Option<String>,
    /// Only integrations in this lifecycle status (`draft`, `pending_verification`, `active`,
    /// `degraded`, `failed`, `paused`; the seed's spellings such as `PendingVerification` too).
    pub status: Option<String>,
    /// Only integrations in this environment.
    pub environment: Option<String>,
    /// Only integrations carrying this tag.
    pub tag: Option<String>,
    /// Only integrations whose name starts with this prefix.
    pub q: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of the integration list, already JSON: what serializing a
/// `PageBody<Integration>` gives (`{"items":[…],"nextCursor":…}`), around the items exactly as
/// the database assembled them. They are never parsed here: at a page of 100 that parse and
/// the serialization after it cost more than the query (bench F8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListBody(Bytes);

impl ListBody {
    fn new(page: JsonPage) -> Self {
        let next_cursor = page
            .next
            .map(|(name, id)| cursor::encode(&ListCursor { name, id }));
        let mut body = Vec::with_capacity(page.items.len() + 96);
        body.extend_from_slice(b"{\"items\":[");
        body.extend_from_slice(page.items.as_bytes());
        body.extend_from_slice(b"],\"nextCursor\":");
        match next_cursor {
            // Base64url: nothing in it needs escaping.
            Some(cursor) => {
                body.push(b'"');
                body.extend_from_slice(cursor.as_bytes());
                body.push(b'"');
            }
            None => body.extend_from_slice(b"null"),
        }
        body.push(b'}');
        ListBody(Bytes::from(body))
    }

    /// The JSON text.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

/// The body of a replace: every user-settable field (absent optional fields are cleared),
/// plus the expected `version` unless `If-Match` carries it. The server-set fields of the
/// resource may be sent back unchanged and are ignored; `integrationId` must match the path.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRequest {
    #[serde(flatten)]
    pub spec: SpecRequest,
    /// The version being replaced, if not given in `If-Match`.
    pub version: Option<i64>,
    #[schema(value_type = Option<Uuid>)]
    pub integration_id: Option<String>,
}

impl UpdateRequest {
    /// Splits a replace body into the spec, the version and the id; the read-only fields are
    /// dropped first so that the spec still refuses any other unknown field.
    fn from_body(mut body: Map<String, Value>) -> Result<Self, AppError> {
        let integration_id = match body.remove("integrationId") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id),
            Some(_) => {
                return Err(AppError::InvalidBody(
                    "integrationId must be a string.".into(),
                ))
            }
        };
        let version = match body.remove("version") {
            None | Some(Value::Null) => None,
            // JSON Schema's integer includes integral floats (`3.0`).
            Some(value) => Some(
                value
                    .as_i64()
                    .or_else(|| {
                        value
                            .as_f64()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                            .map(|f| f as i64)
                    })
                    .ok_or_else(|| AppError::InvalidBody("version must be an integer.".into()))?,
            ),
        };
        for field in READ_ONLY_FIELDS {
            body.remove(*field);
        }
        Ok(UpdateRequest {
            spec: from_json_value(Value::Object(body))?,
            version,
            integration_id,
        })
    }

    /// The version to check: `If-Match` or the body's, which must agree when both are sent.
    fn expected_version(&self, if_match: Option<i64>) -> Result<i64, AppError> {
        match (if_match, self.version) {
            (Some(header), Some(body)) if header != body => Err(AppError::VersionMismatch(
                "If-Match and the body's version disagree.".into(),
            )),
            (Some(version), _) | (None, Some(version)) => Ok(version),
            (None, None) => Err(AppError::VersionRequired),
        }
    }

    /// `id_mismatch` when the body names another integration than the path.
    fn id_error(&self, path_id: Uuid) -> Option<FieldError> {
        let body_id = self.integration_id.as_deref()?;
        (Uuid::try_parse(body_id).ok() != Some(path_id)).then(|| {
            FieldError::new(
                "/integrationId",
                Rule::IdMismatch,
                "integrationId does not match the id in the path",
            )
        })
    }
}

impl App {
    /// The tenant's integrations, filtered, ordered by name then id, one page at a time.
    pub async fn list(
        &self,
        principal: &Principal,
        params: ListParams,
    ) -> Result<ListBody, AppError> {
        require(principal, UseCase::List)?;
        let query = list_query(params, &self.providers)?;
        let page = self.store.list_json(&principal.tenant_id, &query).await?;
        Ok(ListBody::new(page))
    }

    /// One integration of the caller's tenant.
    pub async fn get(&self, principal: &Principal, id: Uuid) -> Result<Integration, AppError> {
        require(principal, UseCase::Get)?;
        self.store
            .get(&principal.tenant_id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// Creates an integration, as a draft, in the caller's tenant.
    pub async fn create(
        &self,
        principal: &Principal,
        request: SpecRequest,
    ) -> Result<Integration, AppError> {
        require(principal, UseCase::Create)?;
        let spec = validation::spec(request, &self.spec_rules()).map_err(AppError::Validation)?;
        self.check_dependencies(&principal.tenant_id, None, &spec.depends_on)
            .await?;
        let integration = Integration::new(
            &principal.tenant_id,
            spec,
            &principal.subject,
            self.clock.now(),
        );
        self.store.create(&integration).await?;
        self.engine.changed(integration.integration_id, false);
        Ok(integration)
    }

    /// Replaces the user-settable fields of integration `id` with `body` (an
    /// [`UpdateRequest`] as JSON), at the version `if_match` or the body names.
    pub async fn update(
        &self,
        principal: &Principal,
        id: Uuid,
        if_match: Option<i64>,
        body: Map<String, Value>,
    ) -> Result<Integration, AppError> {
        require(principal, UseCase::Update)?;
        let request = UpdateRequest::from_body(body)?;
        let expected_version = request.expected_version(if_match)?;
        let mut errors: Vec<FieldError> = request.id_error(id).into_iter().collect();
        let spec = match validation::spec(request.spec, &self.spec_rules()) {
            Ok(spec) if errors.is_empty() => spec,
            Ok(_) => return Err(AppError::Validation(errors)),
            Err(spec_errors) => {
                errors.extend(spec_errors);
                return Err(AppError::Validation(errors));
            }
        };
        self.check_dependencies(&principal.tenant_id, Some(id), &spec.depends_on)
            .await?;
        let change = Change::Update {
            expected_version,
            spec,
        };
        let now = self.clock.now();
        match self
            .store
            .change(&author(principal), id, change, now)
            .await?
        {
            Some(integration) => {
                self.engine.changed(id, false);
                Ok(integration)
            }
            None => {
                tracing::error!(%id, "store returned no row for an update");
                Err(AppError::Internal)
            }
        }
    }

    /// Deletes integration `id`, at `expected_version` if one is given.
    pub async fn delete(
        &self,
        principal: &Principal,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<(), AppError> {
        require(principal, UseCase::Delete)?;
        let change = Change::Delete { expected_version };
        let now = self.clock.now();
        self.store
            .change(&author(principal), id, change, now)
            .await?;
        self.engine.deleted(id);
        Ok(())
    }
}

impl App {
    /// `dependsOn` (DESIGN §10): every id names an integration of the tenant (another
    /// tenant's id answers like an unknown one), and none of them depends, directly or
    /// through others, on `id` (the integration being replaced), so the graph has no cycle.
    ///
    /// The check reads the graph as it is now; two concurrent updates could still close a
    /// cycle between them. The engine's suppression is computed with a visited set, so such a
    /// cycle can neither loop nor keep a suppression alive (see `catalogd_actors::dependencies`).
    async fn check_dependencies(
        &self,
        tenant_id: &str,
        id: Option<Uuid>,
        depends_on: &[Uuid],
    ) -> Result<(), AppError> {
        let mut errors = Vec::new();
        let mut frontier = Vec::new();
        for (index, dependency) in depends_on.iter().enumerate() {
            let field = format!("/dependsOn/{index}");
            if Some(*dependency) == id {
                errors.push(FieldError::new(
                    field,
                    Rule::DependencyCycle,
                    "an integration cannot depend on itself",
                ));
                continue;
            }
            match self.store.get(tenant_id, *dependency).await? {
                Some(found) => frontier.push((index, found.depends_on)),
                None => errors.push(FieldError::new(
                    field,
                    Rule::UnknownDependency,
                    "no integration with this id in the tenant",
                )),
            }
        }
        if let Some(id) = id {
            // Walk each dependency's own dependencies; reaching `id` closes a cycle. Each
            // integration is read at most once per request.
            let mut seen = std::collections::HashSet::new();
            for (index, next) in frontier {
                let mut stack = next;
                while let Some(current) = stack.pop() {
                    if current == id {
                        errors.push(FieldError::new(
                            format!("/dependsOn/{index}"),
                            Rule::DependencyCycle,
                            "this dependency depends on this integration, directly or through others",
                        ));
                        break;
                    }
                    if !seen.insert(current) {
                        continue;
                    }
                    if let Some(found) = self.store.get(tenant_id, current).await? {
                        stack.extend(found.depends_on);
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(errors))
        }
    }
}

fn list_query(params: ListParams, providers: &ProviderRegistry) -> Result<ListQuery, AppError> {
    let after = params
        .cursor
        .as_deref()
        .map(cursor::decode::<ListCursor>)
        .transpose()?;
    if after
        .as_ref()
        .is_some_and(|position| !validation::is_possible_name(&position.name))
    {
        return Err(AppError::InvalidCursor);
    }
    Ok(ListQuery {
        kind: validation::kind_filter(params.kind.as_deref())?,
        provider: validation::provider_filter(params.provider, providers)?,
        status: validation::status_filter(params.status.as_deref())?,
        environment: validation::text_filter("environment", params.environment)?,
        tag: validation::text_filter("tag", params.tag)?,
        name_prefix: validation::text_filter("q", params.q)?,
        after: after.map(|position| (position.name, position.id)),
        limit: validation::limit(params.limit.as_deref())?,
    })
}
