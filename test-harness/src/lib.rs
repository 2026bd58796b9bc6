//! End-to-end harness: a real Envoy, a loopback upstream, keys and tokens made by the test.
