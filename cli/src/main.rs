//! `chaperone`: the offline half of the product, built on the same core as the plugin.

mod args;
mod bundle;
mod kong;
mod policy_test;
mod token;

use args::Args;
use std::process::ExitCode;

const USAGE: &str = "\
chaperone: identity-first policy for AI agents (offline tools)

usage:
  chaperone check CONFIG.json             validate a plugin configuration (exit 1 on error)
  chaperone bundle DIR [--into CONFIG.json]
                                          pack an OPA-layout bundle into the `policy` object,
                                          or into a whole configuration with --into
  chaperone test DIR                      run every test_* rule of every *_test.rego under DIR
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
        Some("check") => check(&mut args),
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

/// Same verdict as the plugin's `on_configure`, offline.
fn check(args: &mut Args) -> Result<ExitCode, String> {
    let path = args.required_positional("CONFIG.json")?;
    args.finish()?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    match chaperone_core::load(&bytes) {
        Ok(chaperone_core::Loaded::Empty) => {
            println!("{path}: ok (empty: every request is denied with 503 policy_unavailable)");
            Ok(ExitCode::SUCCESS)
        }
        Ok(chaperone_core::Loaded::Ready(compiled)) => {
            println!(
                "{path}: ok ({} issuer(s), policy `{}` revision `{}`, decision path `{}`)",
                compiled.issuers.len(),
                compiled.policy.name,
                compiled.policy.revision,
                compiled.policy.decision_path
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{path}: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
