//! The `switchyard` command: parses the command line, sets up logging and
//! signals, and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use switchyard::Config;
use switchyard::plugins::PluginEngine;
use switchyard::store::Store;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "WebAssembly plugin engine for event-driven integration on RabbitMQ"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: consume, transform, store, serve.
    Run(#[command(flatten)] Box<Config>),
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a .wasm file as the host would and print what it declares.
    Check {
        /// The plugin file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Run(c) if c.log_json);
    switchyard::telemetry::init(json_logs);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(config) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            switchyard::run(*config, shutdown).await
        }
        Command::Plugin(PluginCommand::Check { file }) => check_plugin(&file),
    }
}

/// SIGINT or SIGTERM cancels `shutdown`.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing the batches in flight");
    shutdown.cancel();
}

fn check_plugin(file: &std::path::Path) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("switchyard-check-{}", std::process::id()));
    let db = Arc::new(Store::open(&scratch)?);
    let config = Config::defaults();
    let engine = PluginEngine::new(
        db,
        config.plugin_timeout(),
        config.plugin_memory_mib << 20,
        None,
    )?;
    let loaded = std::fs::read(file)
        .context("reading the file")
        .and_then(|wasm| {
            let sha256 = hex::encode(sha2::Sha256::digest(&wasm));
            engine.load(file, &wasm, &sha256)
        })
        .with_context(|| format!("loading plugin {}", file.display()));
    let _ = std::fs::remove_dir_all(&scratch);
    let plugin = loaded?;
    println!("name:          {}", plugin.name);
    println!("version:       {}", plugin.info.version);
    println!("world:         {}", plugin.world);
    println!("sha256:        {}", plugin.sha256);
    println!("subscriptions: {}", plugin.info.subscriptions.join(", "));
    println!("views:         {}", plugin.info.views.join(", "));
    Ok(())
}
