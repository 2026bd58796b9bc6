// A minimal proxy-wasm host (ABI 0.2.1) in JavaScript, for running the plugin in Node's V8
// without Envoy: `bench/filter-host.mjs` times the whole request path under it, and
// `host/fuzz.mjs` drives it with hostile requests and failing host calls (catalogue F07).
//
// It does the least a host must: copy headers in and out, answer properties, take log lines
// and properties, count metrics, keep shared data. Options let a caller count every host call
// by name, answer `proxy_get_property`, and make any host call fail with a status of its
// choosing.
import { readFileSync } from "node:fs";
import { randomFillSync } from "node:crypto";
import { hrtime } from "node:process";

export const CONTINUE = 0;
export const OK = 0, NOT_FOUND = 1, UNIMPLEMENTED = 12;
export const MAP_REQUEST_HEADERS = 0, MAP_RESPONSE_HEADERS = 2;
const BUFFER_HTTP_REQUEST_BODY = 0, BUFFER_VM_CONFIGURATION = 6, BUFFER_PLUGIN_CONFIGURATION = 7;
const LOG_ERROR = 4;
const CAS_MISMATCH = 8;
export const ROOT_CONTEXT = 1;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const asBytes = (value) => (typeof value === "string" ? encoder.encode(value) : value);

// proxy-wasm's header map encoding: count, (name length, value length) pairs, then each name
// and value followed by a NUL. Names and values are strings or bytes.
function serializePairs(pairs) {
  const encoded = pairs.map(([name, value]) => [asBytes(name), asBytes(value)]);
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
}

// One instance of the module at `modulePath`, started and configured with `config` (an object).
// Options:
// - `counts`: an object every host call counts itself in, by name (headers added to the
//   request and to the response apart);
// - `property(path)`: the answer to `proxy_get_property` for a path of segments, as
//   `{status, value}` (value: string or bytes), or null for NotFound (as Envoy answers
//   `kong.version`);
// - `fault(name)`: a status for this call of a host function to fail with, or null;
// - `keep`: every log line and every property set is kept (`logs`, `properties`), not only
//   the records (less work while timing);
// - `quiet`: error-level log lines are not printed.
// Throws when the module refuses to start or to take the configuration.
export function startPlugin(modulePath, config, options = {}) {
  const { counts = null, property = () => null, fault = null, keep = false, quiet = false } =
    options;
  const configBytes = encoder.encode(JSON.stringify(config));
  const host = {
    request: [], response: [], body: new Uint8Array(0), localReplies: [], records: [], logs: [],
    properties: [],
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
  const shared = new Map();
  const epochOffset = BigInt(Date.now()) * 1_000_000n - hrtime.bigint();
  const env = {
    proxy_log: (level, ptr, len) => {
      const line = text(ptr, len);
      if (keep) host.logs.push(line);
      if (line.includes("{\"decision_id\"")) host.records.push(line);
      if (level >= LOG_ERROR && !quiet) console.error(line);
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
      return found ? give(asBytes(found[1]), ptrPtr, sizePtr) : NOT_FOUND;
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
    proxy_send_local_response: (status, detailsPtr, detailsLen, bodyPtr, bodyLen) => {
      host.localReplies.push({
        status, details: text(detailsPtr, detailsLen), body: text(bodyPtr, bodyLen),
      });
      return OK;
    },
    proxy_get_buffer_bytes: (type, start, max, ptrPtr, sizePtr) => {
      if (type === BUFFER_PLUGIN_CONFIGURATION) return give(configBytes, ptrPtr, sizePtr);
      if (type === BUFFER_HTTP_REQUEST_BODY) {
        return give(host.body.subarray(start, start + max), ptrPtr, sizePtr);
      }
      if (type === BUFFER_VM_CONFIGURATION) return give(new Uint8Array(0), ptrPtr, sizePtr);
      return NOT_FOUND;
    },
    proxy_define_metric: (type, namePtr, nameLen, idPtr) => {
      view().setUint32(idPtr, 1, true);
      return OK;
    },
    proxy_increment_metric: () => OK,
    proxy_record_metric: () => OK,
    proxy_set_property: (pathPtr, pathLen, valuePtr, valueLen) => {
      if (keep) host.properties.push([text(pathPtr, pathLen), text(valuePtr, valueLen)]);
      return OK;
    },
    proxy_get_property: (pathPtr, pathLen, ptrPtr, sizePtr) => {
      const answer = property(text(pathPtr, pathLen).split("\0"));
      if (!answer) return NOT_FOUND;
      if (answer.status !== OK) return answer.status;
      return give(asBytes(answer.value), ptrPtr, sizePtr);
    },
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
      if (cas !== 0 && entry && entry.cas !== cas) return CAS_MISMATCH;
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
        const line = text(ptr, len);
        if (keep) host.logs.push(line);
        if (!quiet) console.error(line);
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
  // Imports the module declares and no one answers here answer Unimplemented.
  for (const { module: from, name } of WebAssembly.Module.imports(module)) {
    const table = from === "env" ? env : wasi;
    table[name] ??= () => UNIMPLEMENTED;
    if (!counts && !fault) continue;
    const call = table[name];
    table[name] = (...args) => {
      if (counts) {
        // Headers are added to the request or to the response: counted apart.
        const key = name === "proxy_add_header_map_value" ? `${name}:${args[0]}` : name;
        counts[key] = (counts[key] ?? 0) + 1;
      }
      const failure = fault && from === "env" ? fault(name) : null;
      return failure ?? call(...args);
    };
  }
  const instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
  exports = instance.exports;
  memory = exports.memory;
  exports._initialize?.();
  exports.proxy_on_context_create(ROOT_CONTEXT, 0);
  if (!exports.proxy_on_vm_start(ROOT_CONTEXT, 0)) throw new Error("proxy_on_vm_start refused");
  if (!exports.proxy_on_configure(ROOT_CONTEXT, configBytes.length)) {
    throw new Error("the configuration was refused");
  }

  let nextContext = ROOT_CONTEXT + 1;
  host.exports = exports;
  host.newContext = () => nextContext++;
  // One request with these request headers (pairs of strings or bytes), through every
  // callback Envoy makes for it; the action the module returned for the request headers.
  host.send = (request, response = [[":status", "200"], ["content-length", "3"]]) => {
    const id = nextContext++;
    host.request = request;
    host.response = response;
    exports.proxy_on_context_create(id, ROOT_CONTEXT);
    const action = exports.proxy_on_request_headers(id, host.request.length, 1);
    exports.proxy_on_response_headers(id, host.response.length, 1);
    exports.proxy_on_log(id);
    exports.proxy_on_done(id);
    exports.proxy_on_delete(id);
    return action;
  };
  return host;
}
