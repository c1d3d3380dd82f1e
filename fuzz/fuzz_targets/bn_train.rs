//! Batch-norm training forward with arbitrary shapes, layouts, parameters and values on every
//! ISA: no panic, nothing written on error, in place == out of place, finite outputs from
//! finite moderate inputs. The check lives in `dropnorm::testing`, replayed on stable by
//! `tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dropnorm::testing::fuzz_bn_train(data));
