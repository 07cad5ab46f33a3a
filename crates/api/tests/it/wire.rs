//! A raw HTTP/1.1 client over real TCP, for what `oneshot` cannot show:
//! lying `Content-Length`, chunked bodies, slow clients, many connections.
//! Also the check that an answer leaks nothing of the code behind it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use sessionlake_api::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The router served by [`sessionlake_api::serve_with`] on 127.0.0.1:0.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `router` with the given connection limits.
    pub async fn start(router: Router, options: ServeOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(sessionlake_api::serve_with(listener, router, shutdown, options));
        Self { addr, stop: Some(stop), task }
    }

    /// Resolves the server's shutdown future.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether `serve_with` has returned.
    pub fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Signals shutdown and waits (at most `within`) for the server to return.
    pub async fn stop(mut self, within: Duration) {
        self.signal_stop();
        tokio::time::timeout(within, &mut self.task)
            .await
            .expect("the server stops once its connections are done")
            .unwrap()
            .unwrap();
    }
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (framed by Content-Length).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {} {}", self.status, self.text()))
    }

    /// Asserts a JSON `{"detail": …}` error body that leaks nothing.
    pub fn assert_json_detail(&self, what: &str) {
        assert!(
            self.header("content-type").is_some_and(|value| value.starts_with("application/json")),
            "{what}: {:?}",
            self
        );
        assert!(self.json()["detail"].is_string(), "{what}: {}", self.text());
        assert_no_internals(what, &self.text());
    }
}

/// One client connection, reading responses as they come.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.unwrap())
    }

    /// Over a connected socket.
    pub fn from_stream(stream: TcpStream) -> Self {
        Self { stream, buffer: Vec::new() }
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Closes the sending side (the server reads EOF).
    pub async fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }

    /// The next response; `None` if the server closed the connection (or
    /// reset it) before sending a byte of one.
    pub async fn response(&mut self) -> std::io::Result<Option<RawResponse>> {
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            if self.fill().await? == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "response cut in its head"));
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map(|(_, value)| value.parse().unwrap())
            .unwrap_or_else(|| panic!("every answer of this API is framed by Content-Length: {head}"));
        let body_start = head_end + 4;
        while self.buffer.len() < body_start + length {
            if self.fill().await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "response cut in its body"));
            }
        }
        let body = self.buffer[body_start..body_start + length].to_vec();
        self.buffer.drain(..body_start + length);
        Ok(Some(RawResponse { status, headers, body }))
    }

    /// Waits until the server closes the connection (EOF or reset), at most
    /// `within`; returns how long that took, or `None` if it is still open.
    /// Bytes arriving meanwhile are kept for [`Conn::response`].
    pub async fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let started = tokio::time::Instant::now();
        let closed = tokio::time::timeout(within, async {
            loop {
                match self.fill().await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        closed.ok().map(|()| started.elapsed())
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream.read(&mut chunk).await?;
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(read)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// A request head (HTTP/1.1) with the given extra header lines.
pub fn head(method: &str, path: &str, headers: &[&str]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// `body` in the chunked transfer coding, in chunks of `chunk` bytes.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk * 8 + 8);
    for piece in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Text that must never be in an answer: file paths, panics, backtraces,
/// Rust paths and `Debug` output of Rust values.
const INTERNALS: [&str; 16] = [
    "/src/",
    ".rs",
    "/root/",
    "/home/",
    "/cargo/",
    "panicked",
    "backtrace",
    "stack",
    "::",
    "thread '",
    "Some(",
    "None",
    "Ok(",
    "Err(",
    "Box<",
    "Vec<",
];

/// Asserts that `text` (an answer) shows nothing of the code behind it.
pub fn assert_no_internals(what: &str, text: &str) {
    let lower = text.to_lowercase();
    for word in INTERNALS {
        let found = if word.chars().any(char::is_uppercase) { text.contains(word) } else { lower.contains(word) };
        assert!(!found, "{what}: the answer shows internals ({word:?}): {text}");
    }
    // `Debug` output of a struct: `Name { field: …`, an unquoted field name.
    let bytes = text.as_bytes();
    for (index, _) in text.match_indices(" { ") {
        let rest = &bytes[index + 3..];
        let name_length = rest.iter().take_while(|b| b.is_ascii_lowercase() || **b == b'_').count();
        assert!(
            name_length == 0 || !rest[name_length..].starts_with(b": "),
            "{what}: the answer shows a Rust value's Debug output: {text}"
        );
    }
}
