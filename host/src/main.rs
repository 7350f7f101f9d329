//! The `switchyard` command: parses the command line, sets up logging and
//! signals, and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use switchyard::config::StoreUrl;
use switchyard::store::{Location, Store};
use switchyard::{Config, dead_letters};

/// Longest a shutdown may take after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

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
    /// A plugin's dead-letter queue: see what failed and why, and send it
    /// back through the plugin's current version.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The store: move an embedded one to PostgreSQL.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy the embedded store of `--data` (documents, plugin state,
    /// applied event ids with their versions and times, outbox, idempotency
    /// keys, dead letters, queue bindings) into an empty PostgreSQL store,
    /// in one transaction. Stop the host first; then start the hosts with
    /// `--store` set to the same URL.
    Copy {
        /// The PostgreSQL database to copy into
        /// (`postgres://user:password@host:5432/db`): a new database, or one
        /// whose Switchyard tables are empty. Its password is never shown.
        #[arg(long, env = "SWITCHYARD_STORE", hide_env_values = true)]
        to: StoreUrl,
        /// Folder of the embedded store to copy (as for `run`).
        #[arg(long, env = "SWITCHYARD_DATA", default_value = "data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Show a plugin's dead letters, oldest first; they stay in the queue.
    List {
        /// The plugin's name.
        plugin: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Where the broker is and how queues are named (as for `run`).
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Send every dead letter of a plugin back to its queue, to be handled
    /// by the plugin's current version with a fresh set of attempts.
    Replay {
        /// The plugin's name.
        plugin: String,
        /// Where the broker is and how queues are named (as for `run`).
        #[command(flatten)]
        config: Box<Config>,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a .wasm file as the host would and print what it declares, the
    /// memory cap that applies and what the host gives each WASI import.
    Check {
        /// The plugin file.
        file: PathBuf,
        /// The default memory cap, in MiB (as for `run`).
        #[arg(long, env = "SWITCHYARD_PLUGIN_MEMORY_MIB", default_value_t = 64)]
        plugin_memory_mib: usize,
        /// Plugin settings, as for `run` (`<plugin>.memory-mib=N` sets its cap).
        #[arg(
            long = "plugin-setting",
            env = "SWITCHYARD_PLUGIN_SETTINGS",
            value_delimiter = ','
        )]
        plugin_settings: Vec<String>,
    },
    /// Write the WIT package (with its WASI deps) this host was built with,
    /// to build plugins against.
    Wit {
        /// Where to write it.
        #[arg(default_value = "wit")]
        dir: PathBuf,
    },
    /// Run a transcript of events through a plugin file, offline (a scratch
    /// store, no broker), and print what became of each as a JSON line;
    /// with expectations, a diff and a non-zero exit on a mismatch. The
    /// plugin's deadline and memory cap are those of `run`
    /// (SWITCHYARD_PLUGIN_TIMEOUT_MS, SWITCHYARD_PLUGIN_MEMORY_MIB).
    Test {
        /// The plugin file (.wasm).
        plugin: PathBuf,
        /// The events, one JSON object per line (as `plugin record` writes
        /// them); lines may carry their expected output under `expect`.
        events: PathBuf,
        /// The expected output lines, one per event (overrides `expect`).
        #[arg(long)]
        expect: Option<PathBuf>,
        /// The store to start from: `{"state": {...}, "documents": {...}}`.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Copy live events that a plugin subscribes to off the broker, as
    /// lines `plugin test` reads (on stdout). A temporary queue of its own
    /// gets a copy of each: nothing is taken from the plugin's queue.
    Record {
        /// The plugin file (.wasm): its `describe()` names the binding keys.
        plugin: PathBuf,
        /// How many events to record.
        #[arg(long)]
        count: usize,
        /// The longest to wait for them, in seconds; fewer is an error
        /// (those recorded are written).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Where the broker is and what the exchange is (as for `run`).
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Write a new plugin project, `<name>/`, that builds at once: its
    /// source, a transcript to test it with, and the guest SDK and WIT
    /// this binary carries.
    New {
        /// The plugin's name (lowercase letters, digits, `-`).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: switchyard::authoring::scaffold::Language,
        /// A producer (polls an upstream, publishes events) instead of a
        /// transformer.
        #[arg(long)]
        producer: bool,
        /// The folder to make `<name>/` in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build the plugin project in a folder (Rust, Python or JavaScript)
    /// into one component, `<DIR>/<name>.wasm`, and print its path.
    Build {
        /// The project's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
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
            let run = switchyard::run(*config, shutdown.clone());
            // Batches settle within a plugin deadline and a broker round
            // trip; a host still busy after the grace period (a broker that
            // stopped answering) exits anyway: its unacknowledged deliveries
            // are redelivered, and recognised, after the restart.
            tokio::select! {
                ran = run => ran,
                () = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => anyhow::bail!(
                    "still shutting down after {SHUTDOWN_GRACE:?}: exiting; unacknowledged events will be redelivered"
                ),
            }
        }
        Command::Plugin(PluginCommand::Check {
            file,
            plugin_memory_mib,
            plugin_settings,
        }) => {
            let config = switchyard::plugins::check::CheckConfig {
                timeout: Config::defaults().plugin_timeout(),
                memory_mib: plugin_memory_mib,
                plugin_settings,
            };
            print!("{}", switchyard::plugins::check::check(&file, &config)?);
            Ok(())
        }
        Command::Plugin(PluginCommand::Wit { dir }) => write_wit(&dir),
        Command::Plugin(PluginCommand::Test {
            plugin,
            events,
            expect,
            state,
        }) => test_plugin(plugin, events, expect, state).await,
        Command::Plugin(PluginCommand::Record {
            plugin,
            count,
            timeout,
            config,
        }) => {
            use switchyard::authoring::record::{Recording, record};
            let recording = Recording {
                count,
                timeout: std::time::Duration::from_secs(timeout),
            };
            let recorded = record(&config, &plugin, &recording, &mut std::io::stdout()).await?;
            eprintln!("recorded {recorded} events");
            Ok(())
        }
        Command::Plugin(PluginCommand::New {
            name,
            lang,
            producer,
            dir,
        }) => {
            use switchyard::authoring::scaffold::{NewPlugin, create};
            let plugin = NewPlugin {
                name,
                language: lang,
                producer,
            };
            let made = create(&dir, &plugin)?;
            println!("{}", made.display());
            let wasm = format!("{}.wasm", plugin.name);
            eprintln!("next: cd {} && switchyard plugin build", made.display());
            if !producer {
                eprintln!("then: switchyard plugin test {wasm} events.jsonl");
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Build { dir }) => {
            let built =
                tokio::task::spawn_blocking(move || switchyard::authoring::build::build(&dir))
                    .await??;
            println!("{}", built.display());
            Ok(())
        }
        Command::Dlq(DlqCommand::List {
            plugin,
            limit,
            json,
            config,
        }) => list_dead_letters(&config, &plugin, limit, json).await,
        Command::Dlq(DlqCommand::Replay { plugin, config }) => {
            let connection = connect(&config).await?;
            let replayed = dead_letters::replay(&connection, &config, &plugin).await;
            let _ = connection.close(200, "bye".into()).await;
            println!("replayed {} dead letters of {plugin}", replayed?);
            Ok(())
        }
        Command::Store(StoreCommand::Copy { to, data }) => copy_store(&to, &data).await,
    }
}

/// `switchyard store copy`: the embedded store of `data` into `to`.
async fn copy_store(to: &StoreUrl, data: &std::path::Path) -> Result<()> {
    let target = to.location(data)?;
    if !matches!(target, Location::Postgres(_)) {
        anyhow::bail!(
            "--to must be a postgres:// or postgresql:// URL: the embedded store is what is copied"
        );
    }
    let source = Location::Sqlite(data.to_owned());
    let file = data.join(switchyard::store::sqlite::FILE);
    if !file.exists() {
        anyhow::bail!(
            "no embedded store at {}: point --data (SWITCHYARD_DATA) at the folder the host used",
            file.display()
        );
    }
    let from = Store::open(&source)
        .await
        .with_context(|| format!("opening {source}"))?;
    let into = Store::open(&target)
        .await
        .with_context(|| format!("opening {target}"))?;
    let report = from
        .copy_into(&into)
        .await
        .with_context(|| format!("copying {source} into {target}"))?;
    println!("copied {source} into {target}:\n{report}");
    Ok(())
}

async fn connect(config: &Config) -> Result<lapin::Connection> {
    switchyard::broker::connect(config, "switchyard dlq").await
}

async fn list_dead_letters(config: &Config, plugin: &str, limit: usize, json: bool) -> Result<()> {
    let connection = connect(config).await?;
    let listed = dead_letters::list(&connection, config, plugin, limit).await;
    let _ = connection.close(200, "bye".into()).await;
    let (letters, total) = listed?;
    if json {
        for letter in &letters {
            println!("{}", serde_json::to_string(letter)?);
        }
        return Ok(());
    }
    println!(
        "{total} dead letters in {}{}",
        config.dead_letter_queue(plugin),
        if (total as usize) > letters.len() {
            format!(", the oldest {} shown", letters.len())
        } else {
            String::new()
        }
    );
    for l in &letters {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        println!();
        println!("event    {}", opt(&l.event_id));
        println!("key      {}", l.routing_key);
        println!("reason   {}", opt(&l.reason));
        println!(
            "attempts {}",
            l.attempts.map_or("-".to_string(), |a| a.to_string())
        );
        println!(
            "version  {}",
            opt(&l
                .plugin_version
                .as_ref()
                .map(|v| v.chars().take(12).collect()))
        );
        println!(
            "failed   {}",
            l.failed_at_ms
                .map_or("-".to_string(), |t| format!("{t} ms"))
        );
        let body: String = l.body.chars().take(200).collect();
        println!("body     {body}");
    }
    Ok(())
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

/// `switchyard plugin test`: outputs on stdout, diffs and the summary on
/// stderr, an error when an expectation is not met.
async fn test_plugin(
    plugin: PathBuf,
    events: PathBuf,
    expect: Option<PathBuf>,
    state: Option<PathBuf>,
) -> Result<()> {
    use switchyard::authoring::test_run;
    let report = tokio::task::spawn_blocking(move || {
        test_run::test_files(&plugin, &events, expect.as_deref(), state.as_deref())
    })
    .await??;
    for output in &report.outputs {
        println!("{}", serde_json::to_string(output)?);
    }
    for mismatch in &report.mismatches {
        eprint!("{mismatch}");
    }
    eprintln!("{}", report.summary());
    if !report.mismatches.is_empty() {
        anyhow::bail!(
            "{} of {} events do not match their expectation",
            report.mismatches.len(),
            report.expected
        );
    }
    Ok(())
}

/// `switchyard plugin wit`: the WIT package into `dir`.
fn write_wit(dir: &std::path::Path) -> Result<()> {
    let written = switchyard::plugins::contract::write_wit(dir)?;
    println!(
        "wrote {} files of the plugin contract to {}",
        written.files.len(),
        dir.display()
    );
    for file in written.foreign {
        println!(
            "note: {} is not part of this host's package (remove it if an older version left it)",
            dir.join(file).display()
        );
    }
    Ok(())
}
