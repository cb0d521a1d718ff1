//! `dispatch-api registry import FILE.csv [--dry-run]`.

use std::process::ExitCode;

use anyhow::Context;

use super::progress::Progress;
use super::{keyring, pool, EXIT_FAILED};
use crate::app::evidence::EvidenceStore;
use crate::app::registry::import::{import_with_progress, ImportError};
use crate::app::App;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::domain::policy::DispatchPolicy;
use crate::domain::sop::SopLibrary;

/// Prints one line per problem (exit 1, nothing written) or the summary;
/// a bar on a terminal while the rows are applied.
pub async fn registry_import(
    config: &Config,
    file: &std::path::Path,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let chain = keyring(config)?;
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let sops = SopLibrary::load(&config.sops_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (pool, _database) = pool(config).await?;
    let app = App {
        chain: std::sync::Arc::new(chain),
        checkpoints: crate::app::checkpoints::Checkpoints::default(),
        sops: std::sync::Arc::new(sops),
        policy: std::sync::Arc::new(DispatchPolicy::default()),
        clock: std::sync::Arc::new(SystemClock),
        // An import stores no evidence: nothing is made under the data folder.
        evidence: EvidenceStore::in_memory(),
        jobs: crate::app::cache::JobCache::new(config.job_cache_size),
        keys: crate::app::KnownKeys::new(config.job_cache_size),
        writer: crate::store::Writer::start(&pool, 1),
        invocations: crate::tools::log::InvocationLog::start(&pool),
        pool,
    };
    let progress = Progress::new("importing", "rows");
    let tell = |done: usize, total: usize| {
        progress.set_length(total as u64);
        progress.set_position(done as u64);
    };
    let result = import_with_progress(&app, input, dry_run, &tell).await;
    progress.finish();
    match result {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Refused(problems)) => {
            for p in &problems {
                println!("{p}");
            }
            println!(
                "{} problem(s) in {}; nothing written",
                problems.len(),
                file.display()
            );
            Ok(ExitCode::from(EXIT_FAILED))
        }
        Err(e) => Err(e.into()),
    }
}
