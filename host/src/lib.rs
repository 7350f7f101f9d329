//! Switchyard: a WebAssembly plugin engine for event-driven integration on
//! RabbitMQ.
//!
//! Map of the crate:
//! - [`config`], every setting, its default and its trade-off;
//! - [`broker`], RabbitMQ connection, topology, confirmed publishing;
//! - [`headers`], the AMQP headers Switchyard reads and writes;
//! - [`dead_letters`], listing and replaying a plugin's dead letters;
//! - [`plugins`], the wasmtime engine, the WIT bindings, loading, the registry;
//! - [`batch`], the batch core: each event's outcome, decided in one place;
//! - [`envelope`], reading an event's `eventId` without parsing the rest;
//! - [`pipeline`], the broker side: consumers, settling outcomes, reconnects;
//! - [`embedded`], the in-process bus used when there is no broker;
//! - [`producers`], polling producer plugins and publishing what they find;
//! - [`cluster`], this host among those sharing a store: heartbeats, leases;
//! - [`store`], documents, plugin state, applied ids, outbox, dead letters
//!   and queue bindings, on SQLite (embedded) or PostgreSQL (shared);
//! - [`api`], the axum routes;
//! - [`console`], the web console's static files, served at `GET /`;
//! - [`topic`], AMQP topic matching for events that bypass the broker;
//! - [`telemetry`], logging setup;
//! - [`authoring`], the plugin author's tools (`switchyard plugin test|record|build|new`).
//!
//! [`start`] wires them together; `main.rs` only parses the command line.

pub mod api;
pub mod authoring;
pub mod batch;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod console;
pub mod dead_letters;
pub mod embedded;
pub mod envelope;
pub mod headers;
pub mod metrics;
pub mod pipeline;
pub mod plugins;
pub mod producers;
pub mod store;
pub mod telemetry;
pub mod topic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
use plugins::{PluginEngine, PluginRegistry};
use store::Store;

/// How often applied event ids past their retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A started host.
pub struct Running {
    /// Where the HTTP API listens (useful with port 0).
    pub http_addr: SocketAddr,
    pub registry: Arc<PluginRegistry>,
    pub db: Store,
    tasks: TaskTracker,
}

impl Running {
    /// Waits until every task has stopped (after the shutdown token fired).
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Opens the store, loads the plugins, binds the API and starts consuming.
/// Everything stops when `shutdown` is cancelled: consumers finish and
/// acknowledge the batch in flight, then the HTTP server drains.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running> {
    config.check()?;
    let config = Arc::new(config);
    let location = config.store_location()?;
    let db = Store::open(&location)
        .await
        .with_context(|| format!("opening the store ({location})"))?;
    tracing::info!(store = %location, "store open");
    let store_health = Arc::new(store::StoreHealth::default());
    let membership = cluster::Membership::new(config.host_id());
    tracing::info!(host_id = %membership.host_id, "host id");
    let engine = PluginEngine::new(
        db.clone(),
        config.plugin_timeout(),
        config.plugin_memory_mib * 1024 * 1024,
        Some(&config.compile_cache()),
        plugins::access::Access::from_config(&config.grants, &config.plugin_settings)?
            .with_tls(plugins::tls::client_config(config.tls_ca_file.as_deref())?),
    )?;
    let registry = Arc::new(PluginRegistry::new(engine, &config.plugins));
    let scanning = Arc::clone(&registry);
    tokio::task::spawn_blocking(move || scanning.scan())
        .await
        .context("plugin loader panicked")??;
    let broker = Arc::new(broker::BrokerStatus::default());
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding the HTTP API to {}", config.http))?;
    let http_addr = listener.local_addr()?;
    match (config.auth_token(), config.protect_reads) {
        (None, _) => tracing::warn!(
            %http_addr,
            "HTTP API listening with no API token: anyone who reaches it can write"
        ),
        (Some(_), false) => {
            tracing::info!(%http_addr, "HTTP API listening; writes need the API token")
        }
        (Some(_), true) => tracing::info!(
            %http_addr,
            "HTTP API listening; every route but /health needs the API token"
        ),
    }

    let default_broker = config::broker_address(config::DEFAULT_AMQP_URL);
    let bus = match use_embedded_bus(&config, &default_broker).await {
        false => None,
        true => {
            let why = match config.bus {
                config::Bus::Embedded => "--bus embedded".to_owned(),
                _ => format!(
                    "AMQP_URL is not set and no RabbitMQ answers at {}",
                    config::broker_address(config.amqp_url())
                ),
            };
            tracing::warn!(
                "{why}: running with the embedded in-process bus; events stay inside this \
                 process. Set AMQP_URL (or --bus rabbitmq) to use a broker."
            );
            broker.embedded();
            Some(Arc::new(embedded::EmbeddedBus {
                config: Arc::clone(&config),
                db: db.clone(),
                store_health: Arc::clone(&store_health),
                registry: Arc::clone(&registry),
            }))
        }
    };

    let tasks = TaskTracker::new();
    let watcher = plugins::watcher::spawn(
        Arc::clone(&registry),
        config.plugins_rescan(),
        shutdown.clone(),
    )?;
    tasks.spawn(async move {
        let _ = watcher.await;
    });
    let router = api::router(api::AppState {
        config: Arc::clone(&config),
        db: db.clone(),
        store_health: Arc::clone(&store_health),
        host_id: membership.host_id.clone(),
        registry: Arc::clone(&registry),
        broker: Arc::clone(&broker),
        writes_in_flight: Default::default(),
        admin_broker: Default::default(),
        http_metrics: Default::default(),
        bus: bus.clone(),
    });
    let http_stop = shutdown.clone();
    tasks.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    match &bus {
        Some(bus) => {
            tasks.spawn(Arc::clone(bus).run(shutdown.clone()));
        }
        None => {
            let pipeline = pipeline::Pipeline {
                config: Arc::clone(&config),
                db: db.clone(),
                store_health: Arc::clone(&store_health),
                registry: Arc::clone(&registry),
                status: Arc::clone(&broker),
            };
            tasks.spawn(pipeline.run(shutdown.clone()));
        }
    }
    let scheduler = producers::Scheduler {
        config: Arc::clone(&config),
        db: db.clone(),
        store_health: Arc::clone(&store_health),
        host_id: membership.host_id.clone(),
        registry: Arc::clone(&registry),
        status: broker,
        bus,
    };
    tasks.spawn(scheduler.run(shutdown.clone()));
    tasks.spawn(membership.heartbeats(
        db.clone(),
        Arc::clone(&store_health),
        Arc::clone(&registry),
        shutdown.clone(),
    ));
    let (prune_db, retention, prune_stop) =
        (db.clone(), config.dedupe_retention(), shutdown.clone());
    tasks.spawn(async move {
        let mut every = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = prune_stop.cancelled() => break,
                _ = every.tick() => {}
            }
            match prune_db.call(move |db| db.prune_applied(retention)).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(forgotten = n, "pruned applied event ids past retention")
                }
                Err(e) => {
                    tracing::warn!(error = %e, outage = e.is_outage(), "pruning applied event ids failed")
                }
            }
        }
    });
    Ok(Running {
        http_addr,
        registry,
        db,
        tasks,
    })
}

/// Whether events travel on the embedded bus: asked for, or `auto` with no
/// `AMQP_URL` and no broker answering at `default_broker` (`host:port`).
async fn use_embedded_bus(config: &Config, default_broker: &str) -> bool {
    match config.bus {
        config::Bus::Embedded => true,
        config::Bus::Rabbitmq => false,
        config::Bus::Auto if config.amqp_url.is_some() => false,
        config::Bus::Auto => {
            let probe = tokio::net::TcpStream::connect(default_broker);
            !matches!(
                tokio::time::timeout(Duration::from_millis(500), probe).await,
                Ok(Ok(_))
            )
        }
    }
}

/// [`start`], then wait for the shutdown.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    start(config, shutdown).await?.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::Bus;

    #[tokio::test]
    async fn auto_picks_the_embedded_bus_only_without_amqp_url_and_without_a_broker() {
        // Something listening stands in for a broker on the default address.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let answering = listener.local_addr().unwrap().to_string();
        let silent = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        }; // closed again: nothing answers there
        let mut config = Config::defaults();
        assert_eq!(config.bus, Bus::Auto);
        assert!(!use_embedded_bus(&config, &answering).await);
        assert!(use_embedded_bus(&config, &silent).await);
        // AMQP_URL set: a broker that does not answer is waited for, never
        // replaced by the embedded bus.
        config.amqp_url = Some("amqp://guest:guest@127.0.0.1:1/%2f".into());
        assert!(!use_embedded_bus(&config, &silent).await);
        config.bus = Bus::Embedded;
        assert!(use_embedded_bus(&config, &answering).await);
        config.bus = Bus::Rabbitmq;
        config.amqp_url = None;
        assert!(!use_embedded_bus(&config, &silent).await);
    }
}
