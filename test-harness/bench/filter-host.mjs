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
// The host functions are JavaScript and part of the time measured (Envoy's are C++); they do
// the least a host must: copy headers in, take properties and log lines, count metrics.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { randomFillSync } from "node:crypto";
import { argv, exit, hrtime, stdout } from "node:process";

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
const CONTINUE = 0;
const OK = 0, NOT_FOUND = 1, UNIMPLEMENTED = 12;
const MAP_REQUEST_HEADERS = 0, MAP_RESPONSE_HEADERS = 2;
const BUFFER_VM_CONFIGURATION = 6, BUFFER_PLUGIN_CONFIGURATION = 7;
const LOG_ERROR = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const token = readFileSync(tokenPath, "utf8").trim();
const loggingConfig = JSON.parse(readFileSync(configPath, "utf8"));
const accessLogConfig = JSON.parse(readFileSync(accessLogConfigPath, "utf8"));
if (accessLogConfig.decision_log?.host_log !== false) {
  console.error(`${accessLogConfigPath}: expected decision_log.host_log false`);
  exit(2);
}

// One instance of the module under the host, configured with `config`. With `counts`, every
// host function counts its calls there by name (not while timing: counting costs time).
function instantiate(config, counts = null) {
  const configBytes = encoder.encode(JSON.stringify(config));
  const host = {
    request: [], response: [], localReplies: [], records: [], properties: 0,
  };
  let memory, exports;
  const bytes = () => new Uint8Array(memory.buffer);
  const view = () => new DataView(memory.buffer);
  const text = (ptr, len) => decoder.decode(bytes().subarray(ptr, ptr + len));
  // Hands data to the module as Envoy does: in a block the module allocates.
  const give = (data, ptrPtr, sizePtr) => {
    const ptr = exports.proxy_on_memory_allocate(Math.max(data.length, 1));
    bytes().set(data, ptr);
    view().setUint32(ptrPtr, ptr, true);
    view().setUint32(sizePtr, data.length, true);
    return OK;
  };
  const map = (type) => (type === MAP_REQUEST_HEADERS ? host.request
    : type === MAP_RESPONSE_HEADERS ? host.response : null);
  // proxy-wasm's header map encoding: count, (name length, value length) pairs, then each
  // name and value followed by a NUL.
  const serializePairs = (pairs) => {
    const encoded = pairs.map(([name, value]) => [encoder.encode(name), encoder.encode(value)]);
    const size = encoded.reduce((n, [k, v]) => n + 8 + k.length + v.length + 2, 4);
    const out = new Uint8Array(size);
    const outView = new DataView(out.buffer);
    outView.setUint32(0, encoded.length, true);
    let at = 4;
    for (const [k, v] of encoded) {
      outView.setUint32(at, k.length, true);
      outView.setUint32(at + 4, v.length, true);
      at += 8;
    }
    for (const [k, v] of encoded) {
      out.set(k, at);
      at += k.length + 1;
      out.set(v, at);
      at += v.length + 1;
    }
    return out;
  };
  const shared = new Map();
  const epochOffset = BigInt(Date.now()) * 1_000_000n - hrtime.bigint();
  const env = {
    proxy_log: (level, ptr, len) => {
      const line = text(ptr, len);
      if (line.includes("{\"decision_id\"")) host.records.push(line);
      if (level >= LOG_ERROR) console.error(line);
      return OK;
    },
    proxy_get_current_time_nanoseconds: (ptr) => {
      view().setBigUint64(ptr, epochOffset + hrtime.bigint(), true);
      return OK;
    },
    proxy_get_header_map_pairs: (type, ptrPtr, sizePtr) =>
      give(serializePairs(map(type) ?? []), ptrPtr, sizePtr),
    proxy_get_header_map_value: (type, namePtr, nameLen, ptrPtr, sizePtr) => {
      const name = text(namePtr, nameLen);
      const found = (map(type) ?? []).find(([n]) => n === name);
      return found ? give(encoder.encode(found[1]), ptrPtr, sizePtr) : NOT_FOUND;
    },
    proxy_add_header_map_value: (type, namePtr, nameLen, valuePtr, valueLen) => {
      map(type)?.push([text(namePtr, nameLen), text(valuePtr, valueLen)]);
      return OK;
    },
    proxy_remove_header_map_value: (type, namePtr, nameLen) => {
      const name = text(namePtr, nameLen);
      const pairs = map(type);
      if (pairs) {
        for (let i = pairs.length - 1; i >= 0; i--) if (pairs[i][0] === name) pairs.splice(i, 1);
      }
      return OK;
    },
    proxy_send_local_response: (status, detailsPtr, detailsLen) => {
      host.localReplies.push(`${status} ${text(detailsPtr, detailsLen)}`);
      return OK;
    },
    proxy_get_buffer_bytes: (type, start, max, ptrPtr, sizePtr) => {
      if (type === BUFFER_PLUGIN_CONFIGURATION) return give(configBytes, ptrPtr, sizePtr);
      if (type === BUFFER_VM_CONFIGURATION) return give(new Uint8Array(0), ptrPtr, sizePtr);
      return NOT_FOUND;
    },
    proxy_define_metric: (type, namePtr, nameLen, idPtr) => {
      view().setUint32(idPtr, 1, true);
      return OK;
    },
    proxy_increment_metric: () => OK,
    proxy_record_metric: () => OK,
    proxy_set_property: () => {
      host.properties++;
      return OK;
    },
    // Envoy answers `kong.version` with NotFound, which is how the plugin tells it from Kong.
    proxy_get_property: () => NOT_FOUND,
    proxy_set_tick_period_milliseconds: () => OK,
    proxy_get_shared_data: (keyPtr, keyLen, ptrPtr, sizePtr, casPtr) => {
      const entry = shared.get(text(keyPtr, keyLen));
      if (!entry) return NOT_FOUND;
      view().setUint32(casPtr, entry.cas, true);
      return give(entry.value, ptrPtr, sizePtr);
    },
    proxy_set_shared_data: (keyPtr, keyLen, valuePtr, valueLen, cas) => {
      const key = text(keyPtr, keyLen);
      const entry = shared.get(key);
      if (cas !== 0 && entry && entry.cas !== cas) return 8; // CasMismatch
      shared.set(key, {
        value: bytes().slice(valuePtr, valuePtr + valueLen),
        cas: (entry?.cas ?? 0) + 1,
      });
      return OK;
    },
  };
  const wasi = {
    random_get: (ptr, len) => {
      randomFillSync(bytes(), ptr, len);
      return OK;
    },
    clock_time_get: (id, precision, ptr) => {
      view().setBigUint64(ptr, hrtime.bigint(), true);
      return OK;
    },
    environ_get: () => OK,
    environ_sizes_get: (countPtr, sizePtr) => {
      view().setUint32(countPtr, 0, true);
      view().setUint32(sizePtr, 0, true);
      return OK;
    },
    fd_write: (fd, iovs, count, writtenPtr) => {
      let written = 0;
      for (let i = 0; i < count; i++) {
        const ptr = view().getUint32(iovs + 8 * i, true);
        const len = view().getUint32(iovs + 8 * i + 4, true);
        console.error(text(ptr, len));
        written += len;
      }
      view().setUint32(writtenPtr, written, true);
      return OK;
    },
    proc_exit: (code) => {
      throw new Error(`the module exited with ${code}`);
    },
  };
  const module = new WebAssembly.Module(readFileSync(modulePath));
  // Imports the module declares and never calls on this path answer Unimplemented.
  for (const { module: from, name } of WebAssembly.Module.imports(module)) {
    const table = from === "env" ? env : wasi;
    table[name] ??= () => UNIMPLEMENTED;
    if (counts) {
      const call = table[name];
      table[name] = (...args) => {
        // Headers are added to the request or to the response: counted apart.
        const key = name === "proxy_add_header_map_value" ? `${name}:${args[0]}` : name;
        counts[key] = (counts[key] ?? 0) + 1;
        return call(...args);
      };
    }
  }
  const instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
  exports = instance.exports;
  memory = exports.memory;
  exports._initialize?.();
  const ROOT = 1;
  exports.proxy_on_context_create(ROOT, 0);
  if (!exports.proxy_on_vm_start(ROOT, 0)) throw new Error("proxy_on_vm_start refused");
  if (!exports.proxy_on_configure(ROOT, configBytes.length)) {
    throw new Error("the configuration was refused");
  }

  let context = ROOT + 1;
  // One request, as Envoy delivers it for `GET /tickets/42`; whether it went upstream.
  host.send = () => {
    const id = context++;
    host.request = [
      [":authority", "127.0.0.1:10000"], [":path", "/tickets/42"], [":method", "GET"],
      [":scheme", "http"], ["user-agent", "wrk"], ["authorization", `Bearer ${token}`],
      ["x-forwarded-proto", "http"],
      ["x-request-id", `6a1f0c2e-7b3d-4e59-9c1a-${String(id % 1e12).padStart(12, "0")}`],
    ];
    host.response = [[":status", "200"], ["content-length", "3"]];
    exports.proxy_on_context_create(id, ROOT);
    const action = exports.proxy_on_request_headers(id, host.request.length, 1);
    exports.proxy_on_response_headers(id, host.response.length, 1);
    exports.proxy_on_log(id);
    exports.proxy_on_done(id);
    exports.proxy_on_delete(id);
    return action === CONTINUE;
  };
  return host;
}

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];

// Microseconds per request (median of batches) under `config`; with the records in the host
// log, also the records' timer_total_ns (the decision and applying it).
function measure(config) {
  const hostLog = config.decision_log?.host_log !== false;
  const host = instantiate(config);
  for (let i = 0; i < WARM_UP; i++) host.send();
  host.localReplies.length = 0;
  host.records.length = 0;
  const perBatch = Math.max(1, Math.floor(ITERATIONS / BATCHES));
  const batches = [];
  for (let b = 0; b < BATCHES; b++) {
    const started = hrtime.bigint();
    for (let i = 0; i < perBatch; i++) {
      if (!host.send()) throw new Error(`a request was refused: ${host.localReplies.at(-1)}`);
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
  const host = instantiate(accessLogConfig, counts);
  for (let i = 0; i < 10; i++) host.send();
  for (const name of Object.keys(counts)) delete counts[name];
  const REQUESTS = 100;
  for (let i = 0; i < REQUESTS; i++) host.send();
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
