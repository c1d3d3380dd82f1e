//! Every dropout entry point on every ISA: no panic, nothing written on error, all ISAs and
//! the scalar reference agree. The check lives in `dropnorm::testing` so that
//! `tests/fuzz_corpus.rs` replays this corpus on stable without libFuzzer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dropnorm::testing::fuzz_dropout(data));
