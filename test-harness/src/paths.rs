//! Where the built module and Envoy are: `CHAPERONE_WASM` and `ENVOY_BIN`, defaulting to the
//! workspace's `dist/chaperone.wasm` and `.venv/bin/envoy` (what `make build` / `make tools`
//! produce). A missing file is a hard failure: the end-to-end suite never skips silently.

use std::path::{Path, PathBuf};

/// The Cargo workspace (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// `$CHAPERONE_WASM` or `<workspace>/dist/chaperone.wasm`, if that file exists.
pub fn try_wasm_path() -> Result<PathBuf, String> {
    existing_file(
        "CHAPERONE_WASM",
        "dist/chaperone.wasm",
        "the chaperone module",
    )
}

/// `$ENVOY_BIN` or `<workspace>/.venv/bin/envoy`, if that file exists.
pub fn try_envoy_bin() -> Result<PathBuf, String> {
    existing_file("ENVOY_BIN", ".venv/bin/envoy", "the Envoy binary")
}

/// `$CHAPERONE_CLI` or `<workspace>/target/release/chaperone`, if that file exists.
pub fn try_cli_path() -> Result<PathBuf, String> {
    existing_file(
        "CHAPERONE_CLI",
        "target/release/chaperone",
        "the chaperone CLI",
    )
}

/// Like [`try_cli_path`], panicking with instructions when the CLI is missing.
pub fn cli_path() -> PathBuf {
    try_cli_path().unwrap_or_else(|message| panic!("{message}"))
}

/// Like [`try_wasm_path`], panicking with instructions when the module is missing.
pub fn wasm_path() -> PathBuf {
    try_wasm_path().unwrap_or_else(|message| panic!("{message}"))
}

/// Like [`try_envoy_bin`], panicking with instructions when Envoy is missing.
pub fn envoy_bin() -> PathBuf {
    try_envoy_bin().unwrap_or_else(|message| panic!("{message}"))
}

fn existing_file(variable: &str, default: &str, what: &str) -> Result<PathBuf, String> {
    let (path, origin) = match std::env::var_os(variable) {
        Some(value) if !value.is_empty() => (PathBuf::from(value), format!("${variable}")),
        _ => (
            workspace_root().join(default),
            format!("default; set {variable} to override"),
        ),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{what} not found at {} ({origin}): run `make test`, which builds and installs it",
            path.display()
        ))
    }
}
