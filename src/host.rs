//! The one place that calls `proxy_wasm::hostcalls`. Every call returns a `Result`: the SDK's
//! trait defaults unwrap host statuses, and a panic kills the VM for every later request.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

/// A failed host call: which call, and the status the host gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub status: Status,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call {} failed: {:?}", self.call, self.status)
    }
}

pub type HostResult<T> = Result<T, HostError>;

fn tag<T>(call: &'static str, r: Result<T, Status>) -> HostResult<T> {
    r.map_err(|status| HostError { call, status })
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

/// All request headers, pseudo-headers (`:method`, `:path`) included: one host call.
pub fn request_headers() -> HostResult<Vec<(String, String)>> {
    tag("get_map", hostcalls::get_map(MapType::HttpRequestHeaders))
}

pub fn remove_request_header(name: &str) -> HostResult<()> {
    tag(
        "remove_map_value",
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name),
    )
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
    let status = tag(
        "get_map_value",
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status"),
    )?;
    Ok(status.and_then(|s| s.parse().ok()))
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
