//! # dropnorm
//!
//! Hand-vectorized CPU kernels for **inverted dropout** (and, as the crate grows, batch
//! normalization) on raw `f32` slices, chosen at run time for the CPU at hand (AVX-512, AVX2+FMA
//! or portable SIMD), parallel with rayon, reproducible bit for bit on any thread count, and
//! returning a typed [`Error`] — never panicking — on bad input.
//!
//! ```
//! use dropnorm::{DropoutParams, dropout, dropout_backward};
//!
//! let x: Vec<f32> = (1..=10_000).map(|i| i as f32).collect();
//! let mut y = vec![0.0; x.len()];
//! let params = DropoutParams::new(0.1, 42); // p = 0.1, seed 42
//! dropout(&x, &mut y, &params)?;
//!
//! // Backward regenerates the same mask from the seed: no mask has to be stored.
//! let dy = vec![1.0; x.len()];
//! let mut dx = vec![0.0; x.len()];
//! dropout_backward(&dy, &mut dx, &params)?;
//! for i in 0..x.len() {
//!     assert_eq!(y[i] == 0.0, dx[i] == 0.0); // the same elements were dropped
//! }
//! # Ok::<(), dropnorm::Error>(())
//! ```
//!
//! ## Contracts
//! - **Determinism**: a dropout mask is a pure function of `(seed, element index, p)`; see
//!   [`rng`] for the stream layout.
//! - **ISA**: detected once; force one with `DROPNORM_ISA=portable|avx2|avx512`,
//!   [`force_isa`] or [`with_isa`].
//! - **Parallelism**: rayon's current pool (install your own with `ThreadPool::install`); the
//!   default-on `rayon` feature can be turned off to run everything on the caller's thread.
//! - **Errors**: every function validates all arguments first; on `Err` nothing was written.

#![deny(missing_docs)]

pub mod batch_norm;
pub mod dropout;
mod error;
mod isa;
mod kernels;
mod layers;
mod parallel;
pub mod rng;
mod shape;
mod simd;

#[doc(hidden)]
pub mod reference;
#[doc(hidden)]
pub mod testing;

pub use batch_norm::{
    BatchStats, BnGrads, BnParams, ChannelStats, InferStats, Momentum, RunningStats, SavedStats,
    batch_norm_add_relu_backward, batch_norm_add_relu_infer, batch_norm_add_relu_train,
    batch_norm_backward, batch_norm_backward_eval, batch_norm_infer, batch_norm_infer_inplace,
    batch_norm_train, batch_norm_train_inplace, channel_stats, fold, fold_into,
};
pub use dropout::{
    DropoutParams, dropout, dropout_backward, dropout_backward_inplace, dropout_backward_with_mask,
    dropout_channels, dropout_channels_backward, dropout_channels_inplace, dropout_inplace,
    dropout_with_mask, mask_len,
};
pub use error::Error;
pub use isa::{Isa, UnknownIsa, active_isa, force_isa, with_isa};
pub use layers::{BatchNorm, Convention, Dropout};
pub use shape::{Layout, Shape};
