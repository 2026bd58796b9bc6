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
                 [--source ADDR] [--source-principal ID]
                 [--destination ADDR] [--destination-principal ID] [--body TEXT] [--compact]
                                          the decision record the plugin would write for this
                                          request; exit 0 if it would go upstream, 1 if not.
                                          TIME: RFC 3339 (2026-11-25T10:00:00Z) or Unix seconds;
                                          ADDR: the peer's IP:PORT ([IPv6]:PORT) or IP;
                                          ID: its TLS identity (a SPIFFE id, say)
  chaperone replay --records FILE --bundle DIR [--decision-path PATH] [--json]
                                          re-evaluate recorded decisions (JSON lines, or an
                                          Envoy log) with a candidate bundle; report what flips
  chaperone kong-meta                     chaperone.meta.json for Kong on stdout: the config
                                          schema and the metric label patterns
  chaperone token keygen --alg ES256|RS256|EdDSA --kid KID --out DIR
                                          new key pair: DIR/KID.key.pem, public key added to DIR/jwks.json
  chaperone token mint --key DIR/KID.key.pem --alg ALG --kid KID --iss ISS --aud AUD --sub AGENT
                       [--owner OWNER] [--ttl SECONDS] [--typ TYP] [--claim NAME=VALUE]...
                                          a signed development token on stdout; a negative
                                          --ttl has it expired, --claim replaces registered
                                          claims too (exp=1000, aud=[\"a\",\"b\"], nbf=null)
";

fn main() -> ExitCode {
    end_quietly_when_the_reader_goes();
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

/// `chaperone bundle DIR | head` closes the pipe before the output is written: end as a Unix
/// filter does (status 141, as if by SIGPIPE, which Rust programs ignore), not with a panic
/// and a backtrace. Every other panic still reports as usual.
fn end_quietly_when_the_reader_goes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}
