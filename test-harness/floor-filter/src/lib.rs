//! The floor under any proxy-wasm filter that looks at the request, for `make bench`: it
//! reads the request's header pairs, as chaperone does first, then lets the request through
//! with no decision. Its throughput against bare Envoy's is what a Wasm filter pays before
//! it does any work of its own, so chaperone's row can be read against it as well as against
//! jwt_authn + RBAC.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Floor) });
}}

struct Floor;

impl Context for Floor {}

impl RootContext for Floor {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }
}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Read, and kept from being optimised away, as chaperone's own read is used.
        std::hint::black_box(self.get_http_request_headers_bytes());
        Action::Continue
    }
}
