//! Replays every committed fuzz input with plain `cargo test` (no nightly, no
//! cargo-fuzz): each file under `fuzz/regressions/<target>/` (inputs a fuzzer
//! once crashed on, kept after the fix) and `fuzz/corpus/<target>/` (the seeds)
//! goes through `ringlay::fuzz::<target>::run`, the same function the fuzz target
//! calls. A crash found by `scripts/test.sh` leaves its input in
//! `fuzz/artifacts/<target>/`; once fixed, it is copied to
//! `fuzz/regressions/<target>/<what-it-found>` and stays there.
//!
//! Runtime: well under a second.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use ringlay::fuzz::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file in `<fuzz>/<kind>/<target>/`, by target directory; a directory
/// named after no target fails the test (an input that would never be replayed).
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let root = fuzz_dir().join(kind);
    let mut out = Vec::new();
    for dir in fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = dir.expect("directory entry").path();
        let target = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 target name")
            .to_owned();
        assert!(
            TARGETS.iter().any(|(t, _)| *t == target),
            "{} is named after no fuzz target",
            dir.display()
        );
        for file in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let file = file.expect("directory entry").path();
            if file.is_file() {
                out.push((target.clone(), file));
            }
        }
    }
    out.sort();
    out
}

/// Runs each input through its target; returns the inputs that panicked.
fn replay(inputs: &[(String, PathBuf)]) -> Vec<String> {
    let mut failed = Vec::new();
    for (target, path) in inputs {
        let run = TARGETS
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, run)| *run)
            .expect("checked in inputs()");
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    failed
}

#[test]
fn every_regression_input_passes() {
    let inputs = inputs("regressions");
    // The csum_offset crash of the split target, at least.
    assert!(
        inputs
            .iter()
            .any(|(t, p)| t == "split" && p.ends_with("odd-csum-offset")),
        "{inputs:?}"
    );
    let failed = replay(&inputs);
    assert!(failed.is_empty(), "crashing again: {failed:?}");
}

#[test]
fn every_corpus_input_passes() {
    let inputs = inputs("corpus");
    assert!(inputs.len() >= TARGETS.len(), "{inputs:?}");
    let failed = replay(&inputs);
    assert!(failed.is_empty(), "crashing: {failed:?}");
}

/// Every target in `fuzz/fuzz_targets/` is in `ringlay::fuzz::TARGETS` and calls
/// its `run`, and every entry of `TARGETS` has a target: the replayed code is the
/// fuzzed code.
#[test]
fn the_targets_are_the_replayed_functions() {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut found = Vec::new();
    for file in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = file.expect("directory entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 name")
            .to_owned();
        let text = fs::read_to_string(&path).expect("target source");
        assert!(
            text.contains(&format!("ringlay::fuzz::{name}::run(data)")),
            "{} does not call ringlay::fuzz::{name}::run",
            path.display()
        );
        found.push(name);
    }
    found.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(found, listed);
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for name in &listed {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
            "{name} is not a [[bin]] of fuzz/Cargo.toml"
        );
    }
}
