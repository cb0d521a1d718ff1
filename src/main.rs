//! The `dispatch-api` binary: a thin command-line front over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dispatch_api::config::{Config, ServeConfig};
use dispatch_api::domain::Role;
use dispatch_api::{cli, server, telemetry};

/// mimalloc instead of glibc's malloc: under the command load glibc's
/// allocator took about a fifth of the service's CPU (`malloc`, `free`,
/// `malloc_consolidate`); docs/benchmarks.md item 30.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dispatch-api: the event-sourced enforcement service between an AI dispatch
/// agent and a door-service company's operations.
#[derive(Parser)]
#[command(name = "dispatch-api", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (creates the database and migrates by itself).
    Serve(Box<ServeConfig>),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Verify hash chains.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Read models: status and rebuilds.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Events out: NATS JetStream and webhook subscriptions.
    Subscriptions {
        #[command(subcommand)]
        command: SubscriptionsCommand,
    },
    /// Validate the SOP library and exit.
    Sops {
        #[command(subcommand)]
        command: SopsCommand,
    },
    /// The registry: customers, sites, doors.
    Registry {
        #[command(subcommand)]
        command: RegistryCliCommand,
    },
}

#[derive(Subcommand)]
enum RegistryCliCommand {
    /// Import customers, sites and doors from a CSV file (docs/registry-import.md):
    /// all rows or none; exit 1 listing every problem by line and column.
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
        /// Check and apply everything, then roll back.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; prints the key alone on stdout, once.
    Create {
        /// agent, dispatcher, technician, auditor or admin.
        #[arg(long)]
        role: String,
        /// A unique name (recorded as the actor on every event).
        #[arg(long)]
        name: String,
        /// The technician a technician key is bound to.
        #[arg(long)]
        technician: Option<String>,
    },
    /// Revoke a key by name.
    Revoke {
        /// The key's name.
        name: String,
    },
    /// Every key, active and revoked: name, role, technician, created,
    /// revoked (never the key or its hash).
    List {
        /// One JSON document (`schemas/cli/keys_list.schema.json`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify one job's chain, or every stream with --all (one pass over the
    /// store on every core). Prints what failed and a summary. Exit 0: all
    /// verified; 1: something failed; 2: could not run.
    Verify {
        /// The job id.
        job_id: Option<String>,
        /// Every stream in the store.
        #[arg(long, conflicts_with = "job_id")]
        all: bool,
        /// List every stream, not only the failures.
        #[arg(long, short)]
        verbose: bool,
        /// One JSON document (`schemas/cli/audit_verify.schema.json`).
        #[arg(long)]
        json: bool,
        /// Connections scanning the store with --all, each its own range
        /// (default: one per four cores).
        #[arg(long, requires = "all", value_parser = clap::value_parser!(u16).range(1..=64))]
        connections: Option<u16>,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Each read model: version, position, lag, live or rebuilding.
    Status {
        /// One JSON document (the shape of `GET /v1/projections`).
        #[arg(long)]
        json: bool,
    },
    /// Rebuild read models from the event stream into shadow tables and swap
    /// them in when caught up; the serving tables keep answering meanwhile.
    /// Without --wait, returns once requested (the service builds them).
    Rebuild {
        /// The read model (board, billing_readiness, technicians, technician_schedule, approvals, …).
        name: Option<String>,
        /// Every read model.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Work the rebuild here too and return only once swapped in
        /// (exit 1 with the reason if it was superseded or stalled).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds without progress.
        #[arg(long, default_value_t = 120, requires = "wait")]
        timeout: u64,
        /// One JSON document (`schemas/cli/projections_rebuild.schema.json`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SubscriptionsCommand {
    /// Each subscription: position, lag, last error; and the replica delivering them.
    Status {
        /// One JSON document (the shape of `GET /v1/subscriptions`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SopsCommand {
    /// Load and validate every SOP file.
    Check,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Spans are exported by `serve` only (OTEL_EXPORTER_OTLP_ENDPOINT).
    let traces = match &cli.command {
        Command::Serve(serve) => serve.traces(),
        _ => None,
    };
    let telemetry = match telemetry::init(&cli.config.log_format, traces.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(serve) => {
            // The service exits 1 when it cannot start or stops on an error
            // (after the telemetry below has sent its last spans).
            let served = server::serve(&cli.config, &serve).await;
            telemetry.shutdown().await;
            return match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Migrate => cli::migrate(&cli.config).await.map(|_| ExitCode::SUCCESS),
        Command::Keys {
            command:
                KeysCommand::Create {
                    role,
                    name,
                    technician,
                },
        } => match Role::parse(&role) {
            Some(r) if r != Role::System => {
                cli::create_key(&cli.config, r, &name, technician.as_deref())
                    .await
                    .map(|_| ExitCode::SUCCESS)
            }
            _ => Err(anyhow::anyhow!(
                "--role must be one of agent, dispatcher, technician, auditor, admin"
            )),
        },
        Command::Keys {
            command: KeysCommand::Revoke { name },
        } => cli::revoke_key(&cli.config, &name)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Keys {
            command: KeysCommand::List { json },
        } => cli::list_keys(&cli.config, json)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    job_id,
                    all,
                    verbose,
                    json,
                    connections,
                },
        } => {
            let args = cli::VerifyArgs {
                job_id,
                all,
                verbose,
                json,
                connections: connections.map(usize::from),
            };
            cli::audit_verify(&cli.config, &args).await
        }
        Command::Projections {
            command: ProjectionsCommand::Status { json },
        } => cli::projections_status(&cli.config, json)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Projections {
            command:
                ProjectionsCommand::Rebuild {
                    name,
                    all,
                    wait,
                    timeout,
                    json,
                },
        } => {
            let args = cli::RebuildArgs {
                name,
                all,
                wait,
                json,
                timeout: std::time::Duration::from_secs(timeout),
            };
            cli::projections_rebuild(&cli.config, &args).await
        }
        Command::Subscriptions {
            command: SubscriptionsCommand::Status { json },
        } => cli::subscriptions_status(&cli.config, json)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Sops {
            command: SopsCommand::Check,
        } => cli::sops_check(&cli.config).map(|_| ExitCode::SUCCESS),
        Command::Registry {
            command: RegistryCliCommand::Import { file, dry_run },
        } => cli::registry_import(&cli.config, &file, dry_run).await,
    };
    telemetry.shutdown().await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Could not run (docs/08, "Exit codes"); clap's usage errors
            // exit 2 as well.
            ExitCode::from(cli::EXIT_COULD_NOT_RUN)
        }
    }
}
