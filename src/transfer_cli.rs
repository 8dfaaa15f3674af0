//! `catalogd export` and `catalogd import` (DESIGN §12) on the configured database: the
//! document to and from a file, the plan printed as a readable diff, and a progress bar on a
//! terminal while the import is applied.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{ExportArgs, FormatArg, ImportArgs, ModeArg};
use crate::config::Config;
use crate::connectors::Connectors;
use crate::integration::Author;
use crate::store::{self, ImportProgress, ListQuery};
use crate::transfer::{self, DocumentError, Format, ImportError, Mode, PlanBody, Rewrite};
use crate::validation::SpecRules;

pub async fn export(config: &Config, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = store::open(&crate::startup::store_options(config)?).await?;
    let query = ListQuery {
        environment: args.environment,
        ..ListQuery::default()
    };
    let document = transfer::export(store.as_ref(), &args.tenant, query).await?;
    let format = match args.format {
        FormatArg::Yaml => Format::Yaml,
        FormatArg::Json => Format::Json,
    };
    let bytes = transfer::render(&document, format);
    match args.output {
        Some(path) => {
            std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(&bytes)?,
    }
    eprintln!(
        "exported {} integrations of tenant {}",
        document.items.len(),
        args.tenant
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn import(config: &Config, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let (bytes, format) = read_document(&args.file)?;
    let document = match transfer::parse(&bytes, format) {
        Ok(document) => document,
        Err(error) => {
            eprintln!("catalogd import: {}: {error}", args.file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let store = store::open(&crate::startup::store_options(config)?).await?;
    let connectors = Connectors::new(
        &config.egress,
        &config.offline,
        &config.plugins,
        &config.secrets,
        std::sync::Arc::new(catalogd_actors::SystemClock),
    )?;
    let providers = connectors.providers();
    let rules = SpecRules {
        providers: &providers,
        default_interval_seconds: config.monitor.interval.as_secs().max(1) as u32,
        default_thresholds: config.monitor.thresholds(),
    };
    let rewrite = Rewrite {
        auth_refs: args.map_authref.into_iter().collect(),
        environment: args.set_environment,
    };
    let mode = match args.mode {
        ModeArg::Merge => Mode::Merge,
        ModeArg::Replace => Mode::Replace,
    };
    let author = Author {
        tenant_id: args.tenant.clone(),
        subject: args.subject,
    };
    let items = document.items.len() as u64;
    // On a terminal, a bar of the operations written (the plan's creations, changes and
    // deletions); they commit together at the end, so a full bar is then committing.
    let progress = std::sync::Arc::new(ImportProgress::default());
    let bar = (std::io::stderr().is_terminal() && !args.dry_run).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("planning {items} items for tenant {}", args.tenant));
        bar.enable_steady_tick(Duration::from_millis(100));
        let shown = bar.clone();
        let progress = progress.clone();
        let tenant = args.tenant.clone();
        let ticker = tokio::spawn(async move {
            use std::sync::atomic::Ordering::Relaxed;
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            loop {
                interval.tick().await;
                let total = progress.total.load(Relaxed);
                if total == 0 {
                    continue;
                }
                let done = progress.done.load(Relaxed);
                if shown.length() != Some(total) {
                    shown.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})",
                        )
                        .expect("a valid template")
                        .progress_chars("=> "),
                    );
                    shown.set_length(total);
                }
                shown.set_position(done);
                shown.set_message(if done < total {
                    format!("importing into tenant {tenant}")
                } else {
                    "committing".to_owned()
                });
            }
        });
        (bar, ticker)
    });
    let result = transfer::import(
        store.as_ref(),
        &rules,
        &author,
        document,
        &rewrite,
        mode,
        args.dry_run,
        chrono::Utc::now(),
        &progress,
    )
    .await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    match result {
        Ok(imported) => {
            print!("{}", diff(&imported.plan));
            println!("{}", summary(&imported.plan, args.dry_run));
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Document(DocumentError::Items(errors))) => {
            for error in &errors {
                eprintln!("{}: {} ({})", error.field, error.detail, error.rule.code());
            }
            eprintln!("nothing was imported: {} errors", errors.len());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("catalogd import: {error}; nothing was imported");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read_document(path: &std::path::Path) -> anyhow::Result<(Vec<u8>, Format)> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        return Ok((bytes, Format::Yaml));
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Format::Json,
        _ => Format::Yaml,
    };
    Ok((bytes, format))
}

/// The plan as a diff: `+` created, `~` updated (with its fields), `-` deleted.
pub fn diff(plan: &PlanBody) -> String {
    let mut out = String::new();
    for name in &plan.created {
        out.push_str(&format!("+ {name}\n"));
    }
    for updated in &plan.updated {
        out.push_str(&format!(
            "~ {} ({})\n",
            updated.name,
            updated.fields.join(", ")
        ));
    }
    for name in &plan.deleted {
        out.push_str(&format!("- {name}\n"));
    }
    out
}

pub fn summary(plan: &PlanBody, dry_run: bool) -> String {
    let (created, updated, deleted) = (plan.created.len(), plan.updated.len(), plan.deleted.len());
    let unchanged = plan.unchanged;
    if dry_run {
        format!(
            "dry run: {created} to create, {updated} to update, {deleted} to delete, \
             {unchanged} unchanged; nothing was changed"
        )
    } else if plan.applied {
        format!(
            "imported: {created} created, {updated} updated, {deleted} deleted, \
             {unchanged} unchanged"
        )
    } else {
        format!("nothing to change: {unchanged} unchanged")
    }
}
