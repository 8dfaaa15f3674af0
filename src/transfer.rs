//! Export and import of a tenant's integrations (DESIGN §12), for promotion between
//! environments: the `IntegrationList` document in JSON or YAML, the validation of its items,
//! and the plan of an import (pure), applied by the store in one transaction.
//!
//! Items match existing integrations by name: missing ones are created (as drafts, like a
//! `POST`), changed ones updated, equal ones left alone, so a second import of the same file
//! changes nothing. `replace` also deletes the integrations (of the scope's environment, when
//! one is set) that the file does not name. One invalid item and nothing changes.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::integration::{Author, Change, Integration, IntegrationSpec};
use crate::store::{ImportOp, ImportProgress, ListQuery, Store, StoreError};
use crate::validation::{self, FieldError, Rule, SpecRequest, SpecRules};
use catalogd_actors::Input;

pub const API_VERSION: &str = "catalogd/v1";
pub const KIND: &str = "IntegrationList";

/// The reason recorded when an import pauses an integration.
pub const PAUSE_REASON: &str = "paused by import";

/// The document: `{ apiVersion, kind, items }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[schema(example = "catalogd/v1")]
    pub api_version: String,
    #[schema(example = "IntegrationList")]
    pub kind: String,
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

/// One exported integration: its user-settable fields and whether it is paused.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportItem {
    #[serde(flatten)]
    spec: IntegrationSpec,
    paused: bool,
}

impl Document {
    /// The document of `integrations`; `names` gives the name of every integration of the
    /// tenant by id, so `dependsOn` is written by name (ids differ between environments).
    pub fn of(integrations: &[Integration], names: &HashMap<uuid::Uuid, String>) -> Self {
        let items = integrations
            .iter()
            .map(|i| {
                let mut item = serde_json::to_value(ExportItem {
                    spec: i.spec(),
                    paused: i.paused,
                })
                .unwrap_or(Value::Null);
                let depends_on: Vec<&str> = i
                    .depends_on
                    .iter()
                    .filter_map(|id| names.get(id).map(String::as_str))
                    .collect();
                item["dependsOn"] = serde_json::json!(depends_on);
                item
            })
            .collect();
        Document {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            items,
        }
    }
}

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// A document that could not be read, or whose items break rules (every error, each named by
/// its item's index and name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DocumentError {
    #[error("not a valid {0} document: {1}")]
    Syntax(&'static str, String),
    #[error("apiVersion must be catalogd/v1 and kind IntegrationList")]
    Kind,
    #[error("{} item errors", .0.len())]
    Items(Vec<FieldError>),
}

/// Reads a document. YAML is a superset of JSON, but JSON is read as JSON for its errors.
pub fn parse(bytes: &[u8], format: Format) -> Result<Document, DocumentError> {
    let document: Document = match format {
        Format::Json => serde_json::from_slice(bytes)
            .map_err(|e| DocumentError::Syntax("JSON", position(e.line(), e.column())))?,
        Format::Yaml => serde_yaml::from_slice(bytes).map_err(|e| {
            let at = e
                .location()
                .map_or(String::new(), |l| position(l.line(), l.column()));
            DocumentError::Syntax("YAML", at)
        })?,
    };
    if document.api_version != API_VERSION || document.kind != KIND {
        return Err(DocumentError::Kind);
    }
    Ok(document)
}

/// Where a syntax error is; never the text around it, which may hold a value.
fn position(line: usize, column: usize) -> String {
    format!("error at line {line}, column {column}")
}

pub fn render(document: &Document, format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec_pretty(document).unwrap_or_default(),
        Format::Yaml => serde_yaml::to_string(document)
            .unwrap_or_default()
            .into_bytes(),
    }
}

/// What an import changes on the way in: AuthRef mapping and the target environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// `from → to`: an item whose `authRef` is `from` gets `to`.
    pub auth_refs: BTreeMap<String, String>,
    /// Every item's `environment`; also the scope of `replace`.
    pub environment: Option<String>,
}

/// A validated item; `depends_on` names integrations (of the file or the tenant), resolved to
/// ids by [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub spec: IntegrationSpec,
    pub paused: bool,
    pub depends_on: Vec<String>,
}

/// Validates every item after the rewrite; every error is reported, its field a pointer into
/// the document (`/items/3/baseUrl`) and its detail naming the item.
pub fn items(
    document: Document,
    rewrite: &Rewrite,
    rules: &SpecRules<'_>,
) -> Result<Vec<Item>, DocumentError> {
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(document.items.len());
    let mut names = HashSet::new();
    for (index, raw) in document.items.into_iter().enumerate() {
        let name = raw
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default();
        let mut fail = |field: &str, rule: Rule, detail: String| {
            errors.push(FieldError::new(
                format!("/items/{index}{field}"),
                rule,
                format!("item {index} ({name:?}): {detail}"),
            ));
        };
        let Value::Object(mut object) = raw else {
            fail("", Rule::InvalidItem, "an item is a JSON object".into());
            continue;
        };
        let paused = match object.remove("paused") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(paused)) => paused,
            Some(_) => {
                fail(
                    "/paused",
                    Rule::InvalidItem,
                    "paused is true or false".into(),
                );
                false
            }
        };
        let depends_on: Vec<String> = match object.remove("dependsOn") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(names))
                if names.len() <= validation::MAX_DEPENDENCIES
                    && names.iter().all(Value::is_string) =>
            {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            }
            Some(_) => {
                fail(
                    "/dependsOn",
                    Rule::InvalidDependsOn,
                    format!(
                        "dependsOn is a list of at most {} integration names",
                        validation::MAX_DEPENDENCIES
                    ),
                );
                Vec::new()
            }
        };
        apply_rewrite(&mut object, rewrite);
        let request: SpecRequest = match serde_json::from_value(Value::Object(object)) {
            Ok(request) => request,
            Err(error) => {
                let detail = crate::app::decode::describe_serde_message(&error.to_string())
                    .unwrap_or_else(|| "a field has the wrong JSON type or value".into());
                fail("", Rule::InvalidItem, detail);
                continue;
            }
        };
        match validation::spec(request, rules) {
            Ok(spec) => {
                if !names.insert(spec.name.clone()) {
                    fail(
                        "/name",
                        Rule::InvalidName,
                        "another item has this name".into(),
                    );
                    continue;
                }
                items.push(Item {
                    spec,
                    paused,
                    depends_on,
                });
            }
            Err(field_errors) => {
                for e in field_errors {
                    fail(&e.field, e.rule, e.detail);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(DocumentError::Items(errors))
    }
}

fn apply_rewrite(item: &mut Map<String, Value>, rewrite: &Rewrite) {
    if let Some(Value::String(auth_ref)) = item.get("authRef") {
        if let Some(to) = rewrite.auth_refs.get(auth_ref) {
            item.insert("authRef".into(), Value::String(to.clone()));
        }
    }
    if let Some(environment) = &rewrite.environment {
        item.insert("environment".into(), Value::String(environment.clone()));
    }
}

/// `merge` leaves integrations the file does not name alone; `replace` deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Merge,
    Replace,
}

/// An updated integration in a plan, and which fields change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Updated {
    pub name: String,
    pub fields: Vec<String>,
}

/// What an import does (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanBody {
    pub created: Vec<String>,
    pub updated: Vec<Updated>,
    pub deleted: Vec<String>,
    pub unchanged: usize,
    /// Whether the changes were made (false for a dry run, and when there is nothing to do).
    pub applied: bool,
}

/// The plan of an import: the store operations, in order, and what they amount to.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub operations: Vec<ImportOp>,
    pub body: PlanBody,
}

/// Matches `items` with `existing` (the tenant's integrations) by name. Pure.
pub fn plan(
    existing: Vec<Integration>,
    items: Vec<Item>,
    mode: Mode,
    scope: Option<&str>,
    author: &Author,
    now: DateTime<Utc>,
) -> Result<Plan, DocumentError> {
    let named: HashSet<&str> = items.iter().map(|i| i.spec.name.as_str()).collect();
    let mut operations = Vec::new();
    let mut body = PlanBody::default();
    let mut errors = Vec::new();
    let mut deleted = Vec::new();
    let mut by_name: HashMap<String, Integration> = HashMap::new();
    for integration in existing {
        let in_scope = scope.is_none_or(|env| integration.environment.as_deref() == Some(env));
        if mode == Mode::Replace && in_scope && !named.contains(integration.name.as_str()) {
            deleted.push(integration);
        } else {
            by_name.insert(integration.name.clone(), integration);
        }
    }
    // Every integration of the catalog after the import, by name: the kept ones, and the new
    // ones with the ids they are created with, so `dependsOn` can name either.
    let mut new: HashMap<String, Integration> = HashMap::new();
    for item in &items {
        if !by_name.contains_key(&item.spec.name) {
            let integration =
                Integration::new(&author.tenant_id, item.spec.clone(), &author.subject, now);
            new.insert(item.spec.name.clone(), integration);
        }
    }
    let id_of = |name: &str| {
        by_name
            .get(name)
            .or_else(|| new.get(name))
            .map(|i| i.integration_id)
    };
    let mut items = items;
    let mut graph: HashMap<uuid::Uuid, Vec<uuid::Uuid>> = by_name
        .values()
        .map(|i| (i.integration_id, i.depends_on.clone()))
        .collect();
    for (index, item) in items.iter_mut().enumerate() {
        let mut resolved = Vec::new();
        for (n, name) in item.depends_on.iter().enumerate() {
            match id_of(name) {
                Some(id) if name != &item.spec.name => resolved.push(id),
                found => errors.push(FieldError::new(
                    format!("/items/{index}/dependsOn/{n}"),
                    if found.is_some() {
                        Rule::DependencyCycle
                    } else {
                        Rule::UnknownDependency
                    },
                    format!(
                        "item {index} ({:?}): {}",
                        item.spec.name,
                        if found.is_some() {
                            "an integration cannot depend on itself"
                        } else {
                            "no integration of this name in the file or the tenant"
                        }
                    ),
                )),
            }
        }
        item.spec.depends_on = resolved.clone();
        if let Some(id) = id_of(&item.spec.name) {
            graph.insert(id, resolved);
        }
    }
    for (index, item) in items.iter().enumerate() {
        let Some(start) = id_of(&item.spec.name) else {
            continue;
        };
        if reaches(&graph, start) {
            errors.push(FieldError::new(
                format!("/items/{index}/dependsOn"),
                Rule::DependencyCycle,
                format!(
                    "item {index} ({:?}): its dependencies depend on it, directly or through others",
                    item.spec.name
                ),
            ));
        }
    }
    for item in items {
        let Some(current) = by_name.get(&item.spec.name) else {
            let mut integration = new
                .remove(&item.spec.name)
                .expect("every new item has its integration");
            integration.depends_on = item.spec.depends_on.clone();
            body.created.push(item.spec.name.clone());
            operations.push(ImportOp::Create(Box::new(integration)));
            continue;
        };
        let mut fields = changed_fields(&current.spec(), &item.spec);
        if !fields.is_empty() {
            operations.push(ImportOp::Change(
                current.integration_id,
                Box::new(Change::Update {
                    expected_version: current.version,
                    spec: item.spec.clone(),
                }),
            ));
        }
        if item.paused != current.paused {
            if item.paused && current.lifecycle().status == catalogd_actors::Status::Draft {
                errors.push(FieldError::new(
                    "/items",
                    Rule::InvalidItem,
                    format!(
                        "item {:?}: a draft cannot be paused; submit it first",
                        item.spec.name
                    ),
                ));
                continue;
            }
            let (input, reason) = if item.paused {
                (Input::Pause, Some(PAUSE_REASON.to_owned()))
            } else {
                (Input::Resume, None)
            };
            operations.push(ImportOp::Change(
                current.integration_id,
                Box::new(Change::Lifecycle {
                    input,
                    reason,
                    ticket: None,
                }),
            ));
            fields.push("paused".to_owned());
        }
        if fields.is_empty() {
            body.unchanged += 1;
        } else {
            body.updated.push(Updated {
                name: item.spec.name.clone(),
                fields,
            });
        }
    }
    deleted.sort_by(|a, b| a.name.cmp(&b.name));
    for integration in deleted {
        body.deleted.push(integration.name.clone());
        operations.push(ImportOp::Change(
            integration.integration_id,
            Box::new(Change::Delete {
                expected_version: Some(integration.version),
            }),
        ));
    }
    if errors.is_empty() {
        Ok(Plan { operations, body })
    } else {
        Err(DocumentError::Items(errors))
    }
}

/// Whether `start` reaches itself through the dependency graph.
fn reaches(graph: &HashMap<uuid::Uuid, Vec<uuid::Uuid>>, start: uuid::Uuid) -> bool {
    let mut seen = HashSet::new();
    let mut stack: Vec<uuid::Uuid> = graph.get(&start).cloned().unwrap_or_default();
    while let Some(next) = stack.pop() {
        if next == start {
            return true;
        }
        if seen.insert(next) {
            stack.extend(graph.get(&next).into_iter().flatten());
        }
    }
    false
}

/// The user-settable fields that differ, by their JSON names.
fn changed_fields(current: &IntegrationSpec, next: &IntegrationSpec) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(current), serde_json::to_value(next))
    else {
        return vec!["*".to_owned()];
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|key| a.get(*key).unwrap_or(&Value::Null) != b.get(*key).unwrap_or(&Value::Null))
        .cloned()
        .collect()
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every integration of the tenant, in name order (the export's order), filtered by `query`.
pub async fn tenant_integrations(
    store: &dyn Store,
    tenant_id: &str,
    mut query: ListQuery,
) -> Result<Vec<Integration>, StoreError> {
    query.limit = 500;
    query.after = None;
    let mut all = Vec::new();
    loop {
        let page = store.list(tenant_id, &query).await?;
        query.after = page
            .items
            .last()
            .map(|i| (i.name.clone(), i.integration_id));
        all.extend(page.items);
        if !page.has_more {
            return Ok(all);
        }
    }
}

/// The export of the tenant's integrations that `query` selects (`dependsOn` by name, from
/// the whole tenant).
pub async fn export(
    store: &dyn Store,
    tenant_id: &str,
    query: ListQuery,
) -> Result<Document, StoreError> {
    let filtered = query.kind.is_some() || query.environment.is_some() || query.tag.is_some();
    let selected = tenant_integrations(store, tenant_id, query).await?;
    let all = if filtered {
        tenant_integrations(store, tenant_id, ListQuery::default()).await?
    } else {
        selected.clone()
    };
    let names = all
        .into_iter()
        .map(|i| (i.integration_id, i.name))
        .collect();
    Ok(Document::of(&selected, &names))
}

/// What an import did: its plan, and the integrations the engine must hear of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub plan: PlanBody,
    /// Created or changed.
    pub changed: Vec<uuid::Uuid>,
    pub deleted: Vec<uuid::Uuid>,
}

/// Validates, plans and (unless `dry_run`) applies an import for `author`'s tenant, in one
/// transaction.
#[allow(clippy::too_many_arguments)]
pub async fn import(
    store: &dyn Store,
    rules: &SpecRules<'_>,
    author: &Author,
    document: Document,
    rewrite: &Rewrite,
    mode: Mode,
    dry_run: bool,
    now: DateTime<Utc>,
    progress: &ImportProgress,
) -> Result<Imported, ImportError> {
    let items = items(document, rewrite, rules)?;
    let existing = tenant_integrations(store, &author.tenant_id, ListQuery::default()).await?;
    let Plan {
        operations,
        mut body,
    } = plan(
        existing,
        items,
        mode,
        rewrite.environment.as_deref(),
        author,
        now,
    )?;
    let mut imported = Imported::default();
    if !dry_run && !operations.is_empty() {
        for operation in &operations {
            match operation {
                ImportOp::Create(integration) => imported.changed.push(integration.integration_id),
                ImportOp::Change(id, change) if matches!(**change, Change::Delete { .. }) => {
                    imported.deleted.push(*id)
                }
                ImportOp::Change(id, _) => imported.changed.push(*id),
            }
        }
        imported.changed.dedup();
        progress.total.store(
            operations.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        store
            .import_counted(author, operations, now, progress)
            .await?;
        body.applied = true;
    }
    imported.plan = body;
    Ok(imported)
}
