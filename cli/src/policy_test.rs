//! `chaperone test`: OPA-style policy tests with regorus (which has no test runner).
//! Every rule named `test_*` in a `*_test.rego` passes when it evaluates to `true`.

use crate::args::Args;
use crate::bundle::{self, is_test_module};
use regorus::{Engine, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// One discovered test rule.
struct TestCase {
    file: String,
    line: usize,
    package: String,
    name: String,
}

pub fn command(args: &mut Args) -> Result<ExitCode, String> {
    let coverage = args.flag("coverage");
    let root = args.required_positional("DIR")?;
    args.finish()?;
    let bundles = bundle_dirs(Path::new(&root))?;
    if bundles.is_empty() {
        return Err(format!("{root}: no bundle with *_test.rego files"));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for dir in bundles {
        let (p, f) = run_bundle(&dir, coverage)?;
        passed += p;
        failed += f;
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A bundle is a directory with a `.manifest`, or the directory itself when it has none.
fn bundle_dirs(root: &Path) -> Result<Vec<PathBuf>, String> {
    if root.join(".manifest").is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut dirs = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            dirs.extend(bundle_dirs(&path)?);
        }
    }
    dirs.sort();
    if dirs.is_empty() {
        dirs.push(root.to_path_buf());
    }
    Ok(dirs)
}

fn run_bundle(dir: &Path, coverage: bool) -> Result<(usize, usize), String> {
    let bundle = bundle::load(dir)?;
    let mut engine = chaperone_core::builtins::engine();
    engine.set_enable_coverage(coverage);
    for (path, source) in &bundle.modules {
        engine
            .add_policy(format!("{}/{path}", dir.display()), source.clone())
            .map_err(|e| format!("{}/{path}: {e}", dir.display()))?;
    }
    engine
        .add_data(Value::from(bundle.data.clone()))
        .map_err(|e| format!("{}: data: {e}", dir.display()))?;
    let cases: Vec<TestCase> = bundle
        .modules
        .iter()
        .filter(|(path, _)| is_test_module(path))
        .flat_map(|(path, source)| discover(&format!("{}/{path}", dir.display()), source))
        .collect();
    println!(
        "{} ({} revision `{}`)",
        dir.display(),
        bundle.name,
        bundle.revision
    );
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in cases {
        let rule = format!("data.{}.{}", case.package, case.name);
        let outcome = match engine.eval_rule(rule) {
            Ok(Value::Bool(true)) => Ok(()),
            Ok(Value::Undefined) => Err("undefined".to_owned()),
            Ok(other) => Err(format!("evaluated to {other}")),
            Err(error) => Err(format!("error: {error}")),
        };
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("  PASS {}:{} {}", case.file, case.line, case.name);
            }
            Err(why) => {
                failed += 1;
                println!("  FAIL {}:{} {} ({why})", case.file, case.line, case.name);
            }
        }
    }
    if coverage {
        print_coverage(&engine)?;
    }
    Ok((passed, failed))
}

/// Lines of the bundle's policy files (tests excluded) the tests evaluated, per file, and
/// the lines they never reached.
fn print_coverage(engine: &Engine) -> Result<(), String> {
    let report = engine.get_coverage_report().map_err(|e| e.to_string())?;
    println!("  coverage (lines the tests evaluated):");
    for file in report.files.iter().filter(|f| !is_test_module(&f.path)) {
        let covered = file.covered.len();
        let total = covered + file.not_covered.len();
        let percent = if total == 0 {
            100.0
        } else {
            100.0 * covered as f64 / total as f64
        };
        let missed: Vec<String> = file.not_covered.iter().map(u32::to_string).collect();
        if missed.is_empty() {
            println!("    {:5.1}% {}", percent, file.path);
        } else {
            println!(
                "    {:5.1}% {} (not covered: lines {})",
                percent,
                file.path,
                missed.join(", ")
            );
        }
    }
    Ok(())
}

/// Test rules start a line with `test_`; partial definitions of one name count once.
fn discover(file: &str, source: &str) -> Vec<TestCase> {
    let package = source
        .lines()
        .find_map(|line| line.trim().strip_prefix("package "))
        .map(|p| p.trim().to_owned())
        .unwrap_or_default();
    let mut cases: Vec<TestCase> = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let Some(rest) = line.strip_prefix("test_") else {
            continue;
        };
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = format!("test_{}", &rest[..name_len]);
        if !cases.iter().any(|c| c.name == name) {
            cases.push(TestCase {
                file: file.to_owned(),
                line: index + 1,
                package: package.clone(),
                name,
            });
        }
    }
    cases
}
