//! `chaperone`: the offline half of the product, built on the same core as the plugin.

mod args;
mod bundle;
mod check;
mod eval;
mod kong;
mod policy_test;
mod replay;
mod token;

use args::Args;
use std::process::ExitCode;

const USAGE: &str = "\
chaperone: identity-first policy for AI agents (offline tools)

usage:
  chaperone check CONFIG.json             validate a plugin configuration: the published schema
                                          and the plugin's own parser (exit 1 on error)
  chaperone check BUNDLE_DIR [--decision-path PATH]
                                          every module compiles, the data merges, the rule exists
  chaperone bundle DIR [--into CONFIG.json] [--ecds --wasm PATH]
                                          pack an OPA-layout bundle into the `policy` object, into
                                          a whole configuration with --into, or into an Envoy ECDS
                                          resource (envoy-config/ecds-chaperone.yaml) with --ecds
  chaperone test DIR [--coverage]         run every test_* rule of every *_test.rego under DIR;
                                          --coverage lists the policy lines the tests evaluated
  chaperone eval --config CONFIG.json --request 'METHOD PATH' [--token JWT] [--txn JWT]
                 [--grant JWT]... [--header 'NAME: VALUE']... [--host HOST] [--at TIME]
                 [--compact]
                                          the decision record the plugin would write for this
                                          request; exit 0 if it would go upstream, 1 if not.
                                          TIME: RFC 3339 (2026-11-25T10:00:00Z) or Unix seconds
  chaperone replay --records FILE --bundle DIR [--decision-path PATH] [--json]
                                          re-evaluate recorded decisions (JSON lines, or an
                                          Envoy log) with a candidate bundle; report what flips
  chaperone kong-meta                     chaperone.meta.json for Kong on stdout: the config
                                          schema and the metric label patterns
  chaperone token keygen --alg ES256|RS256|EdDSA --kid KID --out DIR
                                          new key pair: DIR/KID.key.pem, public key added to DIR/jwks.json
  chaperone token mint --key DIR/KID.key.pem --alg ALG --kid KID --iss ISS --aud AUD --sub AGENT
                       [--owner OWNER] [--ttl SECONDS] [--claim NAME=VALUE]...
                                          a signed development token on stdout
";

fn main() -> ExitCode {
    let mut args = Args::from_env();
    let result = match args.next_positional().as_deref() {
        Some("check") => check::command(&mut args),
        Some("eval") => eval::command(&mut args),
        Some("replay") => replay::command(&mut args),
        Some("bundle") => bundle::command(&mut args),
        Some("test") => policy_test::command(&mut args),
        Some("token") => token::command(&mut args),
        Some("kong-meta") => kong::command(&mut args),
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("chaperone: {message}");
            ExitCode::from(2)
        }
    }
}
