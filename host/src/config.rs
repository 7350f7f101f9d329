//! Configuration of `switchyard run`: every knob, its default, its unit and
//! its trade-off, in one place.
//!
//! Precedence: built-in defaults, then environment variables, then
//! command-line flags (a flag wins over its variable).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

/// How the host connects, where it keeps things and how hard it works.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// AMQP URL of the RabbitMQ broker (default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`). Its password is never
    /// logged nor shown by `--help` or `Debug`.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<AmqpUrl>,

    /// Where events travel: `rabbitmq`; `embedded`, an in-process bus with
    /// the same topic routing (events never leave the process); or `auto`:
    /// RabbitMQ when `AMQP_URL` is set or a broker answers on the default
    /// address, else embedded. With `AMQP_URL` set, a broker outage is waited
    /// out, never replaced by the embedded bus.
    #[arg(long, env = "SWITCHYARD_BUS", value_enum, default_value_t = Bus::Auto)]
    pub bus: Bus,

    /// Address the HTTP API listens on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "SWITCHYARD_HTTP", default_value = "0.0.0.0:8003")]
    pub http: SocketAddr,

    /// Folder of plugins: every `*.wasm` in it is loaded at start, and one
    /// that lands, changes or goes while the host runs is loaded, replaced
    /// or unloaded on the spot.
    #[arg(long, env = "SWITCHYARD_PLUGINS", default_value = "plugins")]
    pub plugins: PathBuf,

    /// Milliseconds between full rescans of the plugins folder, the safety
    /// net under file-system notifications (which some mounts, such as
    /// network or VM-shared folders, do not deliver). 0 turns it off.
    #[arg(long, env = "SWITCHYARD_PLUGINS_RESCAN_MS", default_value_t = 2000)]
    pub plugins_rescan_ms: u64,

    /// Folder of the embedded store (`switchyard.db` and its WAL files) and
    /// of the compiled-plugin cache.
    #[arg(long, env = "SWITCHYARD_DATA", default_value = "data")]
    pub data: PathBuf,

    /// Where the store is: `sqlite`, the embedded file `switchyard.db` in
    /// the data folder (one host, nothing to run beside it); or a
    /// `postgres://` / `postgresql://` URL (`postgres://user:password@host:5432/db`),
    /// a database that several hosts can share (each commit a network round
    /// trip or several). Its password is never logged nor shown by `--help`
    /// or `Debug`.
    #[arg(
        long,
        env = "SWITCHYARD_STORE",
        hide_env_values = true,
        default_value = "sqlite"
    )]
    pub store: StoreUrl,

    /// This host's name among the hosts sharing a store: shown by `GET
    /// /cluster`, holds producers' leases. Default: the machine's name and
    /// the process id. Must differ between hosts; a restarted host may
    /// keep its id (a supervisor's instance name) or take a new one.
    #[arg(long, env = "SWITCHYARD_HOST_ID")]
    pub host_id: Option<String>,

    /// The topic exchange events arrive on (declared durable if absent).
    #[arg(
        long,
        env = "SWITCHYARD_EXCHANGE",
        default_value = "integration.exchange"
    )]
    pub exchange: String,

    /// Prefix of every queue and exchange the host declares: plugin `p`
    /// consumes `<prefix>.p` and dead-letters to `<prefix>.p.dlq`.
    #[arg(long, env = "SWITCHYARD_QUEUE_PREFIX", default_value = "switchyard")]
    pub queue_prefix: String,

    /// Kind of the queues the host declares (plugin, retry and dead-letter
    /// queues): `classic`, one copy on one broker node; or `quorum`,
    /// replicated over a RabbitMQ cluster's nodes (Raft), which survives the
    /// loss of a minority of them at the cost of a disk write on several
    /// nodes per message; its dead letters and retries move with
    /// at-least-once dead-lettering. The type of an existing queue cannot
    /// change: while one of the host's queues is of the other type the host
    /// consumes nothing, and its log and `/health` say which queue and how
    /// to move.
    #[arg(long, env = "SWITCHYARD_QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,

    /// Seconds of the AMQP heartbeat asked of the broker (a URL's own
    /// `heartbeat=` wins). Each side sends a frame at least every half
    /// interval, and a connection on which nothing has been heard for two
    /// intervals is given up: a broker that went silent (dead machine,
    /// firewall or NAT dropping packets without a reset) is noticed within
    /// two to two and a half intervals and the host reconnects on a new
    /// connection. Smaller notices sooner; too small risks giving up on a
    /// connection that only stalled (a broker or host paused for longer
    /// than two intervals). 0 takes the broker's value (RabbitMQ: 60).
    #[arg(
        long,
        env = "SWITCHYARD_HEARTBEAT_SECS",
        default_value_t = DEFAULT_HEARTBEAT_SECS
    )]
    pub heartbeat_secs: u16,

    /// Unacknowledged deliveries the broker may push to each plugin's
    /// consumer. Higher keeps the pipeline busy while a batch commits, at the
    /// cost of memory (about one message body each) and of more redeliveries
    /// after a crash. Should be at least twice `batch_size`.
    #[arg(long, env = "SWITCHYARD_PREFETCH", default_value_t = 1000)]
    pub prefetch: u16,

    /// Most deliveries handled, committed and acknowledged together. Larger
    /// batches amortise the durable commit (one fsync per batch) and the
    /// ack; smaller ones lower latency.
    #[arg(long, env = "SWITCHYARD_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,

    /// Milliseconds a batch that is not full waits for more deliveries
    /// after its first one. Under load batches fill long before; when events
    /// trickle in, this is the latency added to buy fewer commits.
    #[arg(long, env = "SWITCHYARD_BATCH_LINGER_MS", default_value_t = 5)]
    pub batch_linger_ms: u64,

    /// Hours an applied event id is remembered for deduplication. A
    /// redelivery older than this would be applied again; longer keeps the
    /// store larger.
    #[arg(long, env = "SWITCHYARD_DEDUPE_RETENTION_HOURS", default_value_t = 168)]
    pub dedupe_retention_hours: u64,

    /// Milliseconds one plugin call may run before it is interrupted and
    /// its event dead-lettered (`timeout`).
    #[arg(long, env = "SWITCHYARD_PLUGIN_TIMEOUT_MS", default_value_t = 1000)]
    pub plugin_timeout_ms: u64,

    /// Mebibytes of linear memory one plugin instance may grow to, all its
    /// memories together; past that the call fails and the event is
    /// dead-lettered. `--plugin-setting <plugin>.memory-mib=N` sets one
    /// plugin's cap.
    #[arg(long, env = "SWITCHYARD_PLUGIN_MEMORY_MIB", default_value_t = 64)]
    pub plugin_memory_mib: usize,

    /// Times the plugin is handed an event that keeps failing transiently
    /// (it answers `retry`, or the store is unavailable) before the event
    /// is dead-lettered with the attempt count.
    #[arg(long, env = "SWITCHYARD_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,

    /// Milliseconds before the first retry; each further retry waits twice
    /// as long, up to `retry_max_delay_ms`. Waiting events sit in retry
    /// queues, so the rest of the plugin's queue flows meanwhile.
    #[arg(long, env = "SWITCHYARD_RETRY_DELAY_MS", default_value_t = 1000)]
    pub retry_delay_ms: u64,

    /// Longest wait between two attempts, in milliseconds.
    #[arg(long, env = "SWITCHYARD_RETRY_MAX_DELAY_MS", default_value_t = 60_000)]
    pub retry_max_delay_ms: u64,

    /// Origins a plugin may send HTTP requests to, as
    /// `<plugin>=<scheme://host:port>`; repeat the flag, or separate with
    /// commas. Every other request of every plugin is refused.
    #[arg(long = "grant", env = "SWITCHYARD_GRANTS", value_delimiter = ',')]
    pub grants: Vec<String>,

    /// Settings a plugin can read, as `<plugin>.<key>=<value>` (a
    /// producer's upstream URL, say); repeat the flag, or separate with commas.
    #[arg(
        long = "plugin-setting",
        env = "SWITCHYARD_PLUGIN_SETTINGS",
        value_delimiter = ','
    )]
    pub plugin_settings: Vec<String>,

    /// Times an event may be republished from plugin to plugin (a chain
    /// `a -> b -> c` is 2 hops). An event past the limit is dead-lettered:
    /// this stops plugins that feed each other in a loop.
    #[arg(long, env = "SWITCHYARD_MAX_HOPS", default_value_t = 10)]
    pub max_hops: u32,

    /// PEM file of extra CA certificates that producers' `https://` origins
    /// may present (a company's own CA), trusted besides the bundled Mozilla
    /// roots.
    #[arg(long, env = "SWITCHYARD_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// Largest HTTP request body accepted, in bytes (413 beyond).
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Longest an HTTP request may take, in seconds, before it is answered
    /// 503 (a view of a slow plugin, a broker that does not answer a
    /// dead-letter listing).
    #[arg(long, env = "SWITCHYARD_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,

    /// Bearer token the write and admin routes require (`Authorization:
    /// Bearer <token>`); absent or empty leaves them open to anyone who can
    /// reach the port. Never logged nor shown by `--help` or `Debug`.
    #[arg(long, env = "SWITCHYARD_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<ApiToken>,

    /// Require the token for reads too: every route but `/health`. Needs
    /// `api_token`.
    #[arg(
        long,
        env = "SWITCHYARD_PROTECT_READS",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub protect_reads: bool,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "SWITCHYARD_LOG_JSON")]
    pub log_json: bool,
}

/// A secret the API compares requests against. `Debug` shows only that it
/// is set, so a logged or printed configuration never carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token itself, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl From<String> for ApiToken {
    fn from(token: String) -> Self {
        Self(token)
    }
}

impl From<&str> for ApiToken {
    fn from(token: &str) -> Self {
        Self(token.to_owned())
    }
}

/// The broker's URL. `Debug` shows it with the password replaced, so a
/// printed configuration never carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl(String);

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({:?})", redact_url(&self.0))
    }
}

impl From<String> for AmqpUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for AmqpUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

/// `--store`: `sqlite` or a PostgreSQL URL. `Debug` shows it with the
/// password replaced.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(String);

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({:?})", redact_url(&self.0))
    }
}

impl StoreUrl {
    /// Where the store is: `sqlite` is `switchyard.db` in `data`.
    pub fn location(&self, data: &std::path::Path) -> Result<crate::store::Location> {
        let url = self.0.trim();
        if url.eq_ignore_ascii_case("sqlite") {
            return Ok(crate::store::Location::Sqlite(data.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(crate::store::Location::Postgres(url.to_owned()));
        }
        bail!(
            "--store (SWITCHYARD_STORE) must be `sqlite` or a postgres:// or postgresql:// URL, not {}",
            redact_url(url)
        )
    }
}

impl From<String> for StoreUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for StoreUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

/// The plugin setting that says how hosts consume a plugin's queue.
pub const CONSUMERS_SETTING: &str = "consumers";

/// How the hosts sharing a broker consume a plugin's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumers {
    /// Every host consumes (the default): work spreads over the hosts and
    /// fails over at once; the queue's order is not kept.
    Competing,
    /// One host at a time consumes (`x-single-active-consumer`), the others
    /// stand by: the queue's order is kept, failover without parallelism.
    SingleActive,
}

/// `--bus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bus {
    Auto,
    Rabbitmq,
    Embedded,
}

/// `--queue-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    Classic,
    Quorum,
}

impl QueueType {
    /// The type that is not this one.
    pub fn other(self) -> Self {
        match self {
            QueueType::Classic => QueueType::Quorum,
            QueueType::Quorum => QueueType::Classic,
        }
    }

    /// The name RabbitMQ gives it (`x-queue-type`).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

impl fmt::Display for QueueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--heartbeat-secs` when not set.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// The broker used when `AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl Config {
    /// The broker's URL: `AMQP_URL`, or the local default.
    pub fn amqp_url(&self) -> &str {
        self.amqp_url
            .as_ref()
            .map_or(DEFAULT_AMQP_URL, |url| url.0.as_str())
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        Self::from_args(&[]).expect("the defaults parse")
    }

    /// Parses `switchyard run`'s flags (and the environment), as `main` does.
    pub(crate) fn from_args(args: &[&str]) -> Result<Self, clap::Error> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let args = std::iter::once("switchyard").chain(args.iter().copied());
        Only::try_parse_from(args).map(|only| only.config)
    }

    /// Where the store is, from `--store` and `--data`.
    pub fn store_location(&self) -> Result<crate::store::Location> {
        self.store.location(&self.data)
    }

    /// The value of setting `key` of `plugin` (`--plugin-setting
    /// <plugin>.<key>=<value>`), the last one given.
    pub fn plugin_setting(&self, plugin: &str, key: &str) -> Option<String> {
        self.plugin_settings.iter().rev().find_map(|entry| {
            let (name, value) = entry.split_once('=')?;
            let (p, k) = name.split_once('.')?;
            (p.trim() == plugin && k.trim() == key).then(|| value.trim().to_owned())
        })
    }

    /// How the hosts sharing a broker consume `plugin`'s queue (its
    /// `consumers` setting).
    pub fn consumers(&self, plugin: &str) -> Consumers {
        match self.plugin_setting(plugin, CONSUMERS_SETTING).as_deref() {
            Some("single-active") => Consumers::SingleActive,
            _ => Consumers::Competing,
        }
    }

    /// This host's id (see [`Config::host_id`]).
    pub fn host_id(&self) -> String {
        self.host_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(crate::cluster::default_host_id)
    }

    /// Refuses settings that contradict each other.
    pub fn check(&self) -> Result<()> {
        self.store_location()?;
        for entry in &self.plugin_settings {
            let Some((name, value)) = entry.split_once('=') else {
                continue;
            };
            let is_consumers = name
                .split_once('.')
                .is_some_and(|(_, key)| key.trim() == CONSUMERS_SETTING);
            if is_consumers && !["competing", "single-active"].contains(&value.trim()) {
                bail!(
                    "plugin setting {entry:?}: {CONSUMERS_SETTING} is `competing` (the default) \
                     or `single-active`"
                );
            }
        }
        if self.protect_reads && self.auth_token().is_none() {
            bail!(
                "--protect-reads (SWITCHYARD_PROTECT_READS) needs an API token (--api-token or SWITCHYARD_API_TOKEN)"
            );
        }
        Ok(())
    }

    /// The token the API requires, if any: an empty one counts as none.
    pub fn auth_token(&self) -> Option<&ApiToken> {
        self.api_token.as_ref().filter(|t| !t.0.is_empty())
    }

    pub fn batch_linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }

    pub fn plugin_timeout(&self) -> Duration {
        Duration::from_millis(self.plugin_timeout_ms)
    }

    /// `None` when the periodic rescan is off.
    pub fn plugins_rescan(&self) -> Option<Duration> {
        (self.plugins_rescan_ms > 0).then(|| Duration::from_millis(self.plugins_rescan_ms))
    }

    /// Where compiled plugins are cached between runs.
    pub fn compile_cache(&self) -> PathBuf {
        self.data.join("compiled")
    }

    pub fn dedupe_retention(&self) -> Duration {
        Duration::from_secs(self.dedupe_retention_hours * 3600)
    }

    /// The name the host's AMQP connection shows in the broker's tools.
    pub fn connection_name(&self) -> String {
        format!("switchyard {}", self.queue_prefix)
    }

    /// The queue a plugin consumes.
    pub fn queue_name(&self, plugin: &str) -> String {
        format!("{}.{plugin}", self.queue_prefix)
    }

    /// The fanout exchange a plugin's dead letters go through.
    pub fn dead_letter_exchange(&self, plugin: &str) -> String {
        format!("{}.{plugin}.dlx", self.queue_prefix)
    }

    /// The wait before retry number `attempt` (1 for the first retry):
    /// `retry_delay_ms` doubled for each earlier retry, capped.
    pub fn retry_delay_ms(&self, attempt: u32) -> u64 {
        let doubled = self
            .retry_delay_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
        doubled.min(self.retry_max_delay_ms).max(1)
    }

    /// Every distinct retry delay, shortest first: one retry queue each.
    pub fn retry_delays_ms(&self) -> Vec<u64> {
        let mut delays: Vec<u64> = (1..self.max_attempts.max(1))
            .map(|a| self.retry_delay_ms(a))
            .collect();
        delays.dedup();
        delays
    }

    /// The queue where a plugin's events wait `delay_ms` before going back
    /// to its queue (messages expire from it into the plugin's queue).
    pub fn retry_queue(&self, plugin: &str, delay_ms: u64) -> String {
        format!("{}.{plugin}.retry-{delay_ms}ms", self.queue_prefix)
    }

    /// The queue that keeps a plugin's dead letters.
    pub fn dead_letter_queue(&self, plugin: &str) -> String {
        format!("{}.{plugin}.dlq", self.queue_prefix)
    }
}

/// `host:port` of an AMQP URL (5672 when the URL names no port).
pub fn broker_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

/// `amqp://user:secret@host` becomes `amqp://user:***@host`, and a
/// `password=` query parameter (which PostgreSQL URLs may carry) becomes
/// `password=***`, for logs and messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: it could be anything, a password included.
        return "<not a URL>".to_owned();
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:s3cr@t@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(
            redact_url("postgres://sy@db/sy?password=hunter2&sslmode=disable"),
            "postgres://sy@db/sy?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://sy:hunter2@db:5432?application_name=x"),
            "postgresql://sy:***@db:5432?application_name=x"
        );
        assert_eq!(redact_url("sy:hunter2@db"), "<not a URL>");
    }

    #[test]
    fn the_store_is_sqlite_or_a_postgres_url_whose_password_never_shows() {
        use crate::store::Location;
        let c = Config::defaults();
        assert_eq!(c.store_location().unwrap(), Location::Sqlite("data".into()));
        let url = "postgres://sy:hunter2-s3cret@db:5432/switchyard";
        let c = Config::from_args(&["--store", url]).unwrap();
        assert_eq!(c.store_location().unwrap(), Location::Postgres(url.into()));
        let printed = format!("{c:?} {c:#?} {}", c.store_location().unwrap());
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("db:5432"), "{printed}");
        let wrong = Config::from_args(&["--store", "mysql://sy:hunter2@db/x"]).unwrap();
        let error = wrong.check().unwrap_err().to_string();
        assert!(
            error.contains("must be `sqlite` or a postgres://"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn broker_address_comes_from_the_url() {
        assert_eq!(broker_address(DEFAULT_AMQP_URL), "127.0.0.1:5672");
        assert_eq!(broker_address("amqp://rabbitmq/%2f"), "rabbitmq:5672");
        assert_eq!(broker_address("amqp://u:p@h:5673"), "h:5673");
    }

    #[test]
    fn a_plugin_consumes_competing_unless_set_single_active() {
        let mut c = Config::defaults();
        assert_eq!(c.consumers("merge"), Consumers::Competing);
        c.plugin_settings = vec![
            "merge.consumers=competing".into(),
            "merge.consumers= single-active".into(),
            "counter.poll-interval-ms=5".into(),
        ];
        assert_eq!(
            c.consumers("merge"),
            Consumers::SingleActive,
            "the last wins"
        );
        assert_eq!(c.consumers("counter"), Consumers::Competing);
        assert!(c.check().is_ok());
        c.plugin_settings.push("merge.consumers=one".into());
        let error = c.check().unwrap_err().to_string();
        assert!(error.contains("single-active"), "{error}");
    }

    #[test]
    fn defaults_follow_the_reference_deployment() {
        let c = Config::defaults();
        assert_eq!(c.http.port(), 8003);
        assert_eq!(c.exchange, "integration.exchange");
        assert_eq!(c.queue_name("merge"), "switchyard.merge");
        assert_eq!(c.dead_letter_queue("merge"), "switchyard.merge.dlq");
        assert!(c.auth_token().is_none());
        assert!(!c.protect_reads);
        assert_eq!(c.queue_type, QueueType::Classic);
        assert_eq!(c.heartbeat_secs, 10);
    }

    #[test]
    fn queue_type_and_heartbeat_come_from_flags() {
        let c = Config::from_args(&["--queue-type", "quorum", "--heartbeat-secs", "3"]).unwrap();
        assert_eq!((c.queue_type, c.heartbeat_secs), (QueueType::Quorum, 3));
        assert!(Config::from_args(&["--queue-type", "stream"]).is_err());
    }

    #[test]
    fn the_api_token_never_shows_in_debug_output() {
        let c = Config::from_args(&["--api-token", "hunter2-s3cret"]).unwrap();
        assert_eq!(c.auth_token().map(ApiToken::expose), Some("hunter2-s3cret"));
        let printed = format!("{c:?} {c:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("api_token: Some(ApiToken(<redacted>))"),
            "{printed}"
        );
    }

    #[test]
    fn the_amqp_password_never_shows_in_debug_output() {
        let c = Config::from_args(&["--amqp-url", "amqp://guest:hunter2-s3cret@rabbit:5672/%2f"])
            .unwrap();
        assert_eq!(c.amqp_url(), "amqp://guest:hunter2-s3cret@rabbit:5672/%2f");
        let printed = format!("{c:?} {c:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("rabbit:5672"), "{printed}");
    }

    #[test]
    fn an_empty_token_is_no_token() {
        let c = Config::from_args(&["--api-token", ""]).unwrap();
        assert!(c.auth_token().is_none());
        c.check().unwrap();
    }

    #[test]
    fn protecting_reads_needs_a_token() {
        let open = Config::from_args(&["--protect-reads"]).unwrap();
        let error = open.check().unwrap_err().to_string();
        assert!(error.contains("needs an API token"), "{error}");
        let empty = Config::from_args(&["--protect-reads", "--api-token", ""]).unwrap();
        assert!(empty.check().is_err());
        Config::from_args(&["--protect-reads", "--api-token", "t"])
            .unwrap()
            .check()
            .unwrap();
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let mut c = Config::defaults();
        assert_eq!(c.retry_delays_ms(), vec![1000, 2000, 4000, 8000]);
        c.max_attempts = 10;
        c.retry_max_delay_ms = 20_000;
        assert_eq!(c.retry_delay_ms(1), 1000);
        assert_eq!(c.retry_delay_ms(5), 16_000);
        assert_eq!(c.retry_delay_ms(9), 20_000);
        assert_eq!(
            c.retry_delays_ms(),
            vec![1000, 2000, 4000, 8000, 16_000, 20_000]
        );
        assert_eq!(
            c.retry_queue("merge", 1000),
            "switchyard.merge.retry-1000ms"
        );
        c.max_attempts = 1;
        assert!(c.retry_delays_ms().is_empty(), "one attempt: never retried");
    }
}
