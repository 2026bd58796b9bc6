//! `chaperone test` on the shipped bundle passes, and a failing Rego test fails the command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn run_tests(dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .arg("test")
        .arg(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn shipped_policies_pass() {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("policies");
    let (ok, out) = run_tests(&policies);
    assert!(ok, "{out}");
    assert!(out.contains("PASS") && out.contains(" 0 failed"), "{out}");
}

#[test]
fn a_failing_rego_test_fails_the_command_with_its_location() {
    let dir = std::env::temp_dir().join(format!("chaperone-failing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.rego"), "package p\n\nallow if input.ok\n").unwrap();
    std::fs::write(
        dir.join("p_test.rego"),
        "package p_test\n\nimport data.p\n\ntest_ok if p.allow with input as {\"ok\": true}\n\ntest_wrong if p.allow with input as {\"ok\": false}\n",
    )
    .unwrap();
    let (ok, out) = run_tests(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{out}");
    assert!(
        out.contains("PASS") && out.contains("p_test.rego:5 test_ok"),
        "{out}"
    );
    assert!(
        out.contains("FAIL") && out.contains("p_test.rego:7 test_wrong (undefined)"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}
