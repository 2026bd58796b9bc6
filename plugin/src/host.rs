//! The host adapter: the few proxy-wasm calls chaperone makes per request, declared here so
//! that an unexpected host status becomes an `Err` instead of a panic (the SDK's own wrappers
//! panic on non-`Ok` statuses and on non-UTF-8 header bytes, and a panic kills the VM).
//! Only calls that both Envoy and Kong (ngx_wasm_module) implement are used.
//!
//! Host calls return their status as a plain `u32`: a host may answer with a code the SDK's
//! `Status` enum does not list, and reading that into the enum would be undefined behaviour.

use chaperone_core::input::HeaderPairs;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::ptr::null_mut;

/// A proxy-wasm status code other than `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl HostError {
    pub const CAS_MISMATCH: HostError = HostError(8);
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            12 => "Unimplemented",
            _ => return write!(f, "status {}", self.0),
        };
        f.write_str(name)
    }
}

type Status = u32;
const OK: Status = 0;
const NOT_FOUND: Status = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: LogLevel, message_data: *const u8, message_size: usize) -> Status;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> Status;
    fn proxy_set_tick_period_milliseconds(period: u32) -> Status;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
    fn proxy_define_metric(
        metric_type: proxy_wasm::types::MetricType,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> Status;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> Status;
    fn proxy_record_metric(metric_id: u32, value: u64) -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_add_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> Status;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

fn check(status: Status) -> Result<(), HostError> {
    match status {
        OK => Ok(()),
        other => Err(HostError(other)),
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null or a host-returned allocation of exactly `size` bytes.
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

pub fn log(level: LogLevel, message: &str) {
    // Nothing sensible can be done if logging itself fails.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Host wall clock in Unix nanoseconds; 0 if the host refuses (decisions then see 1970 and
/// every token is "not yet valid": fail closed).
pub fn now_ns() -> u64 {
    let mut now: u64 = 0;
    match unsafe { proxy_get_current_time_nanoseconds(&mut now) } {
        OK => now,
        _ => 0,
    }
}

/// Host clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Calls `on_tick` every `period_ms` (0 stops the timer).
pub fn set_tick_period_ms(period_ms: u32) -> Result<(), HostError> {
    check(unsafe { proxy_set_tick_period_milliseconds(period_ms) })
}

fn buffer(buffer_type: BufferType, max_size: usize) -> Result<Vec<u8>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        check(proxy_get_buffer_bytes(
            buffer_type,
            0,
            max_size,
            &mut data,
            &mut size,
        ))?;
        Ok(take_host_buffer(data, size))
    }
}

pub fn plugin_configuration() -> Result<Vec<u8>, HostError> {
    buffer(BufferType::PluginConfiguration, usize::MAX)
}

/// The body of the HTTP call being answered, at most `max_size` bytes.
pub fn http_call_response_body(max_size: usize) -> Result<Vec<u8>, HostError> {
    buffer(BufferType::HttpCallResponseBody, max_size)
}

/// The request body the host has buffered, at most `max_size` bytes.
pub fn request_body(max_size: usize) -> Result<Vec<u8>, HostError> {
    buffer(BufferType::HttpRequestBody, max_size)
}

/// Every pair of a header map as raw bytes, names included (never decoded as UTF-8 here).
fn header_pairs(map: MapType) -> Result<HeaderPairs, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let serialized = unsafe {
        check(proxy_get_header_map_pairs(map, &mut data, &mut size))?;
        take_host_buffer(data, size)
    };
    deserialize_pairs(&serialized).ok_or(HostError(4))
}

pub fn request_headers() -> Result<HeaderPairs, HostError> {
    header_pairs(MapType::HttpRequestHeaders)
}

/// Headers of the HTTP call being answered (`:status`, or Kong's `:dispatch_status`).
pub fn http_call_response_headers() -> Result<HeaderPairs, HostError> {
    header_pairs(MapType::HttpCallResponseHeaders)
}

/// The `:status` of the HTTP call being answered; `None` when the call failed.
pub fn status_of(headers: &HeaderPairs) -> Option<u16> {
    headers
        .iter()
        .find(|(name, _)| name == b":status")
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .and_then(|value| value.trim().parse().ok())
}

pub fn request_header(name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status = unsafe {
        proxy_get_header_map_value(
            MapType::HttpRequestHeaders,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    match status {
        OK => Ok(Some(unsafe { take_host_buffer(data, size) })),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Proxy shared data: the value and its compare-and-swap version, `None` if never set.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Ok(Some((unsafe { take_host_buffer(data, size) }, cas))),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Writes shared data unless `cas` is non-zero and stale (`HostError::CAS_MISMATCH`).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Defines a metric (every VM defining the same name shares one stat).
pub fn define_metric(
    metric_type: proxy_wasm::types::MetricType,
    name: &str,
) -> Result<u32, HostError> {
    let mut id: u32 = 0;
    check(unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, by: i64) -> Result<(), HostError> {
    check(unsafe { proxy_increment_metric(id, by) })
}

/// A histogram sample.
pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    check(unsafe { proxy_record_metric(id, value) })
}

/// A host property by its path segments (joined with NUL bytes, as the ABI wants).
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let joined = path.join("\0");
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status = unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
    match status {
        OK => Ok(Some(unsafe { take_host_buffer(data, size) })),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Starts an HTTP call; the answer arrives in the calling context's `on_http_call_response`.
/// Goes through the SDK, which must register the call to route its answer.
pub fn dispatch_http_call(
    upstream: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<u32, String> {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    proxy_wasm::hostcalls::dispatch_http_call(
        upstream,
        headers,
        body,
        Vec::new(),
        std::time::Duration::from_millis(timeout_ms),
    )
    .map_err(|status| format!("{status:?}"))
}

pub fn add_header(map: MapType, name: &str, value: &str) -> Result<(), HostError> {
    check(unsafe {
        proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Removes every value of the header (Envoy and Kong both drop all of them).
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    check(unsafe {
        proxy_remove_header_map_value(MapType::HttpRequestHeaders, name.as_ptr(), name.len())
    })
}

/// Envoy stores `name` as filter state `wasm.<name>` for access logs. Hosts without that
/// notion answer with an error status, which callers may ignore.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), HostError> {
    // One dotted segment, no NUL separator: Envoy keys the filter state by these exact bytes.
    check(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Sends a local reply. `details` shows in Envoy's `%RESPONSE_CODE_DETAILS%` (the SDK passes none).
pub fn send_local_response(
    status: u16,
    details: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), HostError> {
    let serialized = serialize_pairs(headers);
    check(unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    })
}

/// proxy-wasm map encoding: count, then (name length, value length) per pair, then each name
/// and value followed by a NUL byte. Lengths are little-endian u32.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<HeaderPairs> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = read_u32(0)?;
    let mut sizes_at = 4usize;
    let mut data_at = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 8));
    for _ in 0..count {
        let name_len = read_u32(sizes_at)?;
        let value_len = read_u32(sizes_at + 4)?;
        sizes_at += 8;
        let name = terminated(bytes, data_at, name_len)?;
        data_at = data_at.checked_add(name_len)?.checked_add(1)?;
        let value = terminated(bytes, data_at, value_len)?;
        data_at = data_at.checked_add(value_len)?.checked_add(1)?;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// `len` bytes at `at`, which the encoding follows with a NUL byte.
fn terminated(bytes: &[u8], at: usize, len: usize) -> Option<Vec<u8>> {
    let end = at.checked_add(len)?;
    if *bytes.get(end)? != 0 {
        return None;
    }
    Some(bytes.get(at..end)?.to_vec())
}

pub fn serialize_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_keep_raw_bytes() {
        let pairs = vec![
            ("a".to_owned(), "1".to_owned()),
            ("authorization".to_owned(), "".to_owned()),
        ];
        let decoded = deserialize_pairs(&serialize_pairs(&pairs)).unwrap();
        assert_eq!(
            decoded,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"authorization".to_vec(), Vec::new())
            ]
        );

        let mut raw = serialize_pairs(&[("x".to_owned(), "ab".to_owned())]);
        let value_at = raw.len() - 3;
        raw[value_at] = 0xC0; // not UTF-8: still returned, as bytes
        assert_eq!(deserialize_pairs(&raw).unwrap()[0].1, vec![0xC0, b'b']);
    }

    #[test]
    fn truncated_or_lying_maps_are_rejected() {
        let raw = serialize_pairs(&[("name".to_owned(), "value".to_owned())]);
        for cut in 1..raw.len() {
            assert_eq!(deserialize_pairs(&raw[..cut]), None, "cut at {cut}");
        }
        assert_eq!(deserialize_pairs(&[0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(deserialize_pairs(&[]), Some(Vec::new()));
    }
}
