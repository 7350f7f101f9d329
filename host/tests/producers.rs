//! Producers as plugins: `crm-producer` and `inventory-producer` poll the
//! demo upstreams (started in-process on loopback) through granted
//! `wasi:http`, publish only what is new or changed, with ids that make a
//! re-poll or a restart harmless, and the merge plugin turns that into the
//! analytics API's state. Real broker, real `.wasm` files.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::broker_lock::{BrokerLock, BrokerStopped};
use common::process::ChildHost;
use common::{TestHost, documents, eventually, producer_stat};
use serde_json::{Value, json};
use switchyard::Config;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

const PLUGINS: [&str; 3] = ["crm-producer", "inventory-producer", "merge"];

/// The demo CRM and inventory services on free loopback ports.
struct Upstreams {
    crm: SocketAddr,
    inventory: SocketAddr,
    stop: CancellationToken,
    http: reqwest::Client,
}

impl Upstreams {
    async fn start() -> Self {
        let stop = CancellationToken::new();
        let mut addrs = Vec::new();
        for router in [
            switchyard_demo::crm_router(switchyard_demo::sample_customers()),
            switchyard_demo::inventory_router(switchyard_demo::sample_products()),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            let stop = stop.clone();
            tokio::spawn(switchyard_demo::serve(listener, router, async move {
                stop.cancelled().await
            }));
        }
        Self {
            crm: addrs[0],
            inventory: addrs[1],
            stop,
            http: reqwest::Client::new(),
        }
    }

    /// Grants and settings for both producers; `grant_inventory: false`
    /// leaves the inventory producer configured but not granted.
    fn configure(&self, c: &mut Config, grant_inventory: bool) {
        c.grants = vec![format!("crm-producer=http://{}", self.crm)];
        if grant_inventory {
            c.grants
                .push(format!("inventory-producer=http://{}", self.inventory));
        }
        c.plugin_settings = vec![
            format!("crm-producer.base-url=http://{}", self.crm),
            format!("inventory-producer.base-url=http://{}", self.inventory),
            "crm-producer.poll-interval-ms=300".into(),
            "inventory-producer.poll-interval-ms=300".into(),
        ];
    }

    async fn customers(&self) -> Vec<Value> {
        let url = format!("http://{}/customers", self.crm);
        let list: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list.as_array().unwrap().clone()
    }

    async fn post_customer(&self, body: Value) {
        let url = format!("http://{}/customers", self.crm);
        let resp = self.http.post(url).json(&body).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    async fn set_stock(&self, product: &str, stock: u64) {
        let url = format!("http://{}/products/{product}/stock", self.inventory);
        let resp = self
            .http
            .put(url)
            .json(&json!({ "stock": stock }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The analytics store holds exactly the upstream's customers.
async fn assert_same_customers(host: &TestHost, upstreams: &Upstreams) {
    let stored = documents(async |p| host.get(p).await, "customers").await;
    let upstream = upstreams.customers().await;
    assert_eq!(stored.len(), upstream.len(), "{stored:?}");
    for (doc, record) in stored.iter().zip(&upstream) {
        for field in ["id", "name", "email"] {
            assert_eq!(doc[field], record[field], "{doc} vs {record}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_publish_what_changed_once_and_the_analytics_api_follows_the_upstreams() {
    let upstreams = Upstreams::start().await;
    let mut host = TestHost::start_with(&PLUGINS, |c| upstreams.configure(c, true)).await;
    host.wait_healthy().await;
    let sample_customers = upstreams.customers().await.len() as u64;
    let sample_products = switchyard_demo::sample_products().list().len() as u64;

    // First poll: every record.
    eventually("the samples merged", Duration::from_secs(30), || async {
        host.applied_in_store("merge") >= sample_customers + sample_products
    })
    .await;
    // A producer's counters move when its poll ends, after its events were
    // confirmed (and perhaps merged): waited for, not read at once.
    eventually(
        "the first poll counted",
        Duration::from_secs(30),
        || async {
            let crm = host.plugin("crm-producer").await;
            producer_stat(&crm, "events_published") >= sample_customers
        },
    )
    .await;
    let crm = host.plugin("crm-producer").await;
    assert_eq!(crm["world"], "producer");
    assert_eq!(producer_stat(&crm, "events_published"), sample_customers);
    assert_same_customers(&host, &upstreams).await;
    let products = documents(async |p| host.get(p).await, "products").await;
    assert_eq!(products.len() as u64, sample_products);

    // Unchanged re-polls publish nothing.
    host.wait_polls("crm-producer", 3).await;
    host.wait_polls("inventory-producer", 3).await;
    assert_eq!(
        producer_stat(&host.plugin("crm-producer").await, "events_published"),
        sample_customers
    );
    assert_eq!(
        producer_stat(&host.plugin("inventory-producer").await, "events_published"),
        sample_products
    );

    // One changed and one new customer, one changed stock: one event each.
    upstreams
        .post_customer(json!({ "id": "c2", "name": "Bruno K.", "email": "bk@example.org" }))
        .await;
    upstreams
        .post_customer(json!({ "id": "c9", "name": "Zoe", "email": "zoe@example.org" }))
        .await;
    upstreams.set_stock("p1", 42).await;
    eventually("the changes merged", Duration::from_secs(30), || async {
        host.get("/analytics/collections/customers/c9").await.0 == 200
            && host.get("/analytics/collections/products/p1").await.1["stock"] == 42
            && host.get("/analytics/collections/customers/c2").await.1["name"] == "Bruno K."
    })
    .await;
    host.wait_polls("crm-producer", 2).await;
    assert_eq!(
        producer_stat(&host.plugin("crm-producer").await, "events_published"),
        sample_customers + 2
    );
    assert_eq!(
        producer_stat(&host.plugin("inventory-producer").await, "events_published"),
        sample_products + 1
    );
    assert_same_customers(&host, &upstreams).await;
    let (_, data) = host.get("/analytics/data?limit=1000").await;
    assert_eq!(
        data["items"].as_array().unwrap().len() as u64,
        sample_customers + 1,
        "{data}"
    );

    // A restart publishes nothing new: what was seen is committed state.
    let applied = host.applied_in_store("merge");
    host.restart().await;
    host.wait_healthy().await;
    host.wait_polls("crm-producer", 3).await;
    host.wait_polls("inventory-producer", 3).await;
    for p in ["crm-producer", "inventory-producer"] {
        assert_eq!(
            producer_stat(&host.plugin(p).await, "events_published"),
            0,
            "{p}"
        );
    }
    assert_eq!(host.applied_in_store("merge"), applied);
    assert_same_customers(&host, &upstreams).await;
    host.cleanup(&PLUGINS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_asking_for_an_origin_it_was_not_granted_is_refused() {
    let upstreams = Upstreams::start().await;
    let host = TestHost::start_with(&PLUGINS, |c| upstreams.configure(c, false)).await;
    host.wait_healthy().await;
    eventually("a refused poll", Duration::from_secs(20), || async {
        let p = host.plugin("inventory-producer").await;
        p["producer"]["last_poll_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused by the host"))
    })
    .await;
    let inventory = host.plugin("inventory-producer").await;
    assert_eq!(producer_stat(&inventory, "events_published"), 0);
    assert!(producer_stat(&inventory, "failed_polls") >= 1);
    // The granted one works meanwhile.
    eventually("customers merged", Duration::from_secs(20), || async {
        host.get("/analytics/collections/customers/c1").await.0 == 200
    })
    .await;
    let (status, _) = host.get("/analytics/collections/products/p1").await;
    assert_eq!(status, 404, "nothing came from the refused upstream");
    host.cleanup(&PLUGINS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_broker_is_down_are_published_once_it_returns() {
    let _lock = BrokerLock::exclusive().await;
    let upstreams = Upstreams::start().await;
    let mut host = ChildHost::start_with(&PLUGINS, |c| upstreams.configure(c, true)).await;
    host.wait_healthy().await;
    let customers = upstreams.customers().await.len() as u64;
    let products = switchyard_demo::sample_products().list().len() as u64;
    eventually("the samples merged", Duration::from_secs(30), || async {
        host.get("/analytics/collections/customers?limit=1000")
            .await
            .1["items"]
            .as_array()
            .is_some_and(|i| i.len() as u64 == customers)
    })
    .await;

    let outage = BrokerStopped::stop().await;
    upstreams
        .post_customer(json!({ "id": "c3", "name": "Chloe M.", "email": "cm@example.net" }))
        .await;
    upstreams.set_stock("p2", 7).await;
    // Polls meanwhile fail to publish; their state is not committed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = host.get("/health").await;
    assert_eq!(status, 503);
    outage.start().await;

    eventually("the changes merged", Duration::from_secs(60), || async {
        host.get("/analytics/collections/customers/c3").await.1["name"] == "Chloe M."
            && host.get("/analytics/collections/products/p2").await.1["stock"] == 7
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.kill().await;
    let store = host.open_store();
    // Every change applied exactly once: the samples plus the two changes,
    // however many times the failed polls tried to publish them.
    assert_eq!(
        store.blocking().applied_count("merge").unwrap(),
        customers + products + 2
    );
    host.cleanup(&PLUGINS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_bus_runs_the_whole_flow_without_a_broker() {
    let upstreams = Upstreams::start().await;
    let mut host = TestHost::start_with(&PLUGINS, |c| {
        upstreams.configure(c, true);
        c.bus = switchyard::config::Bus::Embedded;
        // Nothing listens there: the flow must not need it.
        c.amqp_url = Some("amqp://guest:guest@127.0.0.1:1/%2f".into());
    })
    .await;
    host.wait_healthy().await;
    let (_, health) = host.get("/health").await;
    assert_eq!(health["broker"], "embedded", "{health}");
    let customers = upstreams.customers().await.len() as u64;
    let products = switchyard_demo::sample_products().list().len() as u64;
    eventually("the samples merged", Duration::from_secs(30), || async {
        host.applied_in_store("merge") == customers + products
    })
    .await;
    assert_same_customers(&host, &upstreams).await;
    upstreams
        .post_customer(json!({ "id": "c4", "name": "Dan O.", "email": "do@example.com" }))
        .await;
    eventually("the change merged", Duration::from_secs(20), || async {
        host.get("/analytics/collections/customers/c4").await.1["name"] == "Dan O."
    })
    .await;
    // The producers' state committed after the merge: a restart re-polls
    // nothing new, and nothing is applied twice.
    host.restart().await;
    host.wait_healthy().await;
    host.wait_polls("crm-producer", 3).await;
    assert_eq!(host.applied_in_store("merge"), customers + products + 1);
    let (_, data) = host.get("/analytics/data?limit=1000").await;
    assert_eq!(data["items"].as_array().unwrap().len() as u64, customers);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_reloaded_while_polling_keeps_its_state() {
    let upstreams = Upstreams::start().await;
    let host = TestHost::start_with(&PLUGINS, |c| upstreams.configure(c, true)).await;
    host.wait_healthy().await;
    let customers = upstreams.customers().await.len() as u64;
    eventually("the first poll", Duration::from_secs(30), || async {
        producer_stat(&host.plugin("crm-producer").await, "events_published") == customers
    })
    .await;
    let variant = common::plugin_file("crm-producer-variant");
    let partial = host.plugin_dir().join(".crm-producer.wasm.partial");
    std::fs::copy(&variant, &partial).unwrap();
    std::fs::rename(&partial, host.plugin_dir().join("crm-producer.wasm")).unwrap();
    eventually("the new version", Duration::from_secs(20), || async {
        host.plugin("crm-producer").await["version"]
            .as_str()
            .is_some_and(|v| v.ends_with("+variant"))
    })
    .await;
    // The new version starts from the committed state: nothing again...
    host.wait_polls("crm-producer", 3).await;
    let plugin = host.plugin("crm-producer").await;
    assert_eq!(plugin["reloads"], 1);
    assert_eq!(producer_stat(&plugin, "events_published"), customers);
    // ...and publishes what changes.
    upstreams
        .post_customer(json!({ "id": "c5", "name": "Emma S.", "email": "es@example.org" }))
        .await;
    eventually("the change merged", Duration::from_secs(20), || async {
        host.get("/analytics/collections/customers/c5").await.1["name"] == "Emma S."
    })
    .await;
    assert_eq!(
        producer_stat(&host.plugin("crm-producer").await, "events_published"),
        customers + 1
    );
    host.cleanup(&PLUGINS).await;
}

fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// Accepts TLS connections with the fixture certificate for `localhost`.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate ends its handshake here.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The demo CRM over https on a free loopback port, until `stop`.
async fn serve_crm_over_tls(stop: CancellationToken) -> u16 {
    let certs = CertificateDer::pem_file_iter(tls_fixture("localhost.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls_fixture("localhost.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let router = switchyard_demo::crm_router(switchyard_demo::sample_customers());
    let serve = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
    tokio::spawn(async move { serve.await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_reaches_an_https_upstream_whose_certificate_the_host_trusts() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let origin = format!("https://localhost:{}", serve_crm_over_tls(stop).await);
    let plugins = ["crm-producer", "merge"];
    let configure = |c: &mut Config| {
        c.grants = vec![format!("crm-producer={origin}")];
        c.plugin_settings = vec![
            format!("crm-producer.base-url={origin}"),
            "crm-producer.poll-interval-ms=300".into(),
        ];
    };

    // The bundled roots do not know the test CA: verification fails and
    // nothing is published.
    let host = TestHost::start_with(&plugins, configure).await;
    host.wait_healthy().await;
    eventually(
        "a poll failing verification",
        Duration::from_secs(20),
        || async {
            let p = host.plugin("crm-producer").await;
            p["producer"]["last_poll_error"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("TLS certificate is not trusted"))
        },
    )
    .await;
    let producer = host.plugin("crm-producer").await;
    assert_eq!(
        producer_stat(&producer, "events_published"),
        0,
        "{producer}"
    );
    host.cleanup(&plugins).await;

    // With the CA given, the same upstream's customers arrive.
    let host = TestHost::start_with(&plugins, |c| {
        configure(c);
        c.tls_ca_file = Some(tls_fixture("ca.pem"));
    })
    .await;
    host.wait_healthy().await;
    let customers = switchyard_demo::sample_customers().list().len() as u64;
    eventually("the customers merged", Duration::from_secs(20), || async {
        host.applied_in_store("merge") == customers
    })
    .await;
    let (status, c1) = host.get("/analytics/collections/customers/c1").await;
    assert_eq!(status, 200, "{c1}");
    assert_eq!(c1["name"], "Ana Lima", "{c1}");
    host.cleanup(&plugins).await;
}
