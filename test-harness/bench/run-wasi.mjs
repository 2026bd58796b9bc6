// Runs a wasm32-wasip1 program under Node's WASI: V8, the runtime Envoy embeds for Wasm.
// Run it with `node --no-liftoff`: Envoy's V8 integration (proxy-wasm-cpp-host) compiles every
// function with TurboFan, never the baseline tier, and so should the measurement.
// `node run-wasi.mjs PROGRAM.wasm [ARGS...]`; standard input and output pass through.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, exit } from "node:process";

const [program, ...args] = argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [program, ...args], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(program));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
exit(wasi.start(instance));
