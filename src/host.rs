//! The one place that calls the host. Every call returns a `Result`: the SDK's trait defaults
//! unwrap host statuses, and a panic kills the VM for every later request.
//!
//! Calls that carry request data (the header map, header removal) go straight to the proxy-wasm
//! ABI in [`abi`]: the SDK's `get_map` and `get_map_bytes` decode names and values with
//! `String::from_utf8(..).unwrap()`, so one header byte above 0x7F would panic inside the
//! dependency, and they panic on any status they did not expect. Here the bytes go to
//! `keygate_core::hostmap`, and every status is a value.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

/// A failed host call: which call, and the ABI status code the host gave, whatever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub status: u32,
}

impl HostError {
    /// Another worker wrote the shared-data key since its CAS token was read.
    pub fn is_cas_mismatch(&self) -> bool {
        self.status == Status::CasMismatch as u32
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call {} failed: status {}", self.call, self.status)
    }
}

pub type HostResult<T> = Result<T, HostError>;

fn tag<T>(call: &'static str, r: Result<T, Status>) -> HostResult<T> {
    r.map_err(|status| HostError {
        call,
        status: status as u32,
    })
}

/// Wall-clock time, unix seconds.
pub fn now_secs() -> HostResult<u64> {
    let t = tag("get_current_time", hostcalls::get_current_time())?;
    Ok(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

pub fn plugin_configuration() -> HostResult<Option<Vec<u8>>> {
    tag(
        "get_buffer",
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX),
    )
}

pub fn set_tick_period(period: Duration) -> HostResult<()> {
    tag("set_tick_period", hostcalls::set_tick_period(period))
}

pub fn define_counter(name: &str) -> HostResult<u32> {
    tag(
        "define_metric",
        hostcalls::define_metric(MetricType::Counter, name),
    )
}

pub fn increment_counter(id: u32) -> HostResult<()> {
    tag("increment_metric", hostcalls::increment_metric(id, 1))
}

pub fn log_critical(message: &str) {
    // Nothing sensible is left to do if even logging fails.
    let _ = hostcalls::log(LogLevel::Critical, message);
}

/// All request headers, pseudo-headers (`:method`, `:path`) included, serialized as the ABI
/// gives them (decode with `keygate_core::hostmap::decode`): one host call.
pub fn request_headers() -> HostResult<Vec<u8>> {
    abi::request_header_pairs()
}

/// Removes every value of header `name`, which may be any bytes the client sent.
pub fn remove_request_header(name: &[u8]) -> HostResult<()> {
    abi::remove_request_header(name)
}

/// The raw proxy-wasm ABI calls. The only `unsafe` code in keygate: pointers handed to the host
/// and buffers it allocated through the SDK's `proxy_on_memory_allocate` export.
#[allow(unsafe_code)]
mod abi {
    use std::ptr::null_mut;

    use super::{HostError, HostResult};

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;
    /// `MapType::HttpRequestHeaders` in the ABI.
    const HTTP_REQUEST_HEADERS: u32 = 0;

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
    }

    /// Native builds (unit tests of the glue) have no host: every call fails cleanly.
    #[cfg(not(target_arch = "wasm32"))]
    unsafe fn proxy_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
        10
    }
    #[cfg(not(target_arch = "wasm32"))]
    unsafe fn proxy_remove_header_map_value(_: u32, _: *const u8, _: usize) -> u32 {
        10
    }

    pub fn request_header_pairs() -> Result<Vec<u8>, HostError> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer and a size; on success the pointer is null or a
        // buffer of `size` bytes it allocated with our allocator, which we now own.
        let status =
            unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) };
        if status != OK {
            return Err(HostError {
                call: "proxy_get_header_map_pairs",
                status,
            });
        }
        if data.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: see above; the SDK's allocator made this buffer with `Vec::with_capacity(size)`.
        Ok(unsafe { Vec::from_raw_parts(data, size, size) })
    }

    pub fn remove_request_header(name: &[u8]) -> HostResult<()> {
        // SAFETY: `name` is a live slice for the duration of the call; the host only reads it.
        let status = unsafe {
            proxy_remove_header_map_value(HTTP_REQUEST_HEADERS, name.as_ptr(), name.len())
        };
        match status {
            OK | NOT_FOUND => Ok(()),
            status => Err(HostError {
                call: "proxy_remove_header_map_value",
                status,
            }),
        }
    }
}

/// Sets `name` to `value`, replacing any values it had.
pub fn set_request_header(name: &str, value: &str) -> HostResult<()> {
    tag(
        "set_map_value",
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)),
    )
}

/// Adds a value for `name`, keeping any it had. Cheaper than [`set_request_header`] for a
/// header known to be absent.
pub fn add_request_header(name: &str, value: &str) -> HostResult<()> {
    tag(
        "add_map_value",
        hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value),
    )
}

/// Envoy's name for the matched route, if it has one.
pub fn route_name() -> HostResult<Option<String>> {
    let bytes = tag(
        "get_property",
        hostcalls::get_property(vec!["xds", "route_name"]),
    )?;
    Ok(bytes.and_then(|b| String::from_utf8(b).ok()))
}

/// A shared-data value and its CAS token.
pub fn shared_get(key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)> {
    tag("get_shared_data", hostcalls::get_shared_data(key))
}

/// Writes shared data; fails with `CasMismatch` when another worker wrote since `cas` was read.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> HostResult<()> {
    tag(
        "set_shared_data",
        hostcalls::set_shared_data(key, Some(value), cas),
    )
}

/// An HTTP call to `cluster`; the answer arrives in `on_http_call_response` of the calling context.
pub fn dispatch_http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: &[u8],
    timeout: Duration,
) -> HostResult<u32> {
    tag(
        "dispatch_http_call",
        hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout),
    )
}

/// The `:status` of the HTTP call answer being delivered; `None` when the call failed (reset,
/// timeout, no healthy upstream).
pub fn call_response_status() -> HostResult<Option<u16>> {
    // Bytes, not the SDK's `get_map_value`, which unwraps UTF-8 decoding of the value.
    let status = tag(
        "get_map_value_bytes",
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status"),
    )?;
    Ok(status
        .as_deref()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok()))
}

pub fn call_response_body(size: usize) -> HostResult<Option<Vec<u8>>> {
    tag(
        "get_buffer",
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size),
    )
}

pub fn send_response(status: u32, headers: &[(&str, String)], body: &str) -> HostResult<()> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    tag(
        "send_http_response",
        hostcalls::send_http_response(status, headers, Some(body.as_bytes())),
    )
}

pub fn resume_request() -> HostResult<()> {
    tag("resume_http_request", hostcalls::resume_http_request())
}

/// Makes later host calls act on the stream `context_id`. Fails when that stream is gone.
pub fn set_effective_context(context_id: u32) -> HostResult<()> {
    tag(
        "set_effective_context",
        hostcalls::set_effective_context(context_id),
    )
}
