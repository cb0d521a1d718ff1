//! The `dispatch-bench` binary: a thin command-line front over the library.

use std::process::ExitCode;

use clap::Parser;
use dispatch_api::config::Config;
use dispatch_bench::BenchArgs;

/// dispatch-bench: measures every performance figure of dispatch-api against
/// same-run baselines and writes them to docs/benchmarks.md.
#[derive(Parser)]
#[command(name = "dispatch-bench", version, about)]
struct Cli {
    /// The service's settings (the database server, the SOP library, the
    /// pool sizes the service under test gets).
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    bench: BenchArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    dispatch_api::telemetry::init_logs(&cli.config.log_format);
    match dispatch_bench::run(&cli.config, cli.bench).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
