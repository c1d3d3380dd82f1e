//! Batch-norm inference and inference with residual add + ReLU, arbitrary shapes, layouts,
//! parameters and statistics on every ISA. The check lives in `dropnorm::testing`, replayed on
//! stable by `tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dropnorm::testing::fuzz_bn_infer(data));
