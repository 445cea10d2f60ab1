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
