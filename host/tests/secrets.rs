//! Secrets stay secret: the broker password appears in no log line and no
//! API answer, even when the broker refuses it over and over.

mod common;

use std::time::Duration;

use common::amqp_url;
use common::process::ChildHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_broker_password_is_never_logged_or_served() {
    const SECRET: &str = "n0t-the-Passw0rd";
    // The real broker, with a password it refuses: the host retries and
    // logs each failure.
    let url = amqp_url().replacen("guest:guest@", &format!("guest:{SECRET}@"), 1);
    assert!(
        url.contains(SECRET),
        "AMQP_URL must carry guest:guest@ for this test"
    );
    let mut host = ChildHost::start_with(&["counter"], |c| c.amqp_url = Some(url.into())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, health) = host.get("/health").await;
    assert_eq!(status, 503, "{health}");
    assert!(!health.to_string().contains(SECRET), "{health}");
    let (_, plugins) = host.get("/plugins").await;
    assert!(!plugins.to_string().contains(SECRET));
    host.kill().await;
    let log = std::fs::read_to_string(host.log_path()).unwrap();
    assert!(
        log.contains("broker unavailable"),
        "the failures were logged:\n{log}"
    );
    assert!(
        log.contains("guest:***@"),
        "the URL is shown redacted:\n{log}"
    );
    assert!(
        !log.contains(SECRET),
        "the password leaked into the log:\n{log}"
    );
}
