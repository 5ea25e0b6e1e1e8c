//! The `tidemill` binary: parses the command line and hands over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tidemill::config::{Settings, DEFAULT_FILE};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: the pipeline allocates per record on the
/// poll thread and frees on the writer, where glibc's arenas were ~45% of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kafka → transform → PostgreSQL/SQLite, committing offsets only after the database has the rows.
#[derive(Parser)]
#[command(name = "tidemill", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines the config declares until SIGTERM/SIGINT.
    Run {
        /// Config file (TOML), layered over config/default.toml and under TIDEMILL__* variables.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config, connect to Kafka and each database, check each table; report every problem.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the main job on an embedded default: in-process Kafka, generated events, SQLite.
    Demo {
        /// Number of events to generate.
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// SQLite file to load into (recreated).
        #[arg(long, default_value = "target/demo/tidemill-demo.db")]
        db: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tidemill: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidemill: {}", said_once(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: tidemill's errors already
/// include their source's message, so the plain chain would repeat it.
fn said_once(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => run(&config).await,
        Command::Check { config } => check(&config).await,
        Command::Demo { records, db } => {
            let telemetry = tidemill::config::TelemetryConfig {
                log_level: "warn".into(),
                ..Default::default()
            };
            let _guard = tidemill::observe::telemetry::init(&telemetry)?;
            tidemill::demo::run(records, &db).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn defaults() -> Option<&'static Path> {
    Some(Path::new(DEFAULT_FILE))
}

async fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let settings = tidemill::check::load(config, defaults())?;
    let _guard = tidemill::observe::telemetry::init(&settings.telemetry)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(forward_signals(shutdown.clone()));
    tidemill::pipeline::run_all(&settings, shutdown)
        .await
        .context("pipeline stopped with an error")?;
    Ok(ExitCode::SUCCESS)
}

async fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let settings = match Settings::load_unvalidated(config, defaults()) {
        Ok(s) => s,
        Err(e) => {
            println!("✗ {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let problems = tidemill::check::check(&settings).await;
    if problems.is_empty() {
        println!(
            "✓ {}: {} pipeline(s) ready",
            config.display(),
            settings.pipelines.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("✗ {}: {} problem(s)", config.display(), problems.len());
    for p in &problems {
        println!("  - {p}");
    }
    Ok(ExitCode::FAILURE)
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn forward_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; flushing");
    shutdown.cancel();
}
