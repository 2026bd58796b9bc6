//! Decision records in Envoy's log: every line containing `{"decision_id"` carries one record,
//! from that brace to the end of the line (README, "Decision records").

use serde_json::Value;
use std::path::Path;

const RECORD_START: &str = "{\"decision_id\"";

/// Every complete record in the log file. Panics on a record line that is not JSON: that is a
/// plugin bug, and a test reading records should fail on it.
pub fn decision_records(log_path: &Path) -> Vec<Value> {
    let text = std::fs::read(log_path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    parse_decision_records(&text).unwrap_or_else(|message| panic!("{message}"))
}

/// Every record in complete lines of `log`. The last line counts only when it ends with a
/// newline: Envoy may be mid-write.
pub fn parse_decision_records(log: &str) -> Result<Vec<Value>, String> {
    let complete = match log.rfind('\n') {
        Some(end) => &log[..end],
        None => "",
    };
    complete
        .lines()
        .filter_map(|line| line.find(RECORD_START).map(|at| &line[at..]))
        .map(|json| {
            serde_json::from_str(json.trim_end())
                .map_err(|error| format!("decision record is not JSON ({error}): {json}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_from_envoy_log_lines_and_partial_lines_wait() {
        let log = concat!(
            "[2026-11-24 10:00:00.000][1][info][main] starting\n",
            "[2026-11-24 10:00:01.000][1][info][wasm] [context.cc:1] wasm log chaperone chaperone: {\"decision_id\":\"a\",\"seq\":1}\n",
            "[2026-11-24 10:00:01.000][1][info][wasm] wasm log chaperone chaperone: {\"decision_id\":\"b\",\"seq\":2}\r\n",
            "[2026-11-24 10:00:02.000][1][info][wasm] wasm log chaperone chaperone: {\"decision_id\":\"c\",\"se",
        );
        let records = parse_decision_records(log).unwrap();
        let ids: Vec<&str> = records
            .iter()
            .map(|r| r["decision_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn a_broken_record_line_is_an_error() {
        let error = parse_decision_records("x {\"decision_id\": nope}\n").unwrap_err();
        assert!(error.contains("not JSON"), "{error}");
    }

    #[test]
    fn reads_a_file_and_tolerates_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("chaperone-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("envoy.log");
        std::fs::write(&path, "p: {\"decision_id\":\"z\"}\n").unwrap();
        assert_eq!(decision_records(&path)[0]["decision_id"], "z");
        assert!(decision_records(&dir.join("absent.log")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
