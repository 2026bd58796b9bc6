//! The chaperone CLI as the harness's programs (`make run`, `make bench`) use it: development
//! keys, packed bundles and tokens, the way a user would make them.

use std::path::Path;
use std::process::Command;

/// Runs `cli` with `args`; its standard output, or an error naming the command.
pub fn run_cli(cli: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(cli)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e} (run `make cli`)", cli.display()))?;
    if !output.status.success() {
        return Err(format!(
            "chaperone {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| e.to_string())
}

/// Who a development token is from and for.
pub struct TokenSpec<'a> {
    pub key_path: &'a str,
    pub alg: &'a str,
    pub kid: &'a str,
    pub issuer: &'a str,
    pub audience: &'a str,
}

/// A token for the demo agent `support-bot` (owner `alice@example.com`), valid for an hour.
pub fn mint_support_bot_token(cli: &Path, spec: &TokenSpec) -> Result<String, String> {
    let token = run_cli(
        cli,
        &[
            "token",
            "mint",
            "--key",
            spec.key_path,
            "--alg",
            spec.alg,
            "--kid",
            spec.kid,
            "--iss",
            spec.issuer,
            "--aud",
            spec.audience,
            "--sub",
            "support-bot",
            "--owner",
            "alice@example.com",
            "--ttl",
            "3600",
        ],
    )?;
    Ok(token.trim().to_owned())
}
