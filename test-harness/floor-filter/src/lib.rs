//! The floor under any proxy-wasm filter that looks at the request, for `make bench`: it
//! reads the request's header pairs, as chaperone does first, then lets the request through
//! with no decision. Its throughput against bare Envoy's is what a Wasm filter pays before
//! it does any work of its own, so chaperone's row can be read against it as well as against
//! jwt_authn + RBAC.
//!
//! Configured with counts (`clock=4 properties=8 request_headers=4 removed_request_headers=1
//! response_headers=1 counters=3 histograms=1`), it also makes those host calls on every
//! request (the removal takes the request's `authorization`, the token's header), as chaperone
//! does for an allowed one, still deciding nothing: what the host's side of chaperone's work
//! costs, with none of chaperone's own. Any other configuration (chaperone's, in `make bench`)
//! means headers only.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Floor { calls: Rc::new(HostCalls::default()) })
    });
}}

/// The host calls made on every request besides reading the header pairs.
#[derive(Default)]
struct HostCalls {
    clock: usize,
    /// Filter state: chaperone's key fields (`wasm.chaperone.<field>`), by the same names.
    properties: usize,
    request_headers: usize,
    removed_request_headers: usize,
    response_headers: usize,
    /// Metric ids defined at configure time.
    counters: Vec<u32>,
    histograms: Vec<u32>,
}

impl HostCalls {
    /// `name=count` pairs separated by spaces; `None` for anything else.
    fn parse(text: &str) -> Option<HostCalls> {
        let mut calls = HostCalls::default();
        for pair in text.split_whitespace() {
            let (name, count) = pair.split_once('=')?;
            let count: usize = count.parse().ok()?;
            let defined = |kind: MetricType, prefix: &str| -> Option<Vec<u32>> {
                (0..count)
                    .map(|n| hostcalls::define_metric(kind, &format!("floor_{prefix}_{n}")).ok())
                    .collect()
            };
            match name {
                "clock" => calls.clock = count,
                "properties" => calls.properties = count,
                "request_headers" => calls.request_headers = count,
                "removed_request_headers" => calls.removed_request_headers = count,
                "response_headers" => calls.response_headers = count,
                "counters" => calls.counters = defined(MetricType::Counter, "counter")?,
                "histograms" => calls.histograms = defined(MetricType::Histogram, "histogram")?,
                _ => return None,
            }
        }
        Some(calls)
    }
}

/// Names made once, so the per-request calls format nothing: the key fields `make bench`'s
/// access log reads (`ACCESS_LOG_FIELDS` in its `bench.rs`, which checks the log found each),
/// so that the floor's access log formats what chaperone's does.
const NAMES: [&str; 8] = [
    "chaperone.decision_id",
    "chaperone.decision",
    "chaperone.reason",
    "chaperone.rule",
    "chaperone.agent_id",
    "chaperone.owner",
    "chaperone.policy_revision",
    "chaperone.seq",
];
const HEADERS: [&str; 8] = [
    "x-floor-0",
    "x-floor-1",
    "x-floor-2",
    "x-floor-3",
    "x-floor-4",
    "x-floor-5",
    "x-floor-6",
    "x-floor-7",
];
/// As long as a decision id, the longest value chaperone sets on every request.
const VALUE: &str = "6a1f0c2e-7b3d-4e59-9c1a-000000000042";

struct Floor {
    calls: Rc<HostCalls>,
}

impl Context for Floor {}

impl RootContext for Floor {
    fn on_configure(&mut self, _configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&configuration);
        self.calls = Rc::new(HostCalls::parse(&text).unwrap_or_default());
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            calls: Rc::clone(&self.calls),
        }))
    }
}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Read, and kept from being optimised away, as chaperone's own read is used.
        std::hint::black_box(self.get_http_request_headers_bytes());
        let calls = &self.calls;
        for _ in 0..calls.clock {
            let _ = std::hint::black_box(hostcalls::get_current_time());
        }
        for name in NAMES.iter().cycle().take(calls.properties) {
            let _ = hostcalls::set_property(vec![*name], Some(VALUE.as_bytes()));
        }
        for _ in 0..calls.removed_request_headers {
            self.set_http_request_header("authorization", None);
        }
        for name in HEADERS.iter().cycle().take(calls.request_headers) {
            self.add_http_request_header(name, VALUE);
        }
        for id in &calls.counters {
            let _ = hostcalls::increment_metric(*id, 1);
        }
        for id in &calls.histograms {
            let _ = hostcalls::record_metric(*id, 42);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for name in HEADERS.iter().cycle().take(self.calls.response_headers) {
            self.add_http_response_header(name, VALUE);
        }
        Action::Continue
    }
}
