//! `switchyard-demo crm|inventory`: runs one demo upstream system until
//! SIGINT or SIGTERM. The routes are documented in the library.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing::info;
use tracing_subscriber::EnvFilter;

use switchyard_demo::{Customer, Product, Table, crm_router, inventory_router, serve};

/// Demo upstream systems for Switchyard. Their records live in memory,
/// loaded from a JSON file at start: a restart returns to the file's data.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    system: System,
}

#[derive(Debug, Subcommand)]
enum System {
    /// The CRM: customers on /customers.
    Crm {
        /// TCP port to listen on.
        #[arg(long, default_value_t = 8001)]
        port: u16,
        /// JSON array of customers to start with (`id`, `name`, `email`,
        /// optional `updatedAt`).
        #[arg(long, default_value = "demo/data/customers.json")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind: IpAddr,
    },
    /// The inventory: products and their stock on /products.
    Inventory {
        /// TCP port to listen on.
        #[arg(long, default_value_t = 8002)]
        port: u16,
        /// JSON array of products to start with (`id`, `name`, `stock`,
        /// optional `updatedAt`).
        #[arg(long, default_value = "demo/data/products.json")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind: IpAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs to stderr like the host; colours only on a terminal, never with
    // NO_COLOR set.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(run(cli.system)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(system: System) -> Result<()> {
    let (name, router, count, data, address) = match system {
        System::Crm { port, data, bind } => {
            let customers = Table::<Customer>::load(&data)?;
            let count = customers.list().len();
            let router = crm_router(customers);
            ("CRM", router, count, data, SocketAddr::new(bind, port))
        }
        System::Inventory { port, data, bind } => {
            let products = Table::<Product>::load(&data)?;
            let count = products.list().len();
            let router = inventory_router(products);
            (
                "inventory",
                router,
                count,
                data,
                SocketAddr::new(bind, port),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    info!(%address, records = count, data = %data.display(), "{name} serving");
    serve(listener, router, stop_signal())
        .await
        .context("serving HTTP")?;
    info!("{name} stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM (`docker stop`).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
