//! A byte-exact HTTP/1.1 client. URL libraries (reqwest's included) resolve `..`, `%2e%2e` and
//! friends before sending, which would hide exactly the path tricks the filter must withstand; this
//! client writes the request line as given.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::echo::{EchoedRequest, ECHO_MARK};

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);

/// A response, from either client.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Lower-case names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// What the echo upstream saw, if this answer came from it rather than from the filter or
    /// Envoy.
    pub fn upstream(&self) -> Option<EchoedRequest> {
        serde_json::from_str::<EchoedRequest>(&self.body)
            .ok()
            .filter(|echoed| echoed.echoed_by == ECHO_MARK)
    }

    /// Status and body, for assertion messages.
    pub fn summary(&self) -> String {
        format!("{} {}", self.status, self.body)
    }
}

/// Writes `request` (a whole request head, byte for byte, bytes a `&str` could not hold included)
/// to `addr` on a fresh connection and reads the response until Envoy closes the connection, so
/// the request should carry `connection: close`.
pub async fn send_bytes(addr: SocketAddr, request: &[u8]) -> Result<Reply> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.write_all(request).await?;
    let mut raw = Vec::new();
    let shown = String::from_utf8_lossy(&request[..request.len().min(80)]).into_owned();
    tokio::time::timeout(RESPONSE_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .with_context(|| format!("no complete response to {shown:?} in {RESPONSE_TIMEOUT:?}"))??;
    parse_response(&raw).with_context(|| format!("response to {shown:?}"))
}

/// Sends `method path` to `addr` with `headers` (plus `host` and `connection: close`) and reads the
/// whole response.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");

    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(RESPONSE_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .with_context(|| {
            format!("no complete response to {method} {path} in {RESPONSE_TIMEOUT:?}")
        })??;
    parse_response(&raw).with_context(|| format!("response to {method} {path}"))
}

/// One HTTP/1.1 connection kept open across requests, for sending thousands of byte-exact
/// requests quickly. Opened on first use and again whenever the server closed it.
#[derive(Debug)]
pub struct KeepAlive {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    /// Sends `method path` with `headers` (plus `host`) and reads one response. A reused connection
    /// the server closed in the meantime is replaced, and the request sent once more on the new one.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let reused = self.stream.is_some();
        match self.exchange(request.as_bytes()).await {
            Ok(reply) => Ok(reply),
            Err(Exchange::Stale) if reused => match self.exchange(request.as_bytes()).await {
                Ok(reply) => Ok(reply),
                Err(Exchange::Stale) => bail!("connection closed without a response to {path}"),
                Err(Exchange::Failed(error)) => Err(error),
            },
            Err(Exchange::Stale) => bail!("connection closed without a response to {path}"),
            Err(Exchange::Failed(error)) => Err(error.context(format!("{method} {path}"))),
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Reply, Exchange> {
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?,
        };
        if stream.write_all(request).await.is_err() {
            return Err(Exchange::Stale);
        }
        let read = tokio::time::timeout(RESPONSE_TIMEOUT, read_one_response(&mut stream))
            .await
            .map_err(|_| anyhow!("no response in {RESPONSE_TIMEOUT:?}"))?;
        let (raw, keep) = match read {
            Ok(Some(read)) => read,
            Ok(None) | Err(_) => return Err(Exchange::Stale),
        };
        let reply = parse_response(&raw)?;
        if keep {
            self.stream = Some(stream);
        }
        Ok(reply)
    }
}

/// Why an exchange on a [`KeepAlive`] connection produced no reply.
enum Exchange {
    /// The connection was closed before any byte of a response arrived.
    Stale,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Exchange {
    fn from(error: anyhow::Error) -> Self {
        Self::Failed(error)
    }
}

/// Reads exactly one response from `stream`: `None` if the connection closed before its first
/// byte; otherwise the raw response and whether the connection can carry another request.
async fn read_one_response(stream: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    let close = header("connection").is_some_and(|v| v == "close");
    let complete = |raw: &[u8]| -> Option<bool> {
        let body = &raw[head_end..];
        if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            return Some(body.len() >= length);
        }
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            return Some(body.ends_with(b"0\r\n\r\n"));
        }
        None
    };
    loop {
        match complete(&raw) {
            Some(true) => return Ok(Some((raw, !close))),
            Some(false) => {}
            // No length: the body ends with the connection.
            None => {
                stream.read_to_end(&mut raw).await?;
                return Ok(Some((raw, false)));
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

fn parse_response(raw: &[u8]) -> Result<Reply> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_hex:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_length_response_is_parsed() {
        let raw = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"keygate\"\r\ncontent-length: 2\r\n\r\n{}";
        let reply = parse_response(raw).unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"keygate\"")
        );
        assert_eq!(reply.body, "{}");
    }

    #[test]
    fn chunked_response_is_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let reply = parse_response(raw).unwrap();
        assert_eq!(reply.body, "abcde");
    }
}
