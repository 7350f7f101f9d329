//! A plugin's stdout and stderr: each line it writes becomes one log line
//! (`tracing`, with the plugin's name). A line is cut at [`MAX_LINE`] bytes
//! and what the guest writes past that, up to its next newline, is dropped,
//! so a guest cannot make the host buffer without end.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::warnings::Warnings;

/// Longest line logged, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 4096;
/// Bytes a guest may hand over in one write.
const WRITE_PERMIT: usize = 64 * 1024;

/// The plugin's name as its log lines show it; set once it has described
/// itself, shared with the streams already handed out.
#[derive(Debug, Clone, Default)]
pub struct LogName(Arc<RwLock<String>>);

impl LogName {
    pub fn new(name: &str) -> Self {
        Self(Arc::new(RwLock::new(name.to_owned())))
    }

    pub fn set(&self, name: &str) {
        name.clone_into(&mut self.0.write().unwrap_or_else(|p| p.into_inner()));
    }

    fn get(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Which of the two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Logged at `info`.
    Stdout,
    /// Logged at `warn`, and kept as the plugin's last warning.
    Stderr,
}

/// Splits bytes into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
struct Lines {
    pending: Vec<u8>,
    /// The line in progress was cut: drop bytes until its newline.
    cut: bool,
}

impl Lines {
    /// Feeds `bytes`; calls `emit` with each complete line (and whether it
    /// was cut).
    fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (chunk, rest, ends_line) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                None => (bytes, &[][..], false),
            };
            if !self.cut {
                let room = MAX_LINE - self.pending.len();
                if chunk.len() > room {
                    self.pending.extend_from_slice(&chunk[..room]);
                    emit(trim_cr(&self.pending), true);
                    self.pending.clear();
                    self.cut = true;
                } else {
                    self.pending.extend_from_slice(chunk);
                }
            }
            if ends_line {
                if !self.cut {
                    emit(trim_cr(&self.pending), false);
                }
                self.pending.clear();
                self.cut = false;
            }
            bytes = rest;
        }
    }

    /// The unfinished last line, if any.
    fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.pending.is_empty() && !self.cut {
            emit(trim_cr(&self.pending), false);
        }
        self.pending.clear();
        self.cut = false;
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

struct Shared {
    name: LogName,
    stream: Stream,
    warnings: Arc<Warnings>,
    lines: Mutex<Lines>,
}

impl Shared {
    fn write(&self, bytes: &[u8]) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.feed(bytes, |line, cut| self.emit(line, cut));
    }

    fn emit(&self, line: &[u8], cut: bool) {
        let plugin = self.name.get();
        let text = String::from_utf8_lossy(line);
        let cut = if cut { " [line cut]" } else { "" };
        match self.stream {
            Stream::Stdout => tracing::info!(%plugin, stream = "stdout", "{text}{cut}"),
            Stream::Stderr => {
                tracing::warn!(%plugin, stream = "stderr", "{text}{cut}");
                self.warnings.note(&plugin, &text);
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let lines = self.lines.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut last = Vec::new();
        lines.finish(|line, _| last.extend_from_slice(line));
        if !last.is_empty() {
            self.emit(&last, false);
        }
    }
}

/// One of a plugin's output streams, as WASI's `StdoutStream`.
#[derive(Clone)]
pub struct PluginOutput(Arc<Shared>);

impl PluginOutput {
    pub fn new(name: LogName, stream: Stream, warnings: Arc<Warnings>) -> Self {
        Self(Arc::new(Shared {
            name,
            stream,
            warnings,
            lines: Mutex::default(),
        }))
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for PluginOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(writes: &[&[u8]]) -> Vec<(String, bool)> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for w in writes {
            lines.feed(w, |l, cut| {
                out.push((String::from_utf8_lossy(l).into_owned(), cut))
            });
        }
        lines.finish(|l, cut| out.push((String::from_utf8_lossy(l).into_owned(), cut)));
        out
    }

    #[test]
    fn one_log_line_per_written_line_across_writes() {
        let lines = split(&[b"hel", b"lo\r\nwor", b"ld\n\n", b"tail"]);
        let texts: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(texts, ["hello", "world", "", "tail"]);
        assert!(lines.iter().all(|(_, cut)| !cut));
    }

    #[test]
    fn a_line_without_end_is_cut_and_its_rest_dropped() {
        let huge = vec![b'x'; 3 * MAX_LINE + 17];
        let lines = split(&[&huge, &huge, b"\xff\xfe\nnext\n"]);
        assert_eq!(
            lines.len(),
            2,
            "{:?}",
            lines.iter().map(|l| l.0.len()).collect::<Vec<_>>()
        );
        assert_eq!(lines[0].0.len(), MAX_LINE);
        assert!(lines[0].1);
        assert_eq!(lines[1], ("next".to_owned(), false));
        // Invalid UTF-8 in a short line is shown, not refused.
        let lines = split(&[b"caf\xc3\n\xff\n"]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].0.starts_with("caf"));
    }
}
