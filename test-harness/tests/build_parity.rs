//! The plugin and the CLI are two builds, and Cargo gives each crate the features that build's
//! own dependencies ask for. A feature that changes an answer (Unicode classes in `regex.*`,
//! how numbers parse) on one side only makes `chaperone test` and the gateway disagree, as
//! they once did. This compares the resolved features of the crates that decide.

use chaperone_test_harness::workspace_root;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The crates whose features can change a decision: the policy engine, the crates behind its
/// builtins, and the JSON parser that reads configurations and tokens.
const DECIDING: [&str; 11] = [
    "regorus",
    "regex",
    "regex-syntax",
    "regex-automata",
    "globset",
    "serde_json",
    "chrono",
    "chrono-tz",
    "url",
    "semver",
    "ipnet",
];

/// Whether `feature` of `krate` can change an answer. Speed (the regex crates' `perf*`, their
/// search engines), test coverage and the `std`/`default` switches cannot.
fn decides(krate: &str, feature: &str) -> bool {
    match krate {
        "regex" | "regex-syntax" | "regex-automata" => feature.starts_with("unicode"),
        "regorus" => feature != "coverage",
        _ => feature != "std" && feature != "default",
    }
}

/// `name version` -> the features of that package in `package`'s build for `target`.
fn resolved_features(package: &str, target: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(workspace_root())
        .args(["tree", "-e", "normal", "--prefix", "none"])
        .args(["-f", "{p} [{f}]", "-p", package]);
    if let Some(target) = target {
        command.args(["--target", target]);
    }
    let out = command.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "regex v1.13.2 [std,unicode]" or "regex v1.13.2 [std,unicode] (*)"
        let Some((name_version, rest)) = line.split_once(" [") else {
            continue;
        };
        let features = rest.split(']').next().unwrap_or_default();
        let name_version: Vec<&str> = name_version.split(' ').take(2).collect();
        packages.entry(name_version.join(" ")).or_default().extend(
            features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(String::from),
        );
    }
    packages
}

#[test]
fn the_plugin_and_the_cli_build_the_deciding_crates_alike() {
    let plugin = resolved_features("chaperone-plugin", Some("wasm32-wasip1"));
    let cli = resolved_features("chaperone-cli", None);
    let mut checked = 0;
    for (package, plugin_features) in &plugin {
        let name = package.split(' ').next().unwrap_or_default();
        if !DECIDING.contains(&name) {
            continue;
        }
        let cli_features = cli
            .get(package)
            .unwrap_or_else(|| panic!("{package}: in the plugin, not in the CLI"));
        let deciding = |features: &BTreeSet<String>| -> BTreeSet<String> {
            features
                .iter()
                .filter(|f| decides(name, f))
                .cloned()
                .collect()
        };
        assert_eq!(
            deciding(plugin_features),
            deciding(cli_features),
            "{package}: features of the plugin's build (left) and the CLI's (right)"
        );
        checked += 1;
    }
    // regorus, the three regex crates, globset, serde_json, chrono, chrono-tz, url, semver,
    // ipnet: a crate that leaves the plugin's build should leave this list too.
    assert_eq!(checked, DECIDING.len(), "deciding crates found: {checked}");
}
