//! Replays every committed seed and regression case (`fuzz/corpus/<target>/*`) through its
//! target on stable: what the fuzzers found stays fixed.

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_target_has_a_binary_and_a_seed_corpus() {
    for t in mesh_fuzz_targets::TARGETS {
        let bin = fuzz_dir()
            .join("fuzz_targets")
            .join(format!("{}.rs", t.name));
        assert!(bin.is_file(), "{} has no cargo-fuzz binary", t.name);
        let corpus = fuzz_dir().join("corpus").join(t.name);
        let n = std::fs::read_dir(&corpus)
            .map(|d| d.count())
            .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()));
        assert!(n > 0, "{} has an empty corpus", t.name);
    }
}

#[test]
fn every_corpus_replays() {
    let mut total = 0;
    let mut failed = Vec::new();
    for t in mesh_fuzz_targets::TARGETS {
        let corpus = fuzz_dir().join("corpus").join(t.name);
        let Ok(dir) = std::fs::read_dir(&corpus) else {
            continue;
        };
        let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let res = std::panic::catch_unwind(|| (t.run)(&data));
            if res.is_err() {
                failed.push(format!("{} fails on {}", t.name, f.display()));
            }
            total += 1;
        }
    }
    println!("replayed {total} corpus files");
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(total >= mesh_fuzz_targets::TARGETS.len());
}
