//! OPA-layout bundles: `.manifest` (revision), `*.rego` modules, `data.json` files whose
//! directory is their place in `data`. Test files stay out of what ships to the gateway.

use crate::args::Args;
use chaperone_core::hash::HashAlg;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct Bundle {
    pub name: String,
    pub revision: String,
    /// Relative path to source, `*_test.rego` included.
    pub modules: Vec<(String, String)>,
    pub data: Value,
}

/// The ECDS resource Envoy watches (`envoy-config/ecds.yaml`), as shipped.
const ECDS_TEMPLATE: &str = include_str!("../../envoy-config/ecds-chaperone.yaml");

pub fn command(args: &mut Args) -> Result<ExitCode, String> {
    let ecds = args.flag("ecds");
    let wasm = args.optional("wasm")?;
    let dir = args.required_positional("DIR")?;
    let into = args.optional("into")?;
    args.finish()?;
    let bundle = load(Path::new(&dir))?;
    let policy = bundle.policy_object();
    let output = match into {
        None if ecds => {
            return Err(
                "--ecds needs --into CONFIG.json: the resource holds the whole configuration"
                    .to_owned(),
            )
        }
        None => policy,
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            let mut config: Value =
                serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            merge_policy(&mut config, policy).map_err(|e| format!("{path}: {e}"))?;
            // Refuse to write a configuration the plugin would only reject.
            chaperone_core::load(config.to_string().as_bytes()).map_err(|e| e.to_string())?;
            config
        }
    };
    if ecds {
        let wasm = wasm.ok_or("--ecds needs --wasm PATH: where Envoy finds chaperone.wasm")?;
        print!("{}", ecds_resource(&output, &bundle.revision, &wasm)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&output).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

/// The shipped ECDS resource template with this configuration, version and module path. The
/// configuration becomes a JSON string, which is also a valid YAML double-quoted scalar.
fn ecds_resource(config: &Value, revision: &str, wasm: &str) -> Result<String, String> {
    let text = config.to_string();
    let quoted = serde_json::to_string(&text).map_err(|e| e.to_string())?;
    // The revision names the bundle; the digest changes with anything else in the resource
    // (a revocation, a registry entry), so Envoy's `version_text` tells every update apart.
    let digest = HashAlg::Sha256.digest(text.as_bytes());
    let digest: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    // Characters a YAML scalar takes as they are; the rest of a revision becomes `_`.
    let revision: String = revision
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '-' | '_' | ':' => c,
            _ => '_',
        })
        .collect();
    let version = match revision.as_str() {
        "" => format!("unversioned+{digest}"),
        revision => format!("{revision}+{digest}"),
    };
    // JSON strings are YAML double-quoted scalars: a path with a space or a brace stays one.
    let wasm = serde_json::to_string(wasm).map_err(|e| e.to_string())?;
    let mut text = ECDS_TEMPLATE.to_owned();
    for (name, value) in [
        ("${VERSION}", version),
        ("${WASM_PATH}", wasm),
        ("${PLUGIN_CONFIG}", quoted),
    ] {
        text = text.replace(name, &value);
    }
    Ok(text)
}

/// Puts the bundle into `config.policy`, keeping settings the bundle does not carry
/// (`decision_path`, `max_eval_ms`).
pub fn merge_policy(config: &mut Value, policy: Value) -> Result<(), String> {
    let config = config
        .as_object_mut()
        .ok_or("configuration must be a JSON object")?;
    let existing = config.remove("policy").unwrap_or_else(|| json!({}));
    let mut merged = existing.as_object().cloned().unwrap_or_default();
    for (key, value) in policy.as_object().cloned().unwrap_or_default() {
        merged.insert(key, value);
    }
    config.insert("policy".to_owned(), Value::Object(merged));
    Ok(())
}

impl Bundle {
    /// The `policy` configuration object: shipped modules only, no tests.
    pub fn policy_object(&self) -> Value {
        json!({"name": self.name, "revision": self.revision,
               "modules": self.shipped_modules(), "data": self.data})
    }

    /// The modules a gateway gets, by path: `*_test.rego` left out.
    pub fn shipped_modules(&self) -> BTreeMap<String, String> {
        self.modules
            .iter()
            .filter(|(path, _)| !is_test_module(path))
            .cloned()
            .collect()
    }
}

pub fn is_test_module(path: &str) -> bool {
    path.ends_with("_test.rego")
}

pub fn load(dir: &Path) -> Result<Bundle, String> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    let manifest: Value = match std::fs::read_to_string(dir.join(".manifest")) {
        Ok(text) => {
            serde_json::from_str(&text).map_err(|e| format!("{}/.manifest: {e}", dir.display()))?
        }
        Err(_) => json!({}),
    };
    let revision = manifest
        .get("revision")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            dir.canonicalize()
                .ok()?
                .file_name()?
                .to_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "bundle".to_owned());
    let mut modules = Vec::new();
    let mut data = json!({});
    for file in files {
        let relative = file.strip_prefix(dir).map_err(|e| e.to_string())?;
        let relative_text = relative.to_string_lossy().replace('\\', "/");
        let file_name = relative
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if file_name.ends_with(".rego") {
            let source =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            modules.push((relative_text, source));
        } else if file_name == "data.json" {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let value: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let location: Vec<String> = relative
                .parent()
                .map(|p| p.iter().map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            insert_at(&mut data, &location, value).map_err(|e| format!("{relative_text}: {e}"))?;
        }
    }
    if modules.iter().all(|(path, _)| is_test_module(path)) {
        return Err(format!("{}: no Rego modules", dir.display()));
    }
    Ok(Bundle {
        name,
        revision,
        modules,
        data,
    })
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if path.is_dir() && !hidden {
            collect_files(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Merges `value` at `location` in `data`; two files may not define the same key.
fn insert_at(data: &mut Value, location: &[String], value: Value) -> Result<(), String> {
    let mut target = data;
    for segment in location {
        let object = target
            .as_object_mut()
            .ok_or("data location is not an object")?;
        target = object.entry(segment.clone()).or_insert_with(|| json!({}));
    }
    let (Some(target), Value::Object(incoming)) = (target.as_object_mut(), value) else {
        return Err("data.json must hold a JSON object".to_owned());
    };
    for (key, value) in incoming {
        if target.contains_key(&key) {
            return Err(format!("data key `{key}` is defined twice"));
        }
        target.insert(key, value);
    }
    Ok(())
}
