//! An upstream REST system the test scripts, unlike our tidy demo ones: it
//! lists whatever the test puts in it (repeated ids, records without ids,
//! garbage), paginated in any shape the producers support, and fails or
//! holds a page on demand. One listing, served at every path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// How the upstream pages its listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// One answer: the whole listing.
    None,
    /// `?page=N&limit=S`, N from 1.
    Page,
    /// `?offset=K&limit=S`.
    Offset,
    /// `?cursor=C`; the answer is `{"items": [...], "next": C}`.
    Cursor,
    /// `?page=N`, pages of `size` records, `Link: <...>; rel="next"`.
    Link,
}

impl Paging {
    /// The producer settings that walk this shape (besides `base-url`);
    /// `page` and `offset` pages are of `size` records when it is not 0.
    pub fn settings(self, plugin: &str, size: usize) -> Vec<String> {
        let s = |kv: &str| format!("{plugin}.{kv}");
        let sized = if size > 0 {
            vec![s(&format!("page-size={size}"))]
        } else {
            Vec::new()
        };
        match self {
            Paging::None => vec![],
            Paging::Page => [vec![s("pagination=page")], sized].concat(),
            Paging::Offset => [vec![s("pagination=offset")], sized].concat(),
            Paging::Cursor => vec![s("pagination=cursor"), s("items-field=items")],
            Paging::Link => vec![s("pagination=link")],
        }
    }
}

struct Inner {
    records: Mutex<Vec<Value>>,
    paging: Paging,
    /// Page size for `Cursor` and `Link` (the others take `limit`).
    size: usize,
    /// Pages (1-based) to answer with 500, and how many times more.
    failing: Mutex<Vec<(usize, u32)>>,
    /// A page (1-based) whose request waits for `release`.
    held: Mutex<Option<usize>>,
    reached: Notify,
    release: Semaphore,
    requests: AtomicU64,
}

/// A running scripted upstream.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Upstream {
    /// Serves `records` on a free loopback port, paged as `paging` says
    /// (`size` records a page where the upstream decides).
    pub async fn start(records: Vec<Value>, paging: Paging, size: usize) -> Self {
        let inner = Arc::new(Inner {
            records: Mutex::new(records),
            paging,
            size,
            failing: Mutex::new(Vec::new()),
            held: Mutex::new(None),
            reached: Notify::new(),
            release: Semaphore::new(0),
            requests: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .fallback(listing)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let serve =
            axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(async move { serve.await });
        Self { inner, addr, stop }
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Grant and settings lines for `plugin` polling this upstream every
    /// `interval_ms`.
    pub fn configure(&self, c: &mut switchyard::Config, plugin: &str, interval_ms: u64) {
        c.grants.push(format!("{plugin}={}", self.origin()));
        c.plugin_settings
            .push(format!("{plugin}.base-url={}", self.origin()));
        c.plugin_settings
            .push(format!("{plugin}.poll-interval-ms={interval_ms}"));
        c.plugin_settings
            .extend(self.inner.paging.settings(plugin, self.inner.size));
    }

    /// Replaces the listing.
    pub fn set(&self, records: Vec<Value>) {
        *self.inner.records.lock().unwrap() = records;
    }

    /// Changes the listing in place.
    pub fn edit(&self, f: impl FnOnce(&mut Vec<Value>)) {
        f(&mut self.inner.records.lock().unwrap());
    }

    /// Requests answered or refused so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Page `page` (1-based) answers 500 the next `times` times.
    pub fn fail_page(&self, page: usize, times: u32) {
        self.inner.failing.lock().unwrap().push((page, times));
    }

    /// The next request for page `page` waits until [`Upstream::release`];
    /// returns once it arrived.
    pub async fn hold_page(&self, page: usize) -> impl Future<Output = ()> + use<> {
        *self.inner.held.lock().unwrap() = Some(page);
        let inner = Arc::clone(&self.inner);
        async move { inner.reached.notified().await }
    }

    /// Lets a held request go on.
    pub fn release(&self) {
        self.inner.release.add_permits(1);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) <= 2 {
            self.stop.cancel();
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct Params {
    page: Option<usize>,
    offset: Option<usize>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn listing(
    State(up): State<Arc<Inner>>,
    Query(params): Query<Params>,
    uri: axum::http::Uri,
) -> Response {
    up.requests.fetch_add(1, Ordering::SeqCst);
    let (start, size, page) = match up.paging {
        Paging::None => (0, usize::MAX, 1),
        Paging::Page => {
            let (page, size) = (params.page.unwrap_or(1), params.limit.unwrap_or(10));
            ((page.max(1) - 1) * size, size, page)
        }
        Paging::Offset => {
            let (offset, size) = (params.offset.unwrap_or(0), params.limit.unwrap_or(10));
            (offset, size, offset / size + 1)
        }
        Paging::Cursor => {
            // Cursors with characters that need encoding in a query.
            let at = params
                .cursor
                .as_deref()
                .and_then(|c| c.strip_prefix("k+")?.strip_suffix("/=")?.parse().ok())
                .unwrap_or(0);
            (at, up.size, at / up.size + 1)
        }
        Paging::Link => {
            let page = params.page.unwrap_or(1).max(1);
            ((page - 1) * up.size, up.size, page)
        }
    };
    let held = {
        let mut held = up.held.lock().unwrap();
        (*held == Some(page)).then(|| held.take()).is_some()
    };
    if held {
        up.reached.notify_one();
        up.release.acquire().await.unwrap().forget();
    }
    {
        let mut failing = up.failing.lock().unwrap();
        if let Some(f) = failing.iter_mut().find(|(p, n)| *p == page && *n > 0) {
            f.1 -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "scripted failure").into_response();
        }
    }
    let records = up.records.lock().unwrap();
    let end = start.saturating_add(size).min(records.len());
    let items = records.get(start.min(records.len())..end).unwrap_or(&[]);
    let more = end < records.len();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let body = match up.paging {
        Paging::Cursor => {
            let next = more.then(|| format!("k+{end}/="));
            json!({ "total": records.len(), "items": items, "next": next }).to_string()
        }
        Paging::Link => {
            if more {
                let path = uri.path();
                let link = format!(
                    r#"<{path}?page={}>; rel="next", <{path}?page=1>; rel="first""#,
                    page + 1
                );
                headers.insert("link", HeaderValue::from_str(&link).unwrap());
            }
            serde_json::to_string(items).unwrap()
        }
        _ => serde_json::to_string(items).unwrap(),
    };
    (headers, body).into_response()
}
