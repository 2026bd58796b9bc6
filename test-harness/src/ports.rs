//! Free loopback ports. Another process may grab a port between release and use; callers that
//! start Envoy retry on "address already in use" (see `Gateway::start`).

use std::net::TcpListener;

/// A port that was free on 127.0.0.1 a moment ago (bound to port 0, read, released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `count` distinct free ports: all are held until the last is bound, so none repeats.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports(5).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 5);
        for port in ports {
            assert_ne!(port, 0);
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
        assert_ne!(free_port().unwrap(), 0);
    }
}
