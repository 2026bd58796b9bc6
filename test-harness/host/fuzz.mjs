// Host-level fuzzing (security catalogue F07): the built module under the JavaScript host of
// proxy-wasm-host.mjs, driven with hostile requests, odd property values, host calls that
// fail, and callbacks out of order, from a seeded generator so a failure replays.
//
// `node fuzz.mjs MODULE.wasm CONFIG.json BODY_CONFIG.json TOKEN_FILE SEED CASES`, each case on
// a VM as Envoy runs it, one as Kong does, or one whose policy reads request bodies (given in
// pieces)
// (test-harness/tests/host_fuzz.rs runs it with a configuration and token it makes).
//
// What must hold for every case, whatever the host does:
// - the module never traps (a Rust panic aborts the VM; Envoy would then refuse requests);
// - at most one local reply per request, and none for a request let through; with every
//   host call succeeding, a request is either let through or replied to, never left paused;
// - a request let through carries no agent token header (`forward` is off) and no identity
//   header the client wrote;
// - no log line and no property holds the valid token or its claims and signature;
// - with every host call succeeding and the callbacks in Envoy's order, exactly one decision
//   record per request, and it is JSON;
// - a clean request after any case is let through: the VM keeps serving.
// At the end, every kind of outcome must have occurred, or the run proves nothing.
import { readFileSync } from "node:fs";
import { argv, exit } from "node:process";
import { CONTINUE, OK, ROOT_CONTEXT, startPlugin } from "./proxy-wasm-host.mjs";

const [modulePath, configPath, bodyConfigPath, tokenPath, seedArg, casesArg] = argv.slice(2);
if (!casesArg) {
  console.error("usage: fuzz.mjs MODULE.wasm CONFIG.json BODY_CONFIG.json TOKEN_FILE SEED CASES");
  exit(2);
}
const config = JSON.parse(readFileSync(configPath, "utf8"));
const bodyConfig = JSON.parse(readFileSync(bodyConfigPath, "utf8"));
const token = readFileSync(tokenPath, "utf8").trim();
const claimsAndSignature = token.slice(token.indexOf(".") + 1);
const SPOOFED = "spoofed-by-client";

// mulberry32: small, seeded, good enough to pick cases.
function generator(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const below = (n) => Math.floor(next() * n);
  return {
    chance: (p) => next() < p,
    below,
    pick: (items) => items[below(items.length)],
    bytes: (max) => Uint8Array.from({ length: below(max + 1) }, () => below(256)),
  };
}

const random = generator(Number(seedArg));
const encoder = new TextEncoder();

// Statuses a host call can fail with (proxy-wasm's WasmResult): NotFound, BadArgument,
// InvalidMemoryAccess, Empty, InternalFailure, Unimplemented.
const FAILURES = [1, 2, 6, 7, 10, 12];

const PATHS = [
  "/tickets/42", "/tickets", "/", "", "*", "/tickets/42?access_token=a?access_token=b",
  "/t?access%255Ftoken=x&next=%252Fa%253Faccess_token%253Dy", "/%", "/%zz/%c3%28",
  `/tickets/${"a/".repeat(3000)}`, `/t?${"access_token=".repeat(500)}`, "//admin/../x",
  `/t?q=${token}`, `/t/${token.replaceAll(".", "%2E")}`, `/t#access_token=${token}`,
];
const PROPERTY_VALUES = [
  "127.0.0.1:40000", "[::1]:8443", "[::ffff:10.1.2.3]:80", "10.0.0.1", "@gateway.sock",
  "1.2.3.4:99999", "", "spiffe://example.org/ns/agents/sa/bot", "CN=bot,O=Example",
  "\u0000", "80", "TLSv1.3", "x".repeat(5000),
];

// A token edited in one of the ways clients and attackers edit them.
function editedToken() {
  const parts = token.split(".");
  switch (random.below(7)) {
    case 0: return token.slice(0, random.below(token.length));
    case 1: {
      const at = random.below(token.length);
      return token.slice(0, at) + random.pick(["A", "_", "-", ".", "=", "%", " "]) + token.slice(at + 1);
    }
    case 2: return [parts[0], parts[1]].join(".");
    case 3: return [parts[0], parts[1], parts[2], parts[2]].join(".");
    case 4: return ".".repeat(random.below(2000));
    case 5: return `${token},${token}`;
    default: return "eyJhbGciOiJub25lIn0." + parts[1] + ".";
  }
}

// A request: Envoy's pseudo-headers, the token, then some edits.
function request() {
  const pairs = [
    [":authority", "api.example"], [":path", "/tickets/42"], [":method", "GET"],
    [":scheme", "http"], ["authorization", `Bearer ${token}`], ["x-request-id", "r-1"],
  ];
  // Replaces the pair at `at` (the request as built has it there), or adds it when edits
  // already removed that many.
  const put = (at, pair) => {
    if (at < pairs.length) pairs[at] = pair;
    else pairs.push(pair);
  };
  const edits = random.pick([0, 0, 1, 1, 2, 3, 4]);
  for (let i = 0; i < edits; i++) {
    switch (random.below(11)) {
      case 0: pairs.splice(random.below(pairs.length), 1); break; // may leave none
      case 1: if (pairs.length > 0) pairs.push([...random.pick(pairs)]); break;
      case 2: pairs.push([random.bytes(12), random.bytes(40)]); break;
      case 3: put(1, [":path", random.pick(PATHS)]); break;
      case 4: pairs.push(["authorization", `Bearer ${editedToken()}`]); break;
      case 5: put(4, ["authorization", random.pick(["Bearer ", "bearer  ", "Basic x", ""]) + editedToken()]); break;
      case 6: pairs.push([random.pick(["x-chaperone-agent-id", "X-Chaperone-Owner", "x_chaperone_task",
        "x-chaperone-decision-id"]), SPOOFED]); break;
      case 7: put(2, [":method", random.pick(["DELETE", "get", "", "G\u0000T"])]); break;
      case 8: pairs.push(["x-forwarded-for", "10.1.2.3"]); break;
      case 9: put(0, [":authority", random.bytes(20)]); break;
      default: pairs.push([random.pick(["x-token", "cookie", "referer"]), token]); break;
    }
  }
  return pairs;
}

// What Envoy answers for a client on the loopback over mutual TLS, and Kong for one on the
// loopback (Kong has no certificate names, and gives the port apart, as text).
const PLAUSIBLE_PROPERTIES = {
  envoy: {
    "source.address": "127.0.0.1:40000",
    "destination.address": "127.0.0.1:10000",
    "connection.mtls": Uint8Array.of(1),
    "connection.tls_version": "TLSv1.3",
    "connection.uri_san_peer_certificate": "spiffe://example.org/ns/agents/sa/bot",
    "connection.uri_san_local_certificate": "spiffe://example.org/ns/edge/sa/gateway",
  },
  kong: { "source.address": "127.0.0.1", "source.port": "40000" },
};

// A JSON-RPC call the body gateway's policy allows.
const ALLOWED_CALL = JSON.stringify({ method: "tools/call", params: { name: "search" } });

// Bodies for the gateway that reads them, cut into pieces, with a content type to match (or
// not): JSON calls allowed and refused, a token among the arguments, junk, more than the
// limit, two documents, deep nesting, nothing.
function bodyChunks(pairs) {
  const body = encoder.encode(random.pick([
    () => ALLOWED_CALL,
    () => JSON.stringify({ method: "tools/call", params: { name: "delete_repo" } }),
    () => JSON.stringify({ method: "tools/call", params: { name: "search", arguments: { token } } }),
    () => "x".repeat(random.below(2000)),
    () => "[".repeat(random.below(5000)),
    () => `${ALLOWED_CALL}${ALLOWED_CALL}`,
    () => "",
  ])());
  const chunks = [];
  const pieces = body.length === 0 ? random.below(2) : 1 + random.below(4);
  let at = 0;
  for (let i = 0; i < pieces; i++) {
    const end = i === pieces - 1 ? body.length : at + random.below(body.length - at + 1);
    chunks.push(i === 0 && random.chance(0.2) ? random.bytes(20) : body.subarray(at, end));
    at = end;
  }
  pairs.push(["content-type", random.pick(["application/json", "application/json; charset=utf-8",
    "text/plain", "application/x+json"])]);
  return chunks;
}

// A request with this body in one piece through Envoy's callbacks; the last action.
function sendWithBody(pairs, body) {
  const id = host.newContext();
  host.request = pairs;
  host.body = body;
  host.response = [[":status", "200"]];
  const exports = host.exports;
  exports.proxy_on_context_create(id, ROOT_CONTEXT);
  let action = exports.proxy_on_request_headers(id, pairs.length, 0);
  if (action === CONTINUE) action = exports.proxy_on_request_body(id, body.length, 1);
  exports.proxy_on_response_headers(id, 1, 1);
  exports.proxy_on_log(id);
  exports.proxy_on_done(id);
  exports.proxy_on_delete(id);
  return action;
}

// One case's answers to property reads (the same path answers the same within a case): half
// the cases as Envoy would answer, half with anything.
function propertyAnswers(kind) {
  const plausible = random.chance(0.5);
  const answers = new Map();
  return (path) => {
    const key = path.join(".");
    if (plausible) {
      const value = PLAUSIBLE_PROPERTIES[kind][key];
      return value === undefined ? null : { status: OK, value };
    }
    if (!answers.has(key)) {
      const roll = random.below(10);
      answers.set(key, roll < 3 ? null
        : roll < 4 ? { status: random.pick(FAILURES) }
        : roll < 6 ? { status: OK, value: random.bytes(10) }
        : { status: OK, value: random.pick(PROPERTY_VALUES) });
    }
    return answers.get(key);
  };
}

let faultRate = 0;
let faultsInjected = 0;
let property = () => null;
// One VM as Envoy runs it, one as Kong does (which answers `kong.version`), and one as Envoy
// runs it with a policy that reads request bodies.
const gateways = ["envoy", "kong", "body"].map((kind) => {
  const host = startPlugin(modulePath, kind === "body" ? bodyConfig : config, {
    keep: true,
    quiet: true,
    fault: () => {
      if (faultRate === 0 || !random.chance(faultRate)) return null;
      faultsInjected++;
      return random.pick(FAILURES);
    },
    property: (path) => (path.join(".") === "kong.version"
      ? (kind === "kong" ? { status: OK, value: "3.9.1" } : null)
      : property(path)),
  });
  return { kind, host, properties: kind === "kong" ? "kong" : "envoy" };
});
let host = gateways[0].host;

const tally = {
  allowed: 0, replied: 0, checkedRecords: 0, weirdOrders: 0, kongAllowed: 0, bodiesAllowed: 0,
};
const failures = [];
const fail = (caseIndex, what) => {
  failures.push(`case ${caseIndex} (seed ${seedArg}): ${what}`);
};

const secretIn = (text) => text.includes(token) || text.includes(claimsAndSignature);

function checkSecrets(caseIndex, fromLog, fromProperty) {
  for (const line of host.logs.slice(fromLog)) {
    if (secretIn(line)) fail(caseIndex, `a log line holds the token: ${line.slice(0, 300)}`);
  }
  for (const [name, value] of host.properties.slice(fromProperty)) {
    if (secretIn(value)) fail(caseIndex, `property ${name} holds the token`);
  }
}

function checkLetThrough(caseIndex, action, repliesBefore) {
  if (action !== CONTINUE) return;
  tally.allowed++;
  if (host === gateways[1].host) tally.kongAllowed++;
  if (host.localReplies.length !== repliesBefore) fail(caseIndex, "a reply to a request let through");
  const decoder = new TextDecoder();
  for (const [name, value] of host.request) {
    const nameText = typeof name === "string" ? name : decoder.decode(name);
    const valueText = typeof value === "string" ? value : decoder.decode(value);
    if (nameText.toLowerCase() === "authorization" && valueText.includes(token)) {
      fail(caseIndex, "the agent token went upstream");
    }
    if (valueText === SPOOFED) fail(caseIndex, `${nameText}: a client's identity header went upstream`);
  }
}

// One request through Envoy's callbacks, or an odd order of them.
function runCase(caseIndex) {
  const gateway = random.pick(gateways);
  host = gateway.host;
  const exports = host.exports;
  const faulty = random.chance(0.3);
  faultRate = faulty ? random.pick([0.05, 0.2, 0.6]) : 0;
  property = propertyAnswers(gateway.properties);
  const pairs = request();
  const chunks = gateway.kind === "body" ? bodyChunks(pairs) : [];
  const fromLog = host.logs.length, fromProperty = host.properties.length;
  const repliesBefore = host.localReplies.length;
  const recordsBefore = host.records.length;
  const order = random.chance(0.9) ? "envoy" : random.pick(["no-request", "twice", "response-first", "tick"]);
  const id = host.newContext();
  host.request = pairs;
  host.response = [[":status", "200"]];
  exports.proxy_on_context_create(id, ROOT_CONTEXT);
  let action = null;
  host.body = new Uint8Array(0);
  if (order === "envoy" || order === "twice") {
    action = exports.proxy_on_request_headers(id, pairs.length, chunks.length === 0 ? 1 : 0);
    // Headers let through go upstream, whatever the body will bring.
    checkLetThrough(caseIndex, action, repliesBefore);
    if (order === "twice") exports.proxy_on_request_headers(id, pairs.length, 1);
    for (const [index, chunk] of chunks.entries()) {
      if (action !== CONTINUE || host.localReplies.length > repliesBefore) break;
      const whole = new Uint8Array(host.body.length + chunk.length);
      whole.set(host.body);
      whole.set(chunk, host.body.length);
      host.body = whole;
      const last = index === chunks.length - 1;
      const bodyAction = exports.proxy_on_request_body(id, host.body.length, last ? 1 : 0);
      // Paused: the host buffers, and calls again with what came since.
      if (bodyAction === CONTINUE || last || host.localReplies.length > repliesBefore) {
        action = bodyAction;
        if (bodyAction === CONTINUE) break;
      }
    }
    if (order === "envoy" && action === CONTINUE && host.localReplies.length > repliesBefore) {
      fail(caseIndex, "a reply to a request let through");
    }
    if (action === CONTINUE && chunks.length > 0) tally.bodiesAllowed++;
  }
  if (order === "response-first") {
    exports.proxy_on_response_headers(id, 1, 1);
    action = exports.proxy_on_request_headers(id, pairs.length, 1);
  }
  // A timer firing mid-request. (An HTTP call's answer is not sent: there is none to answer,
  // and the SDK's dispatcher aborts on a call id it did not make.)
  if (order === "tick") exports.proxy_on_tick(ROOT_CONTEXT);
  exports.proxy_on_response_headers(id, 1, 1);
  exports.proxy_on_log(id);
  exports.proxy_on_done(id);
  exports.proxy_on_delete(id);
  faultRate = 0;

  if (order !== "envoy") tally.weirdOrders++;
  const replies = host.localReplies.length - repliesBefore;
  if (replies > (order === "twice" ? 2 : 1)) fail(caseIndex, `${replies} local replies`);
  if (replies > 0) tally.replied++;
  for (const reply of host.localReplies.slice(repliesBefore)) {
    if (reply.status < 400 || reply.status > 599) fail(caseIndex, `local reply ${reply.status}`);
  }
  checkSecrets(caseIndex, fromLog, fromProperty);
  if (!faulty && order === "envoy") {
    // Paused without a reply, Envoy would hold the request until its timeout.
    if ((action === CONTINUE) === (replies === 1)) {
      fail(caseIndex, `let through: ${action === CONTINUE}, with ${replies} local replies`);
    }
    const records = host.records.slice(recordsBefore);
    if (records.length !== 1) fail(caseIndex, `${records.length} records for one request`);
    for (const line of records) {
      try {
        JSON.parse(line.slice(line.indexOf("{\"decision_id\"")));
        tally.checkedRecords++;
      } catch (error) {
        fail(caseIndex, `a record that is not JSON: ${error.message}`);
      }
    }
  }
}

// A clean request, all host calls answering: it must still be let through.
function stillServing(caseIndex) {
  property = (path) => {
    const value = PLAUSIBLE_PROPERTIES[gateways.find((g) => g.host === host).properties][path.join(".")];
    return value === undefined ? null : { status: OK, value };
  };
  const before = host.localReplies.length;
  const clean = [
    [":authority", "api.example"], [":path", "/tickets/42"], [":method", "GET"],
    [":scheme", "http"], ["authorization", `Bearer ${token}`],
  ];
  const action = host === gateways[2].host
    ? sendWithBody([...clean, ["content-type", "application/json"]], encoder.encode(ALLOWED_CALL))
    : host.send(clean);
  if (action !== CONTINUE) {
    fail(caseIndex, `a clean request was refused afterwards: ${JSON.stringify(host.localReplies.slice(before))}`);
  }
}

const CASES = Number(casesArg);
for (const gateway of gateways) {
  host = gateway.host;
  stillServing(-1);
}
for (let i = 0; i < CASES && failures.length === 0; i++) {
  try {
    runCase(i);
    stillServing(i);
  } catch (error) {
    const what = error instanceof WebAssembly.RuntimeError ? "the module trapped" : "the harness failed";
    fail(i, `${what}: ${error.stack}\n${host.logs.slice(-5).join("\n")}`);
  }
}
if (failures.length === 0) {
  const missing = Object.entries({
    "requests let through": tally.allowed, "requests let through by Kong": tally.kongAllowed,
    "bodies let through": tally.bodiesAllowed,
    "local replies": tally.replied,
    "records checked": tally.checkedRecords, "odd callback orders": tally.weirdOrders,
    "failed host calls": faultsInjected,
  }).filter(([, count]) => count === 0).map(([what]) => what);
  if (missing.length > 0) failures.push(`no ${missing.join(", no ")}: the run proves nothing`);
}
if (failures.length > 0) {
  console.error(failures.slice(0, 5).join("\n"));
  exit(1);
}
console.log(
  `${CASES} cases (seed ${seedArg}): ${tally.allowed} let through ` +
    `(${tally.kongAllowed} by Kong, ${tally.bodiesAllowed} with a body read), ` +
    `${tally.replied} replied to, ` +
    `${tally.checkedRecords} records checked, ${tally.weirdOrders} odd callback orders, ` +
    `${faultsInjected} host calls failed`,
);
