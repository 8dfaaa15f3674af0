//! The `catalogd` command line: `serve` (the default), `migrate`, `token`, `audit verify`,
//! `export` and `import` (DESIGN §12; they work on the configured database directly, as
//! `audit verify` does, so a running daemon picks their changes up at its next reconcile).
//!
//! `--config FILE` is global, so it is accepted before or after the subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::startup::{self, Application};
use crate::store;

const CONFIG_HELP: &str = concat!(
    "CONFIGURATION:\n",
    "  Built-in defaults, then the TOML file (--config FILE, else config/catalogd.toml when it\n",
    "  exists), then environment overrides CATALOGD__SECTION__KEY, for example\n",
    "  CATALOGD__DATABASE__URL=postgres://catalogd@db/catalogd or CATALOGD__HTTP__LISTEN=0.0.0.0:8080.\n",
    "  Unknown keys are an error. Secrets are read from files or environment variables named in\n",
    "  the configuration, never written in it. Every key, with its default:\n\n",
    include_str!("../config/catalogd.toml")
);

#[derive(Debug, Parser)]
#[command(name = "catalogd", version, about = "Integration Catalog daemon", after_long_help = CONFIG_HELP)]
pub struct Cli {
    /// Configuration file (TOML). Defaults to config/catalogd.toml when it exists.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default when no subcommand is given).
    #[command(after_long_help = CONFIG_HELP)]
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a bearer token signed with the configured key.
    Token(TokenArgs),
    /// Audit trail tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Lifecycle events on NATS.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Write a tenant's integrations as an IntegrationList document (JSON or YAML).
    Export(ExportArgs),
    /// Apply an IntegrationList document to a tenant, all or nothing.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The tenant to export.
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Only integrations of this environment.
    #[arg(long)]
    pub environment: Option<String>,
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: FormatArg,
    /// Write here instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The document (JSON or YAML, by extension; `-` is standard input, read as YAML).
    pub file: PathBuf,
    /// The tenant to import into.
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Print the plan as a diff and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `replace` also deletes the integrations (of --set-environment, when given) that the
    /// file does not name.
    #[arg(long, value_enum, default_value = "merge")]
    pub mode: ModeArg,
    /// Rewrite an AuthRef on the way in: FROM=TO (repeatable).
    #[arg(long = "map-authref", value_name = "FROM=TO", value_parser = parse_mapping)]
    pub map_authref: Vec<(String, String)>,
    /// Put every item into this environment (promotion: dev → staging).
    #[arg(long)]
    pub set_environment: Option<String>,
    /// Recorded as the actor of every change in the audit trail.
    #[arg(long, default_value = "catalogd-cli")]
    pub subject: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Merge,
    Replace,
}

fn parse_mapping(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_owned(), to.to_owned()))
        }
        _ => Err("expected FROM=TO".into()),
    }
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Tenant the token is for.
    #[arg(long)]
    pub tenant: String,
    /// Scope to grant (integrations.read, integrations.admin); repeat for several.
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// The token's subject, recorded as creator, modifier and actor in the audit trail.
    #[arg(long, default_value = "catalogd-cli")]
    pub subject: String,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the audit hash chains; exits non-zero and names the first bad entry on tamper.
    Verify {
        /// Verify only this tenant's chain.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as they are published, one readable line each (uses `[nats]`).
    Watch(crate::watch::WatchArgs),
}

/// Exit code of `audit verify` when a chain is broken (1 is any other error).
pub const EXIT_TAMPERED: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("catalogd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            crate::telemetry::init(&config.log);
            runtime.block_on(async {
                let app = Application::build(&config).await?;
                app.run_until_stopped(startup::shutdown_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            runtime.block_on(store::open(&startup::store_options(&config)?))?;
            println!("migrations applied to {}", redact_url(&config.database.url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(args) => {
            let auth = Authenticator::from_config(&config.auth)?;
            let token = auth.mint(
                &args.tenant,
                &args.subject,
                &args.scopes,
                args.ttl,
                chrono::Utc::now(),
            )?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Events(EventsCommand::Watch(args)) => {
            runtime.block_on(crate::watch::run(&config.nats, &args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => runtime.block_on(crate::transfer_cli::export(&config, args)),
        Command::Import(args) => runtime.block_on(crate::transfer_cli::import(&config, args)),
        Command::Audit(AuditCommand::Verify { tenant }) => runtime.block_on(async {
            let store = store::open(&startup::store_options(&config)?).await?;
            let report = store.verify_audit(tenant.as_deref()).await?;
            match report.problem {
                None => {
                    println!(
                        "audit chain intact: {} entries across {} tenants",
                        report.entries, report.tenants
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(problem) => {
                    println!("audit chain BROKEN: {problem}");
                    Ok(ExitCode::from(EXIT_TAMPERED))
                }
            }
        }),
    }
}

/// The database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
