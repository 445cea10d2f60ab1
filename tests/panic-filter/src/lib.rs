//! A test-only proxy-wasm filter for the end-to-end tests of what Envoy does when a Wasm VM fails
//! (`tests/tests/e2e/vm_failure.rs`). keygate itself must never panic, so this filter does it on
//! purpose. Never part of a release: `make build` builds it for the tests only.
//!
//! Per request:
//! - `x-test-panic: 1` panics in `on_http_request_headers`, which kills this VM (the release
//!   profile aborts on panic: a Wasm trap).
//! - Otherwise the request passes, carrying `x-test-vm: <id>` to the upstream and back in the
//!   response, where `<id>` is random per VM instance: a test tells a replaced VM by a new id.
//! - `x-test-route-probe: <header>` reads Envoy's `xds.route_name`, removes request header
//!   `<header>`, reads it again, and answers both in `x-test-route-before` and
//!   `x-test-route-after` (`-` when absent): what a filter sees of the route name after a header
//!   removal clears Envoy's route cache.
//!
//! Host call results are ignored: this filter decides nothing.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

/// The request header that asks this filter to panic.
pub const PANIC_HEADER: &str = "x-test-panic";
/// The request (to the upstream) and response header naming this VM instance.
pub const VM_HEADER: &str = "x-test-vm";
/// The request header that asks for the route-name probe; its value names the header to remove.
pub const ROUTE_PROBE_HEADER: &str = "x-test-route-probe";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // One root context per VM: its id names the VM instance. WASI `random_get` seeds
    // RandomState, so a new VM draws a new id.
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(PanicRoot {
            vm: format!("{:016x}", RandomState::new().build_hasher().finish()),
        })
    });
}}

struct PanicRoot {
    vm: String,
}

impl Context for PanicRoot {}

impl RootContext for PanicRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PanicRequest {
            vm: self.vm.clone(),
            route: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PanicRequest {
    vm: String,
    /// The route names seen before and after the probe's header removal.
    route: Option<(String, String)>,
}

impl Context for PanicRequest {}

fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn route_name() -> String {
    hostcalls::get_property(vec!["xds", "route_name"])
        .ok()
        .flatten()
        .map_or_else(
            || "-".to_owned(),
            |bytes| String::from_utf8_lossy(&bytes).into_owned(),
        )
}

impl HttpContext for PanicRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if request_header(PANIC_HEADER).as_deref() == Some("1") {
            #[allow(clippy::panic)] // The point of this filter: a VM that fails.
            {
                panic!("{PANIC_HEADER}: 1 asked this VM ({}) to fail", self.vm);
            }
        }
        if let Some(removed) = request_header(ROUTE_PROBE_HEADER) {
            let before = route_name();
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, &removed);
            self.route = Some((before, route_name()));
        }
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, VM_HEADER, Some(&self.vm));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = MapType::HttpResponseHeaders;
        let _ = hostcalls::set_map_value(headers, VM_HEADER, Some(&self.vm));
        if let Some((before, after)) = &self.route {
            let _ = hostcalls::set_map_value(headers, "x-test-route-before", Some(before));
            let _ = hostcalls::set_map_value(headers, "x-test-route-after", Some(after));
        }
        Action::Continue
    }
}
