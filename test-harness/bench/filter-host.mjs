// The plugin's whole request path in V8, without Envoy: a minimal proxy-wasm host in JavaScript
// loads the module, configures it, and drives each request through every callback Envoy makes
// (context create, request headers, response headers, log, done, delete). decide_bench times
// `decide` alone; this adds what the plugin does around it (reading headers, the decision id,
// stripping and adding headers, filter state, metrics, the record and its log line), so the
// two together say how much of a request's Wasm time is the decision and how much the glue.
//
// `node --no-liftoff filter-host.mjs MODULE.wasm CONFIG.json ACCESS_LOG_CONFIG.json TOKEN_FILE [ITERATIONS]`
// (CONFIG: records in the host log; ACCESS_LOG_CONFIG: as the access-log gateway, `host_log` off)
// (`make bench` runs it). With `--perf-basic-prof` and a module that keeps its names (cargo's
// output, before wasm-opt), `perf record -g` shows the plugin's own functions.
//
// The host (host/proxy-wasm-host.mjs) is JavaScript and part of the time measured (Envoy's is
// C++); it does the least a host must: copy headers in, take properties and log lines, count
// metrics.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { argv, exit, hrtime, stdout } from "node:process";
import {
  CONTINUE, MAP_REQUEST_HEADERS, MAP_RESPONSE_HEADERS, startPlugin,
} from "../host/proxy-wasm-host.mjs";

const [modulePath, configPath, accessLogConfigPath, tokenPath, iterationsArg = "20000"] =
  argv.slice(2);
if (!tokenPath) {
  console.error(
    "usage: filter-host.mjs MODULE.wasm CONFIG.json ACCESS_LOG_CONFIG.json TOKEN_FILE [ITERATIONS]",
  );
  exit(2);
}
const ITERATIONS = Number(iterationsArg);
const BATCHES = 20;
const WARM_UP = 2000; // V8 compiles each function with TurboFan on its first call

const token = readFileSync(tokenPath, "utf8").trim();
const loggingConfig = JSON.parse(readFileSync(configPath, "utf8"));
const accessLogConfig = JSON.parse(readFileSync(accessLogConfigPath, "utf8"));
if (accessLogConfig.decision_log?.host_log !== false) {
  console.error(`${accessLogConfigPath}: expected decision_log.host_log false`);
  exit(2);
}

// The module under the host, configured with `config`, and one request as Envoy delivers it
// for `GET /tickets/42`: whether it went upstream. With `counts`, every host function counts
// its calls there by name (not while timing: counting costs time).
function instantiate(config, counts = null) {
  const host = startPlugin(modulePath, config, { counts });
  let sent = 0;
  const send = () => {
    sent++;
    const request = [
      [":authority", "127.0.0.1:10000"], [":path", "/tickets/42"], [":method", "GET"],
      [":scheme", "http"], ["user-agent", "wrk"], ["authorization", `Bearer ${token}`],
      ["x-forwarded-proto", "http"],
      ["x-request-id", `6a1f0c2e-7b3d-4e59-9c1a-${String(sent % 1e12).padStart(12, "0")}`],
    ];
    return host.send(request) === CONTINUE;
  };
  return { host, send };
}

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];

// Microseconds per request (median of batches) under `config`; with the records in the host
// log, also the records' timer_total_ns (the decision and applying it).
function measure(config) {
  const hostLog = config.decision_log?.host_log !== false;
  const { host, send } = instantiate(config);
  for (let i = 0; i < WARM_UP; i++) send();
  host.localReplies.length = 0;
  host.records.length = 0;
  const perBatch = Math.max(1, Math.floor(ITERATIONS / BATCHES));
  const batches = [];
  for (let b = 0; b < BATCHES; b++) {
    const started = hrtime.bigint();
    for (let i = 0; i < perBatch; i++) {
      if (!send()) {
        const reply = host.localReplies.at(-1);
        throw new Error(`a request was refused: ${reply?.status} ${reply?.details}`);
      }
    }
    batches.push(Number(hrtime.bigint() - started) / perBatch / 1000);
  }
  const decide = host.records.map((line) =>
    JSON.parse(line.slice(line.indexOf("{\"decision_id\""))).metrics.timer_total_ns / 1000);
  if (hostLog && decide.length === 0) throw new Error("no record reached the host log");
  return { us: median(batches), decide: hostLog ? median(decide) : null };
}

// The host calls of one allowed request configured as the access-log gateway, once the
// module is warm, in the words of `floor-filter`'s configuration: what `make bench`'s "Wasm
// floor + chaperone's host calls" row repeats without deciding anything. Reading the header
// pairs is left out (every floor does it); a call the floor cannot repeat is named as such.
function hostCalls() {
  const counts = {};
  const { send } = instantiate(accessLogConfig, counts);
  for (let i = 0; i < 10; i++) send();
  for (const name of Object.keys(counts)) delete counts[name];
  const REQUESTS = 100;
  for (let i = 0; i < REQUESTS; i++) send();
  const floorNames = {
    proxy_get_current_time_nanoseconds: "clock",
    proxy_set_property: "properties",
    [`proxy_add_header_map_value:${MAP_REQUEST_HEADERS}`]: "request_headers",
    proxy_remove_header_map_value: "removed_request_headers",
    [`proxy_add_header_map_value:${MAP_RESPONSE_HEADERS}`]: "response_headers",
    proxy_increment_metric: "counters",
    proxy_record_metric: "histograms",
  };
  return Object.entries(counts)
    .filter(([name]) => name !== "proxy_get_header_map_pairs")
    .map(([name, count]) => `${floorNames[name] ?? `unrepeatable:${name}`}=${count / REQUESTS}`)
    .join(" ");
}

// `make bench` leaves the counts its floor row repeats beside the configuration; they must
// still be chaperone's, or that row measures something else.
function checkFloorCounts(counted) {
  const path = join(dirname(configPath), "host-calls");
  if (!existsSync(path)) return;
  const sorted = (text) => text.trim().split(/\s+/).sort().join(" ");
  const expected = readFileSync(path, "utf8");
  if (sorted(expected) !== sorted(counted)) {
    console.error(
      `the floor row repeats \`${expected.trim()}\` but chaperone now makes \`${counted}\`: ` +
        "update CHAPERONE_HOST_CALLS in test-harness/src/bin/bench.rs",
    );
    exit(1);
  }
}

const logged = measure(loggingConfig);
const quiet = measure(accessLogConfig);
const row = (label, us) => `  ${label.padEnd(44)}${us.toFixed(1).padStart(7)} us`;
const counted = hostCalls();
stdout.write(
  `${row("allowed, records in the host log", logged.us)}` +
    ` (the decision and applying it, by the record's timer_total_ns: ${logged.decide.toFixed(1)} us)\n` +
    `${row("allowed, as the access-log gateway", quiet.us)}\n` +
    `  host calls per allowed request there (besides the header pairs): ${counted}\n`,
);
checkFloorCounts(counted);
