//! HTTP `GET` for producers, over `wasi:http/outgoing-handler`, with the
//! answer's body read as it arrives. The host refuses every origin the
//! configuration does not grant the plugin (`--grant <plugin>=<origin>`).

use std::io::{self, Read};

use crate::__bindings::producer::wasi::http::outgoing_handler;
use crate::__bindings::producer::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingRequest, RequestOptions,
    Scheme,
};
use crate::__bindings::producer::wasi::io::streams::{InputStream, StreamError};

/// A `GET` to send. Timeouts (which the host clamps to its own limits):
/// 2 s to connect, 10 s to the first byte and between two bytes.
#[derive(Debug, Clone)]
pub struct Request {
    url: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// A `GET` of `url` (`http[s]://host[:port]/path?query`).
    pub fn get(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            headers: Vec::new(),
        }
    }

    /// Adds the header `name: value`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    /// Sends the request and waits for the answer's head. Errors start
    /// with `GET <url>:` and say what to do about a refused origin or an
    /// untrusted certificate. Any status is an answer: check
    /// [`Response::status`].
    pub fn send(self) -> Result<Response, String> {
        let url = self.url.as_str();
        let (scheme, rest) = match url.split_once("://") {
            Some(("http", rest)) => (Scheme::Http, rest),
            Some(("https", rest)) => (Scheme::Https, rest),
            _ => return Err(format!("{url:?} is not an http(s) URL")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let headers = Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value)
                .map_err(|e| format!("header {name}: {e:?}"))?;
        }
        let request = OutgoingRequest::new(headers);
        request
            .set_method(&Method::Get)
            .map_err(|()| "bad method")?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| "bad scheme")?;
        request
            .set_authority(Some(authority))
            .map_err(|()| format!("bad authority {authority:?}"))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| format!("bad path {path:?}"))?;
        // Nanoseconds.
        let options = RequestOptions::new();
        let _ = options.set_connect_timeout(Some(2_000_000_000));
        let _ = options.set_first_byte_timeout(Some(10_000_000_000));
        let _ = options.set_between_bytes_timeout(Some(10_000_000_000));

        let pending =
            outgoing_handler::handle(request, Some(options)).map_err(|e| describe(url, e))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(describe(url, code)),
            Some(Err(())) | None => return Err(format!("GET {url}: no response")),
        };
        let status = response.status();
        let headers = response.headers().entries();
        let body = response.consume().map_err(|()| "body already taken")?;
        let stream = body.stream().map_err(|()| "body stream already taken")?;
        Ok(Response {
            status,
            headers,
            body: Body {
                received: 0,
                limit: None,
                buffered: Vec::new(),
                at: 0,
                stream,
                _body: body,
                _response: response,
            },
        })
    }
}

/// An answer whose body is read as it arrives.
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
}

impl Response {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The values of header `name` (any case), in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The body, to [`Read`].
    pub fn into_body(self) -> Body {
        self.body
    }
}

/// The body of an answer; reads block until bytes arrive.
pub struct Body {
    received: u64,
    limit: Option<(u64, String)>,
    buffered: Vec<u8>,
    at: usize,
    // Dropped in this order: a stream before its body, a body before its
    // response.
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
}

impl Body {
    /// Fails reading, with the error `exceeded`, once more than `max_bytes`
    /// have arrived: this bounds the time and bandwidth of a runaway answer.
    pub fn limit(mut self, max_bytes: u64, exceeded: impl Into<String>) -> Self {
        self.limit = Some((max_bytes, exceeded.into()));
        self
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buffered.len() {
            match self.stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    self.received += chunk.len() as u64;
                    if let Some((max, exceeded)) = &self.limit
                        && self.received > *max
                    {
                        return Err(io::Error::other(exceeded.clone()));
                    }
                    self.buffered = chunk;
                    self.at = 0;
                }
                Err(StreamError::Closed) => return Ok(0),
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(io::Error::other(e.to_debug_string()));
                }
            }
        }
        let n = buf.len().min(self.buffered.len() - self.at);
        buf[..n].copy_from_slice(&self.buffered[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn describe(url: &str, code: ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            format!("GET {url}: refused by the host (origin not granted to this plugin)")
        }
        ErrorCode::TlsCertificateError => format!(
            "GET {url}: the server's TLS certificate is not trusted by the host (its CA can be added with --tls-ca-file)"
        ),
        other => format!("GET {url}: {other:?}"),
    }
}
