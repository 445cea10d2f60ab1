//! The floor filters of `bench/run.sh`, loaded exactly like keygate (same SDK, V8, `vm_config`):
//!
//! - With no configuration, a request context whose request-headers callback returns `Continue`
//!   and calls nothing on the host: what any proxy-wasm filter costs before it does any work.
//! - With the configuration `hostcalls`, the same callback makes the host calls keygate makes
//!   for an API key cache hit served by the worker's own cache (read all request headers,
//!   remove the key header, set four identity headers) and nothing else; keygate reads the clock
//!   and flushes its counters on the tick, not per request, so `clock` and `metrics` are groups
//!   of their own: the difference to the floor is the host calls' cost, and keygate's
//!   difference to this is its own Wasm work (parsing, hashing, matching, allocating).
//!   `hostcalls:headers,clock,shared,remove,set,metrics` makes only the listed groups, to price
//!   them one by one (`shared`, one shared-data read, is what a hit costs when the worker's
//!   cache does not have the key; `header`, one read of the key header alone, is the least any
//!   filter reading a credential could do, where keygate reads every header once).
//!
//! Host call results are ignored on purpose: this filter decides nothing and lets every
//! request through.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

/// A bucket-sized value (keygate's bucket for one cached key is about this long).
const BUCKET_KEY: &str = "keygate-bench.probe.0";
const BUCKET_BYTES: usize = 140;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot::default()) });
}}

#[derive(Default)]
struct FloorRoot {
    probe: Option<Probe>,
}

/// Which host calls to make per request; `counters` are the two keygate bumps per hit
/// (`cache_hit`, `allowed`).
#[derive(Clone, Copy)]
struct Probe {
    counters: [u32; 2],
    headers: bool,
    header: bool,
    clock: bool,
    shared: bool,
    remove: bool,
    set: bool,
    metrics: bool,
}

impl Probe {
    /// `hostcalls` (every group) or `hostcalls:` and a comma-separated list of groups.
    fn parse(config: &[u8], counters: [u32; 2]) -> Option<Self> {
        let config = std::str::from_utf8(config).ok()?.trim();
        let groups = match config.strip_prefix("hostcalls") {
            Some("") => "headers,remove,set",
            Some(rest) => rest.strip_prefix(':')?,
            None => return None,
        };
        let has = |g: &str| groups.split(',').any(|x| x.trim() == g);
        Some(Self {
            counters,
            headers: has("headers"),
            header: has("header"),
            clock: has("clock"),
            shared: has("shared"),
            remove: has("remove"),
            set: has("set"),
            metrics: has("metrics"),
        })
    }
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        if !config.trim_ascii().starts_with(b"hostcalls") {
            return true;
        }
        let define = |name| hostcalls::define_metric(MetricType::Counter, name);
        let (Ok(hit), Ok(allowed)) = (
            define("keygate_bench_probe.cache_hit"),
            define("keygate_bench_probe.allowed"),
        ) else {
            return false;
        };
        if hostcalls::set_shared_data(BUCKET_KEY, Some(&[7u8; BUCKET_BYTES]), None).is_err() {
            return false;
        }
        self.probe = Probe::parse(&config, [hit, allowed]);
        self.probe.is_some()
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorRequest { probe: self.probe }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct FloorRequest {
    probe: Option<Probe>,
}

impl Context for FloorRequest {}

impl HttpContext for FloorRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(probe) = self.probe else {
            return Action::Continue;
        };
        let headers = MapType::HttpRequestHeaders;
        if probe.headers {
            let _ = hostcalls::get_map(headers);
        }
        if probe.header {
            let _ = hostcalls::get_map_value(headers, "x-api-key");
        }
        if probe.clock {
            let _ = hostcalls::get_current_time();
        }
        if probe.shared {
            let _ = hostcalls::get_shared_data(BUCKET_KEY);
        }
        if probe.remove {
            let _ = hostcalls::remove_map_value(headers, "x-api-key");
        }
        if probe.set {
            for (name, value) in [
                ("x-keygate-auth", "api_key"),
                ("x-keygate-key-id", "key_0000000000000000"),
                ("x-keygate-tenant", "bench"),
                ("x-keygate-permissions", "orders:read"),
            ] {
                let _ = hostcalls::set_map_value(headers, name, Some(value));
            }
        }
        if probe.metrics {
            for id in probe.counters {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
        Action::Continue
    }
}
