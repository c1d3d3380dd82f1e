//! Replays the cargo-fuzz corpus (and any saved crash artifacts) through the same checks the
//! fuzz targets run, so CI exercises them on stable without libFuzzer.

#[macro_use]
mod common;
use std::path::Path;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 4] = [
    ("dropout", dropnorm::testing::fuzz_dropout),
    ("bn_train", dropnorm::testing::fuzz_bn_train),
    ("bn_infer", dropnorm::testing::fuzz_bn_infer),
    ("bn_backward", dropnorm::testing::fuzz_bn_backward),
];

fn replay_fuzz_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    if !root.join("Cargo.toml").exists() {
        // A crates.io package: cargo leaves out the fuzz crate (it is a package of its own).
        // In the repository the corpus must be there, and the assertion below holds.
        eprintln!("no fuzz/ directory (packaged crate): nothing to replay");
        return;
    }
    for (target, check) in TARGETS {
        let mut replayed = 0;
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_file() {
                    let bytes = std::fs::read(&path).unwrap();
                    let r = std::panic::catch_unwind(|| check(&bytes));
                    assert!(r.is_ok(), "{target}: {} fails", path.display());
                    replayed += 1;
                }
            }
        }
        assert!(replayed > 0, "no corpus for fuzz target {target}");
    }
}

main_thread_checks!(replay_fuzz_corpus,);
