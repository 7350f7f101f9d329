//! Outgoing HTTP for plugins (`wasi:http/outgoing-handler`): every request
//! passes through [`GrantedHttp::send_request`], which refuses an origin the
//! configuration does not grant to the plugin (the guest sees
//! `HTTP-request-denied`) and bounds how long a request may take, since a
//! plugin blocked in the host is out of reach of its epoch deadline.
//!
//! A transformer's hooks refuse every request: transformers have no network.
//!
//! `https://` requests verify the server's certificate against the roots of
//! [`super::tls`]; a failed verification reaches the guest as
//! `TLS-certificate-error` and is logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper::rt::{Read, Write};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::access::Origin;
use super::deadline::Progress;

/// Longest a whole request may take, answer included.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a connection, and for the first byte of the answer; a
/// plugin's own `request-options` can only shorten them.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

/// The `wasi:http` hooks of one plugin's store.
#[derive(Debug, Default, Clone)]
pub struct GrantedHttp {
    pub plugin: String,
    pub origins: Vec<Origin>,
    /// How `https://` answers are verified; `None` refuses https.
    pub tls: Option<Arc<ClientConfig>>,
    /// Bumped by each request sent and each piece of an answer received:
    /// a poll waiting on an upstream is making progress.
    pub progress: Progress,
    /// A transformer's hooks: every request is refused, whatever is granted.
    pub transformer: bool,
}

impl GrantedHttp {
    fn grants(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        self.origins
            .iter()
            .any(|o| o.admits(scheme, authority.as_str()))
    }
}

impl WasiHttpHooks for GrantedHttp {
    // A plugin must say http or https; no silent default.
    fn default_scheme(&mut self) -> Option<Scheme> {
        None
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _default: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        if self.transformer {
            tracing::warn!(
                plugin = %self.plugin,
                method = %request.method(),
                uri = %request.uri(),
                "outgoing HTTP request refused: transformers have no network"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if !self.grants(request.uri()) {
            tracing::warn!(
                plugin = %self.plugin,
                method = %request.method(),
                uri = %request.uri(),
                "outgoing HTTP request refused: origin not granted to this plugin (--grant)"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        tracing::debug!(plugin = %self.plugin, uri = %request.uri(), "outgoing HTTP request");
        self.progress.bump();
        let options = clamp(options);
        let (plugin, tls, progress) =
            (self.plugin.clone(), self.tls.clone(), self.progress.clone());
        Box::new(async move {
            let deadline = tokio::time::Instant::now() + TOTAL_TIMEOUT;
            let sent = send(&plugin, request, options, tls);
            let (response, io) = tokio::time::timeout_at(deadline, sent)
                .await
                .map_err(|_| HttpError::ConnectionReadTimeout)??;
            let response =
                response.map(|body| DeadlineBody::new(body, deadline, progress).boxed_unsync());
            Ok((response, io))
        })
    }
}

fn clamp(asked: Option<RequestOptions>) -> RequestOptions {
    let asked = asked.unwrap_or_default();
    let min = |a: Option<Duration>, max: Duration| Some(a.map_or(max, |a| a.min(max)));
    RequestOptions {
        connect_timeout: min(asked.connect_timeout, CONNECT_TIMEOUT),
        first_byte_timeout: min(asked.first_byte_timeout, FIRST_BYTE_TIMEOUT),
        between_bytes_timeout: min(asked.between_bytes_timeout, TOTAL_TIMEOUT),
    }
}

/// One HTTP/1.1 exchange over a fresh connection, TLS for `https`.
async fn send(
    plugin: &str,
    request: http::Request<WasiBody>,
    options: RequestOptions,
    tls: Option<Arc<ClientConfig>>,
) -> SendResult {
    use tokio::time::timeout;
    let uri = request.uri().clone();
    let https = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) if *s == Scheme::HTTPS => true,
        _ => return Err(HttpError::HttpProtocolError),
    };
    let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let connect_timeout = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
    let tcp = timeout(
        connect_timeout,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)?
    .map_err(HttpError::Connect)?;
    if !https {
        return exchange(TokioIo::new(tcp), request, options).await;
    }
    let tls = tls.ok_or(HttpError::TlsProtocolError)?;
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let stream = timeout(connect_timeout, TlsConnector::from(tls).connect(name, tcp))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(|e| {
            tracing::warn!(%plugin, %uri, error = %e, "TLS handshake failed");
            tls_error(&e)
        })?;
    exchange(TokioIo::new(stream), request, options).await
}

/// The request and its answer over an open connection.
async fn exchange(
    io: impl Read + Write + Unpin + Send + 'static,
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
) -> SendResult {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    // Driven beside the exchange; dropped if the plugin drops the answer.
    let connection = wasmtime_wasi::runtime::spawn(connection);
    // The request line carries the path only.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(
        options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT),
        sender.send_request(request),
    )
    .await
    .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
    let io = async move { connection.await.map_err(HttpError::from) };
    Ok((response, Box::new(io) as IoFuture))
}

/// What the guest is told of a failed TLS handshake.
fn tls_error(e: &std::io::Error) -> HttpError {
    let cause = e.get_ref().and_then(|c| c.downcast_ref::<rustls::Error>());
    match cause {
        Some(rustls::Error::InvalidCertificate(_)) => HttpError::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => HttpError::TlsProtocolError,
    }
}

/// Ends an answer's body with a timeout error at a fixed instant, and
/// counts each piece that arrives as progress.
struct DeadlineBody {
    inner: WasiBody,
    sleep: Pin<Box<tokio::time::Sleep>>,
    progress: Progress,
}

impl DeadlineBody {
    fn new(inner: WasiBody, deadline: tokio::time::Instant, progress: Progress) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            progress,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            self.progress.bump();
            return Poll::Ready(frame);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::HttpResponseTimeout))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
