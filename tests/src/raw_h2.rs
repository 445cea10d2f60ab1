//! A byte-exact HTTP/2 cleartext client (prior knowledge, no `Upgrade`), for header names, values
//! and paths that HTTP/2 libraries refuse to send. `h2` and `http` reject control characters in
//! values and anything but `/`-relative ASCII in `:path`; an attacker's client does not.
//!
//! One request per connection, on stream 1. The request's header block is written with HPACK's
//! "literal without indexing, new name" representation, so every name and value goes on the wire
//! exactly as given. Of the response only `:status` is decoded (static table, or a literal whose
//! value is plain or Huffman-coded digits); the body is collected from DATA frames. A fresh
//! connection per request means the response's header block cannot refer to earlier entries of
//! the dynamic table.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw_http::Reply;

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// How Envoy ended a stream.
#[derive(Debug, Clone)]
pub enum H2Outcome {
    /// A response. `headers` is empty: only `:status` is decoded. `status` is 0 if Envoy coded it
    /// in a way this client does not decode.
    Response(Reply),
    /// `RST_STREAM` with this error code (1 is `PROTOCOL_ERROR`): the codec refused the request.
    Reset(u32),
    /// `GOAWAY` with this error code before any response: the codec refused the connection.
    GoAway(u32),
    /// The connection closed with no response, no reset and no `GOAWAY`.
    Closed,
}

impl H2Outcome {
    /// The response, if there was one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Self::Response(reply) => Some(reply),
            _ => None,
        }
    }

    /// A short description, for assertion messages.
    pub fn summary(&self) -> String {
        match self {
            Self::Response(reply) => reply.summary(),
            Self::Reset(code) => format!("RST_STREAM error {code}"),
            Self::GoAway(code) => format!("GOAWAY error {code}"),
            Self::Closed => "connection closed without a response".to_owned(),
        }
    }
}

/// Sends one request on a fresh h2c connection to `addr`. `headers` is the whole header block,
/// pseudo-headers first (`:method`, `:scheme`, `:authority`, `:path`), names and values as bytes.
pub async fn send(addr: SocketAddr, headers: &[(&[u8], &[u8])]) -> Result<H2Outcome> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut out = PREFACE.to_vec();
    push_frame(&mut out, SETTINGS, 0, 0, &[]);
    push_frame(
        &mut out,
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &header_block(headers),
    );
    stream.write_all(&out).await?;
    tokio::time::timeout(RESPONSE_TIMEOUT, read_outcome(&mut stream))
        .await
        .with_context(|| format!("no end of stream 1 from {addr} in {RESPONSE_TIMEOUT:?}"))?
}

/// A request with the usual pseudo-headers for `GET path` plus `extra`.
pub async fn get(addr: SocketAddr, path: &[u8], extra: &[(&[u8], &[u8])]) -> Result<H2Outcome> {
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", path),
    ];
    headers.extend_from_slice(extra);
    send(addr, &headers).await
}

async fn read_outcome(stream: &mut TcpStream) -> Result<H2Outcome> {
    let mut status = None;
    let mut block = Vec::new();
    let mut body = Vec::new();
    let mut ended = false;
    loop {
        let Some((kind, flags, id, payload)) = read_frame(stream).await? else {
            return Ok(match status {
                Some(status) => response(status, &body),
                None => H2Outcome::Closed,
            });
        };
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let mut ack = Vec::new();
                push_frame(&mut ack, SETTINGS, ACK, 0, &[]);
                stream.write_all(&ack).await?;
            }
            PING if flags & ACK == 0 => {
                let mut pong = Vec::new();
                push_frame(&mut pong, PING, ACK, 0, &payload);
                stream.write_all(&pong).await?;
            }
            HEADERS | CONTINUATION if id == 1 => {
                let fragment = if kind == HEADERS {
                    headers_fragment(flags, &payload)?
                } else {
                    &payload[..]
                };
                block.extend_from_slice(fragment);
                ended |= kind == HEADERS && flags & END_STREAM != 0;
                if flags & END_HEADERS != 0 {
                    // The first block is the response head; a later one holds trailers.
                    status.get_or_insert_with(|| decode_status(&block).unwrap_or(0));
                    block.clear();
                    if ended {
                        return Ok(response(status.unwrap_or(0), &body));
                    }
                }
            }
            DATA if id == 1 => {
                body.extend_from_slice(data_payload(flags, &payload)?);
                if flags & END_STREAM != 0 {
                    return Ok(response(status.unwrap_or(0), &body));
                }
            }
            RST_STREAM if id == 1 => {
                return Ok(H2Outcome::Reset(be32(&payload).unwrap_or(0)));
            }
            GOAWAY => {
                let code = payload.get(4..8).and_then(be32).unwrap_or(0);
                if let Some(status) = status {
                    return Ok(response(status, &body));
                }
                return Ok(H2Outcome::GoAway(code));
            }
            _ => {}
        }
    }
}

fn response(status: u16, body: &[u8]) -> H2Outcome {
    H2Outcome::Response(Reply {
        status,
        headers: Vec::new(),
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

/// One frame, or `None` at a clean end of the connection.
async fn read_frame(stream: &mut TcpStream) -> Result<Option<(u8, u8, u32, Vec<u8>)>> {
    let mut head = [0u8; 9];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(None)
        }
        Err(error) => return Err(error.into()),
    }
    let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await?;
    Ok(Some((head[3], head[4], id, payload)))
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, id: u32, payload: &[u8]) {
    let length = payload.len().to_be_bytes();
    out.extend_from_slice(&length[length.len() - 3..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
}

fn be32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// The header block fragment of a HEADERS frame, without padding and priority.
fn headers_fragment(flags: u8, payload: &[u8]) -> Result<&[u8]> {
    let payload = unpad(flags, payload)?;
    let skip = if flags & PRIORITY != 0 { 5 } else { 0 };
    payload
        .get(skip..)
        .context("HEADERS frame shorter than its priority")
}

fn data_payload(flags: u8, payload: &[u8]) -> Result<&[u8]> {
    unpad(flags, payload)
}

fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8]> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let pad = usize::from(*payload.first().context("empty padded frame")?);
    if pad + 1 > payload.len() {
        bail!("padding longer than the frame");
    }
    Ok(&payload[1..payload.len() - pad])
}

/// HPACK: every field as "literal header field without indexing, new name" (RFC 7541 6.2.2),
/// strings not Huffman-coded.
fn header_block(headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(0x00);
        push_string(&mut block, name);
        push_string(&mut block, value);
    }
    block
}

fn push_string(out: &mut Vec<u8>, bytes: &[u8]) {
    push_integer(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// RFC 7541 5.1: `value` with an `n`-bit prefix, the first byte's other bits from `first`.
fn push_integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value % 0x80) as u8 | 0x80);
        value /= 0x80;
    }
    out.push(value as u8);
}

/// Reads an `n`-bit-prefix integer at `block[*at]`.
fn read_integer(block: &[u8], at: &mut usize, n: u32) -> Option<usize> {
    let max = (1usize << n) - 1;
    let mut value = usize::from(*block.get(*at)?) & max;
    *at += 1;
    if value < max {
        return Some(value);
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(*at)?;
        *at += 1;
        value += usize::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// A string literal at `block[*at]`: whether it is Huffman-coded, and its bytes.
fn read_string<'b>(block: &'b [u8], at: &mut usize) -> Option<(bool, &'b [u8])> {
    let huffman = *block.get(*at)? & 0x80 != 0;
    let length = read_integer(block, at, 7)?;
    let bytes = block.get(*at..*at + length)?;
    *at += length;
    Some((huffman, bytes))
}

/// `:status` of a response header block (static table indices 8 to 14 are `:status`).
fn decode_status(block: &[u8]) -> Option<u16> {
    const STATIC_STATUS: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let is_status = |index: usize| (8..=14).contains(&index);
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        if first & 0x80 != 0 {
            let index = read_integer(block, &mut at, 7)?;
            if is_status(index) {
                return STATIC_STATUS.get(index - 8).copied();
            }
            continue;
        }
        if first & 0xe0 == 0x20 {
            read_integer(block, &mut at, 5)?;
            continue;
        }
        let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
        let index = read_integer(block, &mut at, prefix)?;
        let named_status = if index == 0 {
            let (huffman, name) = read_string(block, &mut at)?;
            !huffman && name == b":status"
        } else {
            is_status(index)
        };
        let (huffman, value) = read_string(block, &mut at)?;
        if named_status {
            let digits = if huffman {
                huffman_digits(value)?
            } else {
                String::from_utf8(value.to_vec()).ok()?
            };
            return digits.parse().ok();
        }
    }
    None
}

/// Decodes a Huffman-coded string of ASCII digits (RFC 7541 Appendix B: `0`-`2` are the 5-bit
/// codes 0-2, `3`-`9` the 6-bit codes 0x19-0x1f; padding is up to 7 one bits). `None` for
/// anything else.
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1))
        .collect();
    let take = |from: usize, n: usize| -> Option<u8> {
        bits.get(from..from + n)
            .map(|b| b.iter().fold(0u8, |acc, bit| acc << 1 | bit))
    };
    let mut digits = String::new();
    let mut at = 0;
    while at < bits.len() {
        let rest = &bits[at..];
        if rest.len() < 8 && rest.iter().all(|bit| *bit == 1) {
            break;
        }
        match take(at, 5)? {
            code @ 0..=2 => {
                digits.push(char::from(b'0' + code));
                at += 5;
            }
            _ => match take(at, 6)? {
                code @ 0x19..=0x1f => {
                    digits.push(char::from(b'3' + (code - 0x19)));
                    at += 6;
                }
                _ => return None,
            },
        }
    }
    Some(digits)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_across_the_prefix_boundary() {
        for value in [0, 1, 126, 127, 128, 300, 16_384] {
            let mut out = Vec::new();
            push_integer(&mut out, 0, 7, value);
            let mut at = 0;
            assert_eq!(read_integer(&out, &mut at, 7), Some(value));
            assert_eq!(at, out.len());
        }
    }

    #[test]
    fn status_is_read_from_the_static_table_and_from_literals() {
        // Indexed :status 200 (index 8) after a dynamic table size update.
        assert_eq!(decode_status(&[0x3f, 0xe1, 0x1f, 0x88]), Some(200));
        // Literal with incremental indexing, name index 8, plain "401".
        assert_eq!(decode_status(&[0x48, 0x03, b'4', b'0', b'1']), Some(401));
        // The same, Huffman-coded: "403" is 011010 00000 011001 and seven padding bits.
        assert_eq!(huffman_digits(&[0x68, 0x0c, 0xff]).as_deref(), Some("403"));
        assert_eq!(decode_status(&[0x48, 0x83, 0x68, 0x0c, 0xff]), Some(403));
    }

    #[test]
    fn the_request_block_keeps_every_byte() {
        let block = header_block(&[(b"x-a", b"\x01\xff")]);
        assert_eq!(block, [0x00, 3, b'x', b'-', b'a', 2, 0x01, 0xff]);
    }
}
