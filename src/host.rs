//! The one place that calls the host. Every call returns a `Result`: the SDK's trait defaults
//! unwrap host statuses, and a panic kills the VM for every later request.
//!
//! Every call but one goes straight to the proxy-wasm ABI in [`abi`]. The SDK's `hostcalls::*`
//! end in `status => panic!("unexpected status: ..")` for any status they did not expect (most
//! accept only `Ok`), and its `get_map`/`get_map_bytes` decode header names and values with
//! `String::from_utf8(..).unwrap()`, so one header byte above 0x7F would panic inside the
//! dependency. Here request bytes go to `keygate_core::hostmap`, and every status is a value:
//! [`HostError`], or `None` where "not found" means "absent".
//!
//! The exception is [`dispatch_http_call`], which stays on the SDK: see its comment.
//!
//! Logging is ours too ([`install_logger`]): the SDK's `log::Log` implementation unwraps the
//! status of `proxy_log`.

use std::fmt::Write as _;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

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

/// Wall-clock time, unix seconds.
pub fn now_secs() -> HostResult<u64> {
    Ok(abi::current_time_nanos()? / 1_000_000_000)
}

/// Wall-clock time, unix milliseconds.
pub fn now_millis() -> HostResult<u64> {
    Ok(abi::current_time_nanos()? / 1_000_000)
}

pub fn plugin_configuration() -> HostResult<Option<Vec<u8>>> {
    abi::buffer(abi::BUFFER_PLUGIN_CONFIGURATION, usize::MAX)
}

/// Ticks every `period`; a period beyond `u32::MAX` milliseconds (49 days) is clamped to it.
pub fn set_tick_period(period: Duration) -> HostResult<()> {
    abi::set_tick_period_millis(u32::try_from(period.as_millis()).unwrap_or(u32::MAX))
}

pub fn define_counter(name: &str) -> HostResult<u32> {
    abi::define_counter(name)
}

pub fn increment_counter(id: u32) -> HostResult<()> {
    abi::increment_metric(id, 1)
}

pub fn add_to_counter(id: u32, n: i64) -> HostResult<()> {
    abi::increment_metric(id, n)
}

pub fn log_critical(message: &str) {
    // Nothing sensible is left to do if even logging fails.
    let _ = abi::log(abi::LOG_CRITICAL, message);
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

/// Sets `name` to `value`, replacing any values it had.
pub fn set_request_header(name: &str, value: &str) -> HostResult<()> {
    abi::replace_request_header(name.as_bytes(), value.as_bytes())
}

/// Adds a value for `name`, keeping any it had. Cheaper than [`set_request_header`] for a
/// header known to be absent.
pub fn add_request_header(name: &str, value: &str) -> HostResult<()> {
    abi::add_request_header(name.as_bytes(), value.as_bytes())
}

/// Envoy's name for the matched route, if it has one.
pub fn route_name() -> HostResult<Option<String>> {
    let bytes = abi::property(&property_path(&["xds", "route_name"]))?;
    Ok(bytes.and_then(|b| String::from_utf8(b).ok()))
}

/// A shared-data value and its CAS token.
pub fn shared_get(key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)> {
    abi::shared_data(key)
}

/// Writes shared data; fails with `CasMismatch` when another worker wrote since `cas` was read.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> HostResult<()> {
    abi::set_shared_data(key, value, cas.unwrap_or(0))
}

/// Registers this VM's shared queue `name`; the host then calls the registering root context's
/// `on_queue_ready` (on this worker's thread) after each [`enqueue`] to it.
pub fn register_queue(name: &str) -> HostResult<u32> {
    abi::register_shared_queue(name)
}

/// Puts `value` on queue `id`; its root context hears of it once this event-loop turn's other
/// ready events have run.
pub fn enqueue(id: u32, value: &[u8]) -> HostResult<()> {
    abi::enqueue_shared_queue(id, value)
}

/// Takes the oldest value off queue `id`; `None` when it is empty.
pub fn dequeue(id: u32) -> HostResult<Option<Vec<u8>>> {
    abi::dequeue_shared_queue(id)
}

/// An HTTP call to `cluster`; the answer arrives in `on_http_call_response` of the calling context.
///
/// The one call left on the SDK. Its dispatcher records which context made the call (the
/// crate-private `register_callout`) and, when the answer arrives, looks the token up with
/// `.expect("invalid token_id")`: a token from a raw `proxy_http_call` would panic there.
///
/// The SDK's `dispatch_http_call` panics on any status but `Ok`, `BadArgument` and
/// `InternalFailure`. What Envoy can return, read in proxy-wasm-cpp-host `src/exports.cc`
/// `http_call` (commit 52a02917) and Envoy `source/extensions/common/wasm/context.cc`
/// `Context::httpCall` (commit b40935ac):
/// - `BadArgument`: negative timeout (a `Duration` above `i32::MAX` ms), unknown cluster, or
///   headers without `:path`, `:method` or `:authority`;
/// - `InternalFailure`: the async client refused the request, or the `proxy_http_call`
///   capability is restricted (the stub cpp-host registers in its place returns it);
/// - `InvalidMemoryAccess` (6): only when a pointer and size lie outside the VM's memory. The SDK
///   passes its own live buffers (serialized headers and trailers, `body`, a local token), so
///   that cannot happen from here.
///
/// So every status this call can get from Envoy is one the SDK turns into an `Err`.
pub fn dispatch_http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: &[u8],
    timeout: Duration,
) -> HostResult<u32> {
    hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout).map_err(|status| {
        HostError {
            call: "dispatch_http_call",
            status: status as u32,
        }
    })
}

/// The `:status` of the HTTP call answer being delivered; `None` when the call failed (reset,
/// timeout, no healthy upstream).
pub fn call_response_status() -> HostResult<Option<u16>> {
    let status = abi::map_value(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, b":status")?;
    Ok(status
        .as_deref()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok()))
}

pub fn call_response_body(size: usize) -> HostResult<Option<Vec<u8>>> {
    abi::buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, size)
}

/// Answers the request locally with `status`, `headers` and `body`; the upstream never sees it.
pub fn send_response(status: u32, headers: &[(&str, String)], body: &str) -> HostResult<()> {
    abi::send_local_response(status, &local_response_headers(headers), body.as_bytes())
}

pub fn resume_request() -> HostResult<()> {
    abi::continue_request()
}

/// Makes later host calls act on the stream `context_id`. Fails when that stream is gone.
pub fn set_effective_context(context_id: u32) -> HostResult<()> {
    abi::set_effective_context(context_id)
}

/// Installs keygate's logger for the `log` macros, at level Info. Call once, first: a second
/// call, or one after another logger was installed, leaves that logger in place.
pub fn install_logger() {
    // `set_logger` fails only when a logger is already installed; that one keeps working.
    let _ = log::set_logger(&HOST_LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// `log` records to the host's log (`proxy_log`). Unlike the SDK's logger, a failed log call
/// is dropped, not unwrapped.
struct HostLogger;

static HOST_LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (level, message) = log_line(record);
        // Nothing sensible is left to do if logging fails.
        let _ = abi::log(level, &message);
    }

    fn flush(&self) {}
}

/// The ABI log level and the message for a record: the message alone, as the SDK's logger
/// wrote it (Envoy prefixes the plugin's name). A `Display` impl that fails truncates the message
/// instead of panicking, as `to_string` would.
fn log_line(record: &log::Record<'_>) -> (u32, String) {
    let level = match record.level() {
        log::Level::Trace => abi::LOG_TRACE,
        log::Level::Debug => abi::LOG_DEBUG,
        log::Level::Info => abi::LOG_INFO,
        log::Level::Warn => abi::LOG_WARN,
        log::Level::Error => abi::LOG_ERROR,
    };
    let mut message = String::new();
    let _ = message.write_fmt(*record.args());
    (level, message)
}

/// A property path as `proxy_get_property` reads it: the segments joined by NUL bytes.
fn property_path(segments: &[&str]) -> Vec<u8> {
    let mut path = Vec::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            path.push(0);
        }
        path.extend_from_slice(segment.as_bytes());
    }
    path
}

/// Local-response headers in the ABI's map serialization.
fn local_response_headers(headers: &[(&str, String)]) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
        .collect();
    keygate_core::hostmap::encode(&pairs)
}

/// The raw proxy-wasm ABI calls (ABI 0.2.1; signatures as the SDK 0.2.5 declares them in
/// `hostcalls.rs`, with enums as their `u32` codes and statuses as plain `u32`, so a status the
/// SDK does not know is still a value). The only `unsafe` code in keygate: pointers handed to the
/// host and buffers it allocated through the SDK's `proxy_on_memory_allocate` export.
#[allow(unsafe_code)]
mod abi {
    use std::ptr::null;
    use std::ptr::null_mut;

    use super::{HostError, HostResult};

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;
    const EMPTY: u32 = 7;

    /// `MapType` codes.
    const MAP_HTTP_REQUEST_HEADERS: u32 = 0;
    pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
    /// `BufferType` codes.
    pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
    pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
    /// `StreamType::HttpRequest`.
    const STREAM_HTTP_REQUEST: u32 = 0;
    /// `MetricType::Counter`.
    const METRIC_COUNTER: u32 = 0;
    /// `LogLevel` codes.
    pub const LOG_TRACE: u32 = 0;
    pub const LOG_DEBUG: u32 = 1;
    pub const LOG_INFO: u32 = 2;
    pub const LOG_WARN: u32 = 3;
    pub const LOG_ERROR: u32 = 4;
    pub const LOG_CRITICAL: u32 = 5;
    /// `send_local_response` without a gRPC status.
    const NO_GRPC_STATUS: i32 = -1;

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_buffer_data: *mut *mut u8,
            return_buffer_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_add_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        fn proxy_continue_stream(stream_type: u32) -> u32;
        fn proxy_register_shared_queue(
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        fn proxy_enqueue_shared_queue(
            queue_id: u32,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_dequeue_shared_queue(
            queue_id: u32,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_set_effective_context(context_id: u32) -> u32;
        fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    }

    /// Native builds (unit tests of the glue) have no host: every call fails cleanly with
    /// `InternalFailure` and writes nothing.
    #[cfg(not(target_arch = "wasm32"))]
    mod no_host {
        const INTERNAL_FAILURE: u32 = 10;

        pub unsafe fn proxy_log(_: u32, _: *const u8, _: usize) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_get_current_time_nanoseconds(_: *mut u64) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_set_tick_period_milliseconds(_: u32) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_get_buffer_bytes(
            _: u32,
            _: usize,
            _: usize,
            _: *mut *mut u8,
            _: *mut usize,
        ) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_get_header_map_value(
            _: u32,
            _: *const u8,
            _: usize,
            _: *mut *mut u8,
            _: *mut usize,
        ) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_replace_header_map_value(
            _: u32,
            _: *const u8,
            _: usize,
            _: *const u8,
            _: usize,
        ) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_add_header_map_value(
            _: u32,
            _: *const u8,
            _: usize,
            _: *const u8,
            _: usize,
        ) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_remove_header_map_value(_: u32, _: *const u8, _: usize) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_get_property(
            _: *const u8,
            _: usize,
            _: *mut *mut u8,
            _: *mut usize,
        ) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_get_shared_data(
            _: *const u8,
            _: usize,
            _: *mut *mut u8,
            _: *mut usize,
            _: *mut u32,
        ) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_set_shared_data(
            _: *const u8,
            _: usize,
            _: *const u8,
            _: usize,
            _: u32,
        ) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_continue_stream(_: u32) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_register_shared_queue(_: *const u8, _: usize, _: *mut u32) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_enqueue_shared_queue(_: u32, _: *const u8, _: usize) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_dequeue_shared_queue(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
            INTERNAL_FAILURE
        }
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn proxy_send_local_response(
            _: u32,
            _: *const u8,
            _: usize,
            _: *const u8,
            _: usize,
            _: *const u8,
            _: usize,
            _: i32,
        ) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_set_effective_context(_: u32) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_define_metric(_: u32, _: *const u8, _: usize, _: *mut u32) -> u32 {
            INTERNAL_FAILURE
        }
        pub unsafe fn proxy_increment_metric(_: u32, _: i64) -> u32 {
            INTERNAL_FAILURE
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    use no_host::*;

    /// `Ok(())` for `OK`, the call and its status otherwise.
    fn check(call: &'static str, status: u32) -> HostResult<()> {
        match status {
            OK => Ok(()),
            status => Err(HostError { call, status }),
        }
    }

    /// Takes ownership of a buffer the host returned with status `OK`; `None` when it returned
    /// no buffer (a null pointer: the host allocates nothing for an empty value).
    ///
    /// # Safety
    /// `data` is null, or the host allocated it for exactly `size` bytes through the SDK's
    /// `proxy_on_memory_allocate` export and filled it, and nothing else owns it.
    unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
        if data.is_null() {
            return None;
        }
        // SAFETY: per this function's contract; `proxy_on_memory_allocate` made the buffer with
        // `Vec::with_capacity(size)` and `into_boxed_slice`, so its capacity is `size`, and the
        // global allocator it used is the one this `Vec` frees with.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }

    pub fn log(level: u32, message: &str) -> HostResult<()> {
        // SAFETY: `message` is a live slice for the duration of the call; the host only reads it.
        let status = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
        check("proxy_log", status)
    }

    pub fn current_time_nanos() -> HostResult<u64> {
        let mut nanos: u64 = 0;
        // SAFETY: the host writes one `u64` to a live local.
        let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
        check("proxy_get_current_time_nanoseconds", status)?;
        Ok(nanos)
    }

    pub fn set_tick_period_millis(millis: u32) -> HostResult<()> {
        // SAFETY: no pointers.
        let status = unsafe { proxy_set_tick_period_milliseconds(millis) };
        check("proxy_set_tick_period_milliseconds", status)
    }

    /// Up to `max_size` bytes of buffer `buffer_type` from its start; `None` when the host has no
    /// such buffer.
    pub fn buffer(buffer_type: u32, max_size: usize) -> HostResult<Option<Vec<u8>>> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer and a size to live locals.
        let status =
            unsafe { proxy_get_buffer_bytes(buffer_type, 0, max_size, &mut data, &mut size) };
        match status {
            // SAFETY: on `OK` the pointer is null or a buffer of `size` bytes the host allocated
            // with our allocator, and nothing else holds it.
            OK => Ok(unsafe { take_host_buffer(data, size) }),
            NOT_FOUND => Ok(None),
            status => Err(HostError {
                call: "proxy_get_buffer_bytes",
                status,
            }),
        }
    }

    pub fn request_header_pairs() -> HostResult<Vec<u8>> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer and a size to live locals.
        let status =
            unsafe { proxy_get_header_map_pairs(MAP_HTTP_REQUEST_HEADERS, &mut data, &mut size) };
        check("proxy_get_header_map_pairs", status)?;
        // SAFETY: on `OK` the pointer is null or a buffer of `size` bytes the host allocated with
        // our allocator, and nothing else holds it.
        Ok(unsafe { take_host_buffer(data, size) }.unwrap_or_default())
    }

    /// The value of `key` in map `map_type`, as bytes; `None` when the key is absent.
    pub fn map_value(map_type: u32, key: &[u8]) -> HostResult<Option<Vec<u8>>> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: `key` is a live slice the host only reads; it writes a pointer and a size to
        // live locals.
        let status = unsafe {
            proxy_get_header_map_value(map_type, key.as_ptr(), key.len(), &mut data, &mut size)
        };
        match status {
            // SAFETY: as in `buffer`. A present but empty value comes back as a null pointer.
            OK => Ok(Some(
                unsafe { take_host_buffer(data, size) }.unwrap_or_default(),
            )),
            NOT_FOUND => Ok(None),
            status => Err(HostError {
                call: "proxy_get_header_map_value",
                status,
            }),
        }
    }

    pub fn replace_request_header(name: &[u8], value: &[u8]) -> HostResult<()> {
        // SAFETY: `name` and `value` are live slices the host only reads.
        let status = unsafe {
            proxy_replace_header_map_value(
                MAP_HTTP_REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        };
        check("proxy_replace_header_map_value", status)
    }

    pub fn add_request_header(name: &[u8], value: &[u8]) -> HostResult<()> {
        // SAFETY: `name` and `value` are live slices the host only reads.
        let status = unsafe {
            proxy_add_header_map_value(
                MAP_HTTP_REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        };
        check("proxy_add_header_map_value", status)
    }

    pub fn remove_request_header(name: &[u8]) -> HostResult<()> {
        // SAFETY: `name` is a live slice for the duration of the call; the host only reads it.
        let status = unsafe {
            proxy_remove_header_map_value(MAP_HTTP_REQUEST_HEADERS, name.as_ptr(), name.len())
        };
        match status {
            OK | NOT_FOUND => Ok(()),
            status => Err(HostError {
                call: "proxy_remove_header_map_value",
                status,
            }),
        }
    }

    /// The property at `path` (NUL-separated segments); `None` when the host has no value.
    pub fn property(path: &[u8]) -> HostResult<Option<Vec<u8>>> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: `path` is a live slice the host only reads; it writes a pointer and a size to
        // live locals.
        let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
        match status {
            // SAFETY: as in `buffer`.
            OK => Ok(unsafe { take_host_buffer(data, size) }),
            NOT_FOUND => Ok(None),
            status => Err(HostError {
                call: "proxy_get_property",
                status,
            }),
        }
    }

    /// The value at `key` and its CAS token (`None` for the host's 0, "no token").
    pub fn shared_data(key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: `key` is a live slice the host only reads; it writes a pointer, a size and a
        // token to live locals.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            // SAFETY: as in `buffer`.
            OK => Ok((
                unsafe { take_host_buffer(data, size) },
                Some(cas).filter(|&c| c != 0),
            )),
            NOT_FOUND => Ok((None, None)),
            status => Err(HostError {
                call: "proxy_get_shared_data",
                status,
            }),
        }
    }

    /// Writes `value` at `key`; `cas` 0 writes unconditionally.
    pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        // SAFETY: `key` and `value` are live slices the host only reads (it copies the value).
        let status = unsafe {
            proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
        };
        check("proxy_set_shared_data", status)
    }

    pub fn register_shared_queue(name: &str) -> HostResult<u32> {
        let mut id: u32 = 0;
        // SAFETY: `name` is a live slice the host only reads; it writes an id to a live local.
        let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
        check("proxy_register_shared_queue", status)?;
        Ok(id)
    }

    pub fn enqueue_shared_queue(id: u32, value: &[u8]) -> HostResult<()> {
        // SAFETY: `value` is a live slice the host only reads (it copies it).
        let status = unsafe { proxy_enqueue_shared_queue(id, value.as_ptr(), value.len()) };
        check("proxy_enqueue_shared_queue", status)
    }

    pub fn dequeue_shared_queue(id: u32) -> HostResult<Option<Vec<u8>>> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer and a size to live locals.
        let status = unsafe { proxy_dequeue_shared_queue(id, &mut data, &mut size) };
        match status {
            // SAFETY: as in `buffer`. An empty value comes back as a null pointer.
            OK => Ok(Some(
                unsafe { take_host_buffer(data, size) }.unwrap_or_default(),
            )),
            EMPTY => Ok(None),
            status => Err(HostError {
                call: "proxy_dequeue_shared_queue",
                status,
            }),
        }
    }

    /// `headers` in the ABI's map serialization.
    pub fn send_local_response(status_code: u32, headers: &[u8], body: &[u8]) -> HostResult<()> {
        // SAFETY: `headers` and `body` are live slices the host only reads; no details string.
        let status = unsafe {
            proxy_send_local_response(
                status_code,
                null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                NO_GRPC_STATUS,
            )
        };
        check("proxy_send_local_response", status)
    }

    pub fn continue_request() -> HostResult<()> {
        // SAFETY: no pointers.
        let status = unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) };
        check("proxy_continue_stream", status)
    }

    pub fn set_effective_context(context_id: u32) -> HostResult<()> {
        // SAFETY: no pointers.
        let status = unsafe { proxy_set_effective_context(context_id) };
        check("proxy_set_effective_context", status)
    }

    pub fn define_counter(name: &str) -> HostResult<u32> {
        let mut id: u32 = 0;
        // SAFETY: `name` is a live slice the host only reads; it writes an id to a live local.
        let status =
            unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) };
        check("proxy_define_metric", status)?;
        Ok(id)
    }

    pub fn increment_metric(id: u32, offset: i64) -> HostResult<()> {
        // SAFETY: no pointers.
        let status = unsafe { proxy_increment_metric(id, offset) };
        check("proxy_increment_metric", status)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn property_paths_are_segments_joined_by_nul() {
        assert_eq!(property_path(&["xds", "route_name"]), b"xds\0route_name");
        assert_eq!(property_path(&["request"]), b"request");
        assert_eq!(property_path(&[]), b"");
    }

    #[test]
    fn local_response_headers_use_the_abi_map_serialization() {
        let headers = [("www-authenticate", "Bearer".to_string())];
        let mut expected = Vec::new();
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&16u32.to_le_bytes());
        expected.extend_from_slice(&6u32.to_le_bytes());
        expected.extend_from_slice(b"www-authenticate\0Bearer\0");
        assert_eq!(local_response_headers(&headers), expected);
        assert_eq!(local_response_headers(&[]), 0u32.to_le_bytes());
    }

    #[test]
    fn log_lines_carry_the_abi_level_and_the_message_alone() {
        let cases = [
            (log::Level::Trace, 0),
            (log::Level::Debug, 1),
            (log::Level::Info, 2),
            (log::Level::Warn, 3),
            (log::Level::Error, 4),
        ];
        for (level, code) in cases {
            let line = log_line(
                &log::Record::builder()
                    .level(level)
                    .target("keygate::http")
                    .args(format_args!("lookup for key {} failed", "ab12"))
                    .build(),
            );
            assert_eq!(line, (code, "lookup for key ab12 failed".to_string()));
        }
    }

    #[test]
    fn a_failing_display_impl_truncates_the_log_line_instead_of_panicking() {
        struct Broken;
        impl std::fmt::Display for Broken {
            fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                Err(std::fmt::Error)
            }
        }
        let (_, message) = log_line(
            &log::Record::builder()
                .level(log::Level::Warn)
                .args(format_args!("before {Broken} after"))
                .build(),
        );
        assert_eq!(message, "before ");
    }

    #[test]
    fn without_a_host_every_call_is_an_error_not_a_panic() {
        let failed = |r: HostResult<()>| r.unwrap_err().status;
        assert_eq!(
            now_secs().unwrap_err().call,
            "proxy_get_current_time_nanoseconds"
        );
        assert_eq!(failed(set_request_header("a", "b")), 10);
        assert_eq!(failed(add_request_header("a", "b")), 10);
        assert_eq!(failed(send_response(403, &[], "denied")), 10);
        assert_eq!(failed(resume_request()), 10);
        assert_eq!(failed(set_effective_context(1)), 10);
        assert_eq!(failed(increment_counter(1)), 10);
        assert_eq!(failed(shared_set("k", b"v", None)), 10);
        assert_eq!(failed(set_tick_period(Duration::MAX)), 10);
        assert_eq!(failed(enqueue(1, b"")), 10);
        assert_eq!(register_queue("q").unwrap_err().status, 10);
        assert_eq!(dequeue(1).unwrap_err().call, "proxy_dequeue_shared_queue");
        assert!(plugin_configuration().is_err());
        assert!(route_name().is_err());
        assert!(shared_get("k").is_err());
        assert!(call_response_status().is_err());
        assert!(call_response_body(10).is_err());
        assert!(define_counter("c").is_err());
        log_critical("no host: dropped");
        install_logger();
        install_logger();
        log::error!("no host: dropped too");
    }
}
