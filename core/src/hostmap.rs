//! The proxy-wasm ABI's serialized header map, in both directions.
//!
//! The host hands a map over as one buffer: a little-endian `u32` pair count, then a `u32` name
//! size and a `u32` value size per pair, then each name and each value followed by a NUL byte.
//! Header values are bytes: HTTP allows obs-text (0x80–0xFF), and Envoy passes such bytes on
//! HTTP/1 and HTTP/2. They stay bytes here; whoever needs text decodes a value and treats a bad
//! byte as a refusal of that request, never as a fault.
//!
//! Decoding checks every size against the buffer, so a short or inconsistent buffer is a
//! [`MapError`], and the pairs borrow from the buffer: reading a request's headers allocates one
//! `Vec` of slices.

/// A header as the host gives it: name and value, as bytes.
pub type Header<'a> = (&'a [u8], &'a [u8]);

/// Why a serialized map could not be read. The host wrote it, so this means a host bug or a
/// different ABI, and the request it belongs to fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("header map shorter than its sizes say")]
    Truncated,
    #[error("header map entry not terminated by NUL")]
    MissingNul,
    #[error("header map has bytes after its last entry")]
    TrailingBytes,
}

/// Reads a serialized map. An empty buffer is an empty map.
pub fn decode(bytes: &[u8]) -> Result<Vec<Header<'_>>, MapError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = read_u32(bytes, 0).ok_or(MapError::Truncated)? as usize;
    // Each pair needs 8 bytes of sizes and 2 NULs: a count the buffer cannot hold is refused
    // before anything is allocated for it.
    let sizes_end = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .filter(|&end| count.saturating_mul(10) <= bytes.len() && end <= bytes.len())
        .ok_or(MapError::Truncated)?;
    let mut pairs = Vec::with_capacity(count);
    let mut at = sizes_end;
    for i in 0..count {
        let sizes = 4 + i * 8;
        let name_len = read_u32(bytes, sizes).ok_or(MapError::Truncated)? as usize;
        let value_len = read_u32(bytes, sizes + 4).ok_or(MapError::Truncated)? as usize;
        let (name, next) = take_terminated(bytes, at, name_len)?;
        let (value, next) = take_terminated(bytes, next, value_len)?;
        pairs.push((name, value));
        at = next;
    }
    if at != bytes.len() {
        return Err(MapError::TrailingBytes);
    }
    Ok(pairs)
}

/// Serializes pairs the way the host reads them.
pub fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| 10 + n.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&len_u32(name.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// The values of header `name` (lowercase, as the host gives names), in order.
pub fn values<'a>(headers: &'a [Header<'a>], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |(n, _)| *n == name.as_bytes())
        .map(|(_, v)| *v)
}

/// The first value of header `name` as text; `None` when absent or not UTF-8.
pub fn text<'a>(headers: &'a [Header<'a>], name: &'a str) -> Option<&'a str> {
    values(headers, name)
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Sizes are `u32` in the ABI; nothing the filter sends comes near 4 GiB, and saturating keeps
/// an impossible input from wrapping into a wrong small size.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(chunk);
    Some(u32::from_le_bytes(word))
}

/// `len` bytes at `at`, which must be followed by a NUL; returns them and the offset after it.
fn take_terminated(bytes: &[u8], at: usize, len: usize) -> Result<(&[u8], usize), MapError> {
    let end = at.checked_add(len).ok_or(MapError::Truncated)?;
    let taken = bytes.get(at..end).ok_or(MapError::Truncated)?;
    match bytes.get(end) {
        Some(0) => Ok((taken, end + 1)),
        Some(_) => Err(MapError::MissingNul),
        None => Err(MapError::Truncated),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn encoded_maps_decode_to_the_same_pairs() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/orders?x=1"),
            (b"user-agent", b"\xa1\xb1"),
            (b"empty", b""),
            (b"nul-inside", b"a\0b"),
        ];
        let bytes = encode(&pairs);
        assert_eq!(decode(&bytes).unwrap(), pairs);
    }

    #[test]
    fn an_empty_buffer_is_an_empty_map() {
        assert_eq!(decode(&[]).unwrap(), Vec::<Header<'_>>::new());
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::<Header<'_>>::new());
    }

    #[test]
    fn bytes_above_0x7f_stay_bytes() {
        let bytes = encode(&[(b"x-api-key", b"kg_\xff\xfe")]);
        let map = decode(&bytes).unwrap();
        assert_eq!(map[0].1, b"kg_\xff\xfe");
        assert_eq!(text(&map, "x-api-key"), None);
        assert_eq!(values(&map, "x-api-key").count(), 1);
    }

    #[test]
    fn truncated_or_inconsistent_maps_are_errors() {
        let good = encode(&[(b"a", b"b"), (b"cc", b"dd")]);
        for cut in 1..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(7);
        assert_eq!(decode(&extra), Err(MapError::TrailingBytes));
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(decode(&no_nul), Err(MapError::MissingNul));
    }

    #[test]
    fn a_huge_count_is_refused_without_allocating_for_it() {
        let mut bytes = u32::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(decode(&bytes), Err(MapError::Truncated));
    }

    #[test]
    fn sizes_that_overflow_are_errors() {
        let mut bytes = 1u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"a\0b\0");
        assert_eq!(decode(&bytes), Err(MapError::Truncated));
    }
}
