//! `chaperone replay`: what a candidate bundle would have decided for recorded traffic. Each
//! record that carries its policy input (README, `decision_log.input`) is evaluated again with
//! the candidate, and every decision that flips (allow to deny, deny to allow) is reported,
//! grouped by agent and rule: impact analysis before a deployment.
//!
//! Only the policy is replayed. Requests denied before the policy ran (authentication,
//! registry, revocation) carry no input and are counted, not replayed: a bundle cannot change
//! them. Inputs are as recorded, so fields erased by `decision_log.erase` are absent: a
//! candidate that reads them will see them missing.

use crate::args::Args;
use crate::bundle;
use chaperone_core::policy::Policy;
use chaperone_core::reason::Reason;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

/// One flipped decision.
struct Flip {
    agent: String,
    rule_before: String,
    rule_after: String,
    allowed_after: bool,
    decision_id: String,
}

pub fn command(args: &mut Args) -> Result<ExitCode, String> {
    let records_path = args.required("records")?;
    let bundle_dir = args.required("bundle")?;
    let decision_path = args.optional("decision-path")?;
    let as_json = args.flag("json");
    args.finish()?;

    let text =
        std::fs::read_to_string(&records_path).map_err(|e| format!("{records_path}: {e}"))?;
    let records = read_records(&text);
    if records.is_empty() {
        return Err(format!("{records_path}: no decision records"));
    }
    let candidate = bundle::load(Path::new(&bundle_dir))?;
    // The rule the recorded traffic was decided by, unless told otherwise.
    let path = decision_path
        .or_else(|| {
            records.iter().find_map(|r| {
                r["path"]
                    .as_str()
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
            })
        })
        .ok_or("the records name no decision path: pass --decision-path")?;
    let policy = Policy::compile(
        &candidate.shipped_modules(),
        candidate.data.clone(),
        &path,
        candidate.name.clone(),
        candidate.revision.clone(),
        1000,
    )
    .map_err(|e| format!("{bundle_dir}: {e}"))?;

    let mut replayed = 0usize;
    let mut not_replayable = 0usize;
    let mut flips: Vec<Flip> = Vec::new();
    for record in &records {
        // A decision the host could not carry out (`internal_error`) was the policy's, then
        // replaced: its result is not the policy's to compare with.
        let input = record
            .get("input")
            .filter(|i| i.is_object())
            .filter(|_| record["reason"] != Reason::InternalError.code());
        let Some(input) = input else {
            not_replayable += 1;
            continue;
        };
        replayed += 1;
        let verdict = policy.evaluate(input.clone());
        let allowed_before = record["result"]["allowed"].as_bool().unwrap_or(false);
        if verdict.allowed != allowed_before {
            flips.push(Flip {
                agent: record["agent"]["id"]
                    .as_str()
                    .unwrap_or("(unknown)")
                    .to_owned(),
                rule_before: record["rule"].as_str().unwrap_or("(none)").to_owned(),
                rule_after: verdict.rule.clone().unwrap_or_else(|| "(none)".to_owned()),
                allowed_after: verdict.allowed,
                decision_id: record["decision_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
    }
    if as_json {
        print_json(&candidate, records.len(), replayed, not_replayable, &flips)?;
    } else {
        print_text(&candidate, records.len(), replayed, not_replayable, &flips);
    }
    // A gate for CI, as `chaperone test`: 1 when the candidate would decide otherwise.
    Ok(if flips.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every record in the text: JSON lines (any key order), or log lines that end with a
/// record as the plugin writes it (from `{"decision_id"` on).
fn read_records(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| {
            let candidates = [line.find('{'), line.find("{\"decision_id\"")];
            candidates.into_iter().flatten().find_map(|at| {
                serde_json::from_str::<Value>(line[at..].trim_end())
                    .ok()
                    .filter(|record| record.get("decision_id").is_some())
            })
        })
        .collect()
}

type Groups<'a> = BTreeMap<(&'a str, &'a str, &'a str, &'a str), Vec<&'a str>>;

/// Flips by agent, direction and rule change, each with its decision ids.
fn groups(flips: &[Flip]) -> Groups<'_> {
    let mut groups: Groups<'_> = BTreeMap::new();
    for flip in flips {
        let direction = if flip.allowed_after {
            "deny -> allow"
        } else {
            "allow -> deny"
        };
        groups
            .entry((
                flip.agent.as_str(),
                direction,
                flip.rule_before.as_str(),
                flip.rule_after.as_str(),
            ))
            .or_default()
            .push(flip.decision_id.as_str());
    }
    groups
}

fn print_text(
    candidate: &bundle::Bundle,
    total: usize,
    replayed: usize,
    not_replayable: usize,
    flips: &[Flip],
) {
    println!(
        "{total} records, {replayed} replayed against {} revision `{}`, {not_replayable} decided before the policy or not carried out (not replayed)",
        candidate.name, candidate.revision
    );
    println!("{} decisions would flip", flips.len());
    for ((agent, direction, before, after), ids) in groups(flips) {
        println!(
            "  {agent}: {direction}, {} request(s), rule `{before}` -> `{after}` (e.g. {})",
            ids.len(),
            ids.first().copied().unwrap_or_default()
        );
    }
}

fn print_json(
    candidate: &bundle::Bundle,
    total: usize,
    replayed: usize,
    not_replayable: usize,
    flips: &[Flip],
) -> Result<(), String> {
    let grouped: Vec<Value> = groups(flips)
        .into_iter()
        .map(|((agent, direction, before, after), ids)| {
            json!({"agent": agent, "direction": direction, "rule_before": before,
                   "rule_after": after, "count": ids.len(), "decision_ids": ids})
        })
        .collect();
    let report = json!({
        "bundle": {"name": candidate.name, "revision": candidate.revision},
        "records": total, "replayed": replayed, "not_replayable": not_replayable,
        "flips": flips.len(), "groups": grouped,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}
