//! `chaperone check`: the verdict `on_configure` would give a configuration, with the field at
//! fault, after the same schema check Kong applies; or, for a bundle directory, whether every
//! module compiles and the data has the shape bundles need.

use crate::args::Args;
use crate::bundle;
use chaperone_core::decision_cache::InputReads;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

pub fn command(args: &mut Args) -> Result<ExitCode, String> {
    let decision_path = args.optional("decision-path")?;
    let path = args.required_positional("CONFIG.json or BUNDLE_DIR")?;
    args.finish()?;
    if Path::new(&path).is_dir() {
        return check_bundle(&path, decision_path.as_deref());
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut problems = schema_problems(&bytes)?;
    match chaperone_core::load(&bytes) {
        Ok(chaperone_core::Loaded::Empty) if problems.is_empty() => {
            println!("{path}: ok (empty: every request is denied with 503 policy_unavailable)");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(chaperone_core::Loaded::Ready(compiled)) if problems.is_empty() => {
            if let Some(warning) = compiled.body_warning() {
                eprintln!("{path}: warning: {warning}");
            }
            println!(
                "{path}: ok ({} issuer(s), policy `{}` revision `{}`, decision path `{}`)",
                compiled.issuers.len(),
                compiled.policy.name,
                compiled.policy.revision,
                compiled.policy.decision_path
            );
            print_input_reads(&compiled.policy.input_reads);
            if compiled.policy.body_reads && compiled.max_request_body_bytes > 0 {
                println!(
                    "  reads the request body (up to {} bytes): a request with a body is held \
                     until it is in (README, \"Request bodies\")",
                    compiled.max_request_body_bytes
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Ok(_) => {}
        Err(error) => {
            problems.insert(0, error.to_string());
            if let Some(hint) = host_file_hint(&path, &bytes) {
                problems.push(hint.to_owned());
            }
        }
    }
    for problem in problems {
        eprintln!("{path}: {problem}");
    }
    Ok(ExitCode::FAILURE)
}

/// An Envoy or Kong file given where chaperone's own configuration was expected.
fn host_file_hint(path: &str, bytes: &[u8]) -> Option<&'static str> {
    let yaml = [".yaml", ".yml"].iter().any(|ext| path.ends_with(ext));
    (yaml && serde_json::from_slice::<Value>(bytes).is_err()).then_some(
        "this looks like an Envoy or Kong YAML file: check takes chaperone's configuration (the \
         JSON an Envoy filter passes as its StringValue `configuration`, Kong as the filter's \
         `config`), e.g. the file `chaperone bundle DIR --into BASE.json` writes",
    )
}

/// Where the document breaks the published schema (`chaperone.schema.json`), as JSON
/// Pointers: what Kong would refuse before chaperone sees it. Empty text is an empty
/// configuration and JSON syntax errors are left to the parser, which gives their line.
fn schema_problems(bytes: &[u8]) -> Result<Vec<String>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let Ok(document) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(Vec::new());
    };
    let schema: Value = serde_json::from_str(crate::kong::SCHEMA).map_err(|e| e.to_string())?;
    let validator = jsonschema::draft4::new(&schema).map_err(|e| e.to_string())?;
    Ok(validator
        .iter_errors(&document)
        .map(|error| {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            format!("schema: at {at}: {error}")
        })
        .collect())
}

/// Every module of the bundle (tests included) compiles, the data merges into one document,
/// and, with `--decision-path`, the rule exists.
fn check_bundle(dir: &str, decision_path: Option<&str>) -> Result<ExitCode, String> {
    let loaded = bundle::load(Path::new(dir))?;
    let mut engine = chaperone_core::builtins::engine();
    let mut problems = Vec::new();
    for (file, source) in &loaded.modules {
        if let Err(error) = engine.add_policy(format!("{dir}/{file}"), source.clone()) {
            problems.push(error.to_string());
        }
    }
    if let Some(path) = decision_path.filter(|_| problems.is_empty()) {
        if let Err(error) = chaperone_core::policy::Policy::compile(
            &loaded.shipped_modules(),
            loaded.data.clone(),
            path,
            loaded.name.clone(),
            loaded.revision.clone(),
            50,
        ) {
            problems.push(error.to_string());
        }
    }
    if problems.is_empty() {
        let tests = loaded
            .modules
            .iter()
            .filter(|(file, _)| bundle::is_test_module(file))
            .count();
        println!(
            "{dir}: ok (bundle `{}` revision `{}`, {} module(s), {tests} test file(s))",
            loaded.name,
            loaded.revision,
            loaded.modules.len() - tests
        );
        print_input_reads(&InputReads::of_modules(&loaded.shipped_modules()));
        return Ok(ExitCode::SUCCESS);
    }
    for problem in problems {
        eprintln!("{problem}");
    }
    Ok(ExitCode::FAILURE)
}

/// What an answer carrying `cache_seconds` is remembered by: the parts of the input the
/// modules read, so a policy author can see why answers are, or are not, given from memory.
fn print_input_reads(reads: &InputReads) {
    let reads = reads.to_string();
    if reads.is_empty() {
        println!("  reads nothing of the input: an answer with cache_seconds serves every request");
    } else {
        println!("  reads {reads} (the clock aside): the key of an answer with cache_seconds");
    }
}
