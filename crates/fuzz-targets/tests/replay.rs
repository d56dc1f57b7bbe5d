//! The bounded half of fuzzing that runs in every test run: each committed input of
//! `fuzz/seeds/<target>/` and `fuzz/corpus/<target>/` goes through its target once, on
//! the stable toolchain and with overflow checks on. A crash `scripts/fuzz` finds is
//! kept as a regression by copying it into `fuzz/seeds/<target>/`.

use std::collections::BTreeSet;
use std::panic;
use std::path::{Path, PathBuf};

use paybridge_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_corpus_input_passes_its_target() {
    let mut failed = Vec::new();
    for (name, target) in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name}/ has no seeds");
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        for path in seeds.iter().chain(&corpus) {
            let data = std::fs::read(path).unwrap();
            if panic::catch_unwind(|| target(&data)).is_err() {
                let file = path.strip_prefix(fuzz_dir()).unwrap_or(path);
                failed.push(format!("{name}: fuzz/{}", file.display()));
            }
        }
        eprintln!(
            "{name}: {} seeds and {} corpus inputs",
            seeds.len(),
            corpus.len()
        );
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their target (the panics are printed above; replay one under \
         libFuzzer with `scripts/fuzz --replay <target> <file>`):\n{}",
        failed.join("\n")
    );
}

/// Each target has its libFuzzer binary and each binary its target, so neither half of
/// fuzzing can miss one.
#[test]
fn every_target_has_a_libfuzzer_binary() {
    let binaries: BTreeSet<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    let targets: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(binaries, targets);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in &targets {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
        let wrapper =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(
            wrapper.contains(&format!("paybridge_fuzz_targets::{name}(")),
            "fuzz/fuzz_targets/{name}.rs does not call paybridge_fuzz_targets::{name}"
        );
    }
}
