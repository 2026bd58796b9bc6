//! `chaperone eval`: the decision the plugin would make for one request, offline, from the
//! same core. It prints the decision record the plugin would write (the input, the result,
//! the rule and reason included) and exits 0 when the request would go upstream, 1 when not.

use crate::args::Args;
use chaperone_core::record::{parse_rfc3339, uuid_v4};
use chaperone_core::{
    decide_timed, Loaded, Peer, RequestBody, RequestFacts, Runtime, SocketAddress,
};
use std::process::ExitCode;

pub fn command(args: &mut Args) -> Result<ExitCode, String> {
    let config_path = args.required("config")?;
    let request = args.required("request")?;
    let token = args.optional("token")?;
    let txn = args.optional("txn")?;
    let grants = args.values("grant")?;
    let extra_headers = args.values("header")?;
    let host = args
        .optional("host")?
        .unwrap_or_else(|| "localhost".to_owned());
    let source = Peer {
        address: address(args.optional("source")?, "source")?,
        principal: args.optional("source-principal")?,
    };
    let destination = Peer {
        address: address(args.optional("destination")?, "destination")?,
        principal: args.optional("destination-principal")?,
    };
    let body = args.optional("body")?;
    let at = args.optional("at")?;
    let compact = args.flag("compact");
    args.finish()?;

    let bytes = std::fs::read(&config_path).map_err(|e| format!("{config_path}: {e}"))?;
    let loaded = chaperone_core::load(&bytes).map_err(|e| format!("{config_path}: {e}"))?;
    let (method, path) = request
        .split_once(' ')
        .ok_or("--request takes 'METHOD PATH', e.g. 'GET /tickets/42'")?;
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), method.as_bytes().to_vec()),
        (b":path".to_vec(), path.trim().as_bytes().to_vec()),
        (b":authority".to_vec(), host.into_bytes()),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    if let Some(token) = token {
        let (name, prefix) = token_header(&loaded);
        headers.push((name.into_bytes(), format!("{prefix}{token}").into_bytes()));
    }
    if let (Some(txn), Loaded::Ready(compiled)) = (txn, &loaded) {
        let header = compiled
            .transaction_tokens
            .as_ref()
            .ok_or("--txn needs `transaction_tokens` in the configuration")?
            .header
            .clone();
        headers.push((header.into_bytes(), txn.into_bytes()));
    }
    if !grants.is_empty() {
        let Loaded::Ready(compiled) = &loaded else {
            return Err("--grant needs `grants` in the configuration".to_owned());
        };
        let header = &compiled
            .grants
            .as_ref()
            .ok_or("--grant needs `grants` in the configuration")?
            .header;
        for grant in grants {
            headers.push((header.clone().into_bytes(), grant.into_bytes()));
        }
    }
    for header in extra_headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header `{header}`: expected 'NAME: VALUE'"))?;
        headers.push((
            name.trim().to_ascii_lowercase().into_bytes(),
            value.trim().as_bytes().to_vec(),
        ));
    }
    let decided_at_ns = match at {
        None => now_ns(),
        Some(at) => parse_time(&at)?,
    };
    let peers = loaded.peer_reads();
    let facts = RequestFacts {
        headers,
        decision_id: decision_id(),
        now_ns: decided_at_ns,
        // As the plugin: a peer the policy does not read is not asked for.
        source: if peers.source {
            source
        } else {
            Peer::default()
        },
        destination: if peers.destination {
            destination
        } else {
            Peer::default()
        },
        // As the plugin: read only when the policy reads it, up to the configured size; none
        // given is an empty one.
        body: loaded
            .body_limit()
            .map(|limit| RequestBody::read(body.unwrap_or_default().into_bytes(), limit)),
    };
    let mut runtime = Runtime::new(&loaded, 0);
    let started = now_ns();
    let mut decision = decide_timed(&loaded, &mut runtime, &facts, started, &now_ns);
    decision.record.metrics.finish(started, now_ns());
    // What the plugin adds: the sequence number and the instance of the VM.
    decision.record.seq = 1;
    decision
        .record
        .labels
        .insert("instance".to_owned(), format!("{:016x}", 0));
    let max_bytes = match &loaded {
        Loaded::Ready(compiled) => compiled.decision_log.max_record_bytes,
        Loaded::Empty => usize::MAX,
    };
    let line = decision.record.to_json_bounded(max_bytes);
    if compact {
        println!("{line}");
    } else {
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
        );
    }
    Ok(if decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--source` / `--destination`: a peer's address as Envoy gives it (`IP:PORT`, `[IPv6]:PORT`)
/// or a bare IP.
fn address(text: Option<String>, option: &str) -> Result<Option<SocketAddress>, String> {
    text.map(|text| {
        SocketAddress::parse(&text)
            .ok_or_else(|| format!("--{option} `{text}`: expected IP:PORT, [IPv6]:PORT or an IP"))
    })
    .transpose()
}

/// The first configured token header and its prefix (`authorization`, `Bearer `).
fn token_header(loaded: &Loaded) -> (String, String) {
    match loaded {
        Loaded::Ready(compiled) => compiled
            .token_sources
            .first()
            .map(|s| (s.name.clone(), s.value_prefix.clone()))
            .unwrap_or_else(|| ("authorization".to_owned(), "Bearer ".to_owned())),
        Loaded::Empty => ("authorization".to_owned(), "Bearer ".to_owned()),
    }
}

fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds.saturating_mul(1_000_000_000));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!("--at `{text}`: expected Unix seconds or RFC 3339 like 2026-11-25T10:00:00Z")
    })
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A random decision id, as the plugin makes them.
fn decision_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&now_ns().to_be_bytes());
    }
    uuid_v4(bytes)
}
