//! The reference comparisons, run one after another on the main thread, without libtest.
//!
//! Under qemu-user on the CI machines no thread or child process can start, so libtest
//! (which runs each test on a thread of its own) hangs; this program runs the same checks —
//! the test files' functions listed in their `MAIN_THREAD` — on the main thread, catching each
//! failure, and prints `N passed, M failed`. `.ci/run` cross-builds it for aarch64 with
//! `--no-default-features` (no rayon pool either) and runs it under qemu; `cargo test` runs it
//! natively like any other test target. The checks that need a pool (1/2/3-thread bit
//! identity) are ordinary `#[test]`s, not listed.

// Each suite is a test crate of its own elsewhere and declares `mod common` itself; here they
// are modules of one crate, so `tests/common/mod.rs` is loaded once per suite.
#![allow(clippy::duplicate_mod)]

use std::panic;
use std::process::ExitCode;
use std::time::Instant;

macro_rules! suites {
    ($($m:ident: $path:literal),* $(,)?) => {
        $(
            #[allow(dead_code, unused_imports)]
            #[path = $path]
            mod $m;
        )*
        const SUITES: &[(&str, &[(&str, fn())])] = &[$((stringify!($m), $m::MAIN_THREAD)),*];
    };
}

suites!(
    rng_lanes: "rng_lanes.rs",
    dropout_isa: "dropout_isa.rs",
    channels: "channels.rs",
    errors: "errors.rs",
    determinism: "determinism.rs",
    statistics: "statistics.rs",
    bn_train: "bn_train.rs",
    bn_infer: "bn_infer.rs",
    bn_backward: "bn_backward.rs",
    defects: "defects.rs",
    layers: "layers.rs",
    split_phase: "split_phase.rs",
    convert: "convert.rs",
    dropout_types: "dropout_types.rs",
    bn_types: "bn_types.rs",
    fuzz_corpus: "fuzz_corpus.rs",
);

fn main() -> ExitCode {
    // A filter, like libtest's: only checks whose `suite::name` contains it.
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    // Failures print their panic message through the default hook; keep it.
    let (mut passed, mut failed) = (0usize, Vec::new());
    let start = Instant::now();
    for (suite, checks) in SUITES {
        for (name, check) in *checks {
            let full = format!("{suite}::{name}");
            if filter.as_ref().is_some_and(|f| !full.contains(f.as_str())) {
                continue;
            }
            let t = Instant::now();
            let ok = panic::catch_unwind(check).is_ok();
            println!(
                "{full} ... {} ({:.1} s)",
                if ok { "ok" } else { "FAILED" },
                t.elapsed().as_secs_f64()
            );
            if ok {
                passed += 1;
            } else {
                failed.push(full);
            }
        }
    }
    println!(
        "\n{passed} passed, {} failed ({:.1} s on {})",
        failed.len(),
        start.elapsed().as_secs_f64(),
        std::env::consts::ARCH
    );
    for f in &failed {
        println!("FAILED: {f}");
    }
    if failed.is_empty() && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
