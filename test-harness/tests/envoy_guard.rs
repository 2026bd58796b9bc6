//! The Envoy guard itself, with a plain Envoy (no wasm): it starts, serves, reports start-up
//! failures with Envoy's log, validates configs, and leaves no process behind.

use chaperone_test_harness::envoy::scratch_dir;
use chaperone_test_harness::{envoy_bin, free_ports, get, render_template, Envoy};
use std::time::{Duration, Instant};

/// A listener that answers every request with a fixed 200.
const DIRECT_RESPONSE: &str = r#"
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: ${ADMIN_PORT}}}
static_resources:
  listeners:
  - name: plain
    address: {socket_address: {address: 127.0.0.1, port_value: ${LISTEN_PORT}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          route_config:
            virtual_hosts:
            - name: plain
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: "plain envoy\n"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#;

fn direct_response_config() -> (String, u16, u16) {
    let ports = free_ports(2).unwrap();
    let yaml = render_template(
        DIRECT_RESPONSE,
        &[
            ("ADMIN_PORT", ports[1].to_string()),
            ("LISTEN_PORT", ports[0].to_string()),
        ],
    )
    .unwrap();
    (yaml, ports[0], ports[1])
}

/// Whether a process with this pid exists (signal 0 checks without sending anything).
fn process_exists(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 sends nothing; it only reports whether the pid exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[test]
fn starts_serves_and_stops_leaving_nothing_behind() {
    let (yaml, listen, admin) = direct_response_config();
    let mut envoy = Envoy::start(&yaml, admin).unwrap_or_else(|e| panic!("{e}"));
    let (pid, dir) = (envoy.pid(), envoy.dir().to_path_buf());
    assert!(envoy.is_running());
    let response = get(listen, "GET", "/anything", &[]);
    assert_eq!(
        (response.status, response.body_text().as_str()),
        (200, "plain envoy\n")
    );
    assert!(
        envoy.log_text().contains("starting main dispatch loop"),
        "{}",
        envoy.log_tail(20)
    );

    let started = Instant::now();
    drop(envoy);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(!process_exists(pid), "Envoy {pid} still exists after drop");
    assert!(
        !dir.exists(),
        "scratch directory {} left behind",
        dir.display()
    );
}

#[test]
fn a_config_envoy_refuses_fails_fast_with_the_log_tail() {
    let (yaml, _listen, admin) = direct_response_config();
    let broken = yaml.replace("direct_response:", "direct_respons:");
    // A directory of our own: the guard keeps the files of a failed start for inspection.
    let dir = scratch_dir("guard-broken").unwrap();
    let started = Instant::now();
    let error = match Envoy::start_in(&envoy_bin(), &dir, &broken, admin, 1) {
        Ok(_) => panic!("Envoy started with a broken config"),
        Err(error) => error,
    };
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(error.contains("exited during start-up"), "{error}");
    assert!(
        error.contains("direct_respons"),
        "the log tail names the problem: {error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn validate_mode_tells_good_from_bad() {
    let dir = scratch_dir("guard-validate").unwrap();
    let (yaml, _, _) = direct_response_config();
    let good = dir.join("good.yaml");
    std::fs::write(&good, &yaml).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, yaml.replace("stat_prefix: plain", "stat_prefix: [")).unwrap();

    let (ok, output) = Envoy::validate(&good);
    assert!(ok, "{output}");
    let (ok, output) = Envoy::validate(&bad);
    assert!(!ok, "{output}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_envoy_binary_is_found_or_the_suite_says_how_to_get_it() {
    let envoy = envoy_bin();
    assert!(envoy.is_file(), "{}", envoy.display());
}
