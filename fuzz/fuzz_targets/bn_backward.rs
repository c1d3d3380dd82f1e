//! Batch-norm backward (plain, through the fused ReLU, through add+ReLU) after a training
//! forward, on every ISA. The check lives in `dropnorm::testing`, replayed on stable by
//! `tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dropnorm::testing::fuzz_bn_backward(data));
