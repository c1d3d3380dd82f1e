//! # dropnorm
//!
//! Hand-vectorized CPU kernels for **inverted dropout** and **batch normalization** on raw
//! slices in NC, NCHW and NHWC layouts: `f32` everywhere, and [`bf16`] /
//! [`f16`](struct@crate::f16) (the `half` crate's types) for every kernel — see
//! [`Element`]. The kernels are chosen at run time for the CPU at hand (AVX-512,
//! AVX2+FMA+F16C or portable SIMD), run in parallel with rayon, give the same bits
//! on any thread count, allocate nothing per call beyond reused thread-local scratch, write
//! into caller-provided buffers, and return a typed [`Error`] — never a panic — on bad input.
//!
//! ## Quickstart: training loop (layers)
//!
//! [`BatchNorm`] and [`Dropout`] own their parameters and state; the caller owns the
//! activations. Gradients of γ and β are overwritten by each backward.
//!
//! ```
//! use dropnorm::{BatchNorm, Dropout, Layout, Shape};
//!
//! let shape = Shape::nchw(8, 16, 4, 4); // N, C, H, W
//! let n = shape.numel()?;
//! let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 * 0.1).collect();
//! let (mut h, mut y) = (vec![0.0; n], vec![0.0; n]);
//!
//! let mut bn = BatchNorm::new(shape.c, Layout::Nchw); // PyTorch defaults: eps 1e-5, momentum 0.1
//! let mut drop = Dropout::new(0.1, 42); // p = 0.1, seed 42: a fresh mask every step
//! for _step in 0..3 {
//!     bn.forward(&x, &mut h, shape)?; // batch statistics; running statistics updated
//!     drop.forward(&h, &mut y)?;
//!     let dy = vec![1.0f32; n]; // the loss gradient, from the layers above
//!     let (mut dh, mut dx) = (vec![0.0; n], vec![0.0; n]);
//!     drop.backward(&dy, &mut dh)?; // regenerates this step's mask from its seed
//!     bn.backward(&x, &dh, None, &mut dx, shape)?; // dx, and bn.dgamma / bn.dbeta
//!     // ... update bn.gamma and bn.beta with bn.dgamma and bn.dbeta ...
//! }
//! bn.eval();
//! drop.eval();
//! bn.forward(&x, &mut h, shape)?; // running statistics
//! drop.forward(&h, &mut y)?; // identity
//! assert_eq!(h, y);
//! # Ok::<(), dropnorm::Error>(())
//! ```
//!
//! ## Quickstart: inference engine (folding and the fused kernels)
//!
//! At load time, fold a batch-norm node into the convolution or linear layer before it and
//! delete the node; where that is not possible, apply it with the inference kernel, fused
//! with the residual add and ReLU of a ResNet block.
//!
//! ```
//! use dropnorm::{BnParams, Layout, RunningStats, Shape, batch_norm_add_relu_infer, fold_into};
//!
//! let (c, k) = (4, 9); // 4 output channels, 9 weights each (e.g. 1 input channel, 3×3)
//! let gamma = [1.0f32, 0.5, 2.0, 1.0];
//! let beta = [0.0f32, 0.1, -0.1, 0.0];
//! let (mean, var) = ([0.5f32, 0.0, 1.0, -1.0], [1.0f32, 4.0, 0.25, 1.0]);
//! let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
//! let stats = RunningStats { mean: &mean, var: &var };
//!
//! // 1. Fold into the previous layer's weights (output-channel-major) and bias.
//! let mut weights = vec![0.1f32; c * k];
//! let mut bias = vec![0.0f32; c];
//! fold_into(&mut weights, &mut bias, &params, &stats)?;
//!
//! // 2. Or run it: y = relu(bn(x) + residual), one pass, NHWC here.
//! let shape = Shape::nchw(2, c, 3, 3);
//! let n = shape.numel()?;
//! let x = vec![1.0f32; n];
//! let residual = vec![0.5f32; n];
//! let mut y = vec![0.0f32; n];
//! batch_norm_add_relu_infer(&x, &residual, &mut y, shape, Layout::Nhwc, &params, &stats)?;
//! assert!(y.iter().all(|&v| v >= 0.0));
//! # Ok::<(), dropnorm::Error>(())
//! ```
//!
//! ## Quickstart: the functions underneath
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
//! Batch norm's functions take the data, the [`Shape`] and [`Layout`], [`BnParams`] (eps,
//! optional γ/β), an [`Epilogue`] where a ReLU can be fused, and the statistics:
//! [`batch_norm_train`] writes the batch statistics into [`SavedStatsMut`] and updates
//! [`RunningStatsMut`] in an explicit [`Momentum`] convention; [`batch_norm_infer`] reads
//! [`RunningStats`]; [`batch_norm_backward`] reads [`SavedStats`] and writes [`BnGrads`].
//! Types ending in `Mut` are the ones a call writes. Split-phase training
//! ([`channel_stats`] → merge → [`batch_norm_apply`]) is described [below](#split-phase).
//!
//! ## Dropout
//!
//! Inverted dropout: forward, backward, 1-bit masks and channel-wise ("spatial") dropout.
//!
//! Each element is dropped with probability `p` and written as `+0.0`; kept elements are
//! multiplied by `scale = 1/(1-p)` (computed once in `f32`), so `E[y] = x`. Mask generation
//! and scaling run in one pass over memory. Every dropout function takes `f32`, [`bf16`] or
//! [`f16`](struct@crate::f16) slices ([`Element`]): a 16-bit element is widened, scaled in
//! f32 and rounded back once (nearest, ties to even), with the same mask as f32 for the same
//! parameters.
//!
//! ### Semantics
//! - `p = 0` (or eval mode) is a bit-exact copy; `p = 1` writes `+0.0` everywhere.
//! - Dropped elements are `+0.0` by masking, not by multiplying by zero: a dropped `inf` or
//!   `NaN` gives `+0.0`, a dropped negative value gives `+0.0` (PyTorch's `x * mask * scale`
//!   gives `NaN` and `-0.0` there). A kept `NaN` stays `NaN`.
//! - P(drop) is `round(p·2^32)/2^32`, within 2^-33 of `p`.
//! - The mask is a pure function of `(seed, offset + index, p)` — see [`crate::rng`] for the
//!   stream layout. It does not depend on the thread count, the ISA, in-place vs out-of-place,
//!   or on how a tensor is cut into pieces, so backward can regenerate it from the seed.
//!
//! ### Masks
//! Packed masks hold bit `i` (element `i` of the call's slice, kept = 1) in byte `i / 8` at bit
//! `i % 8` — numpy's `packbits(..., bitorder="little")`. They are [`mask_len`]`(n)` bytes long;
//! padding bits in the last byte are written as 0.
//!
//! ## Batch norm
//!
//! Batch normalization over the channels of NC, NCHW and NHWC tensors.
//!
//! Per channel `c`, over its `N·H·W` values: `mean`, the biased variance
//! `var = Σ(x − mean)²/n`, `invstd = 1/sqrt(var + eps)` (0 when `var = eps = 0`, as PyTorch) and
//! `y = γ·(x − mean)·invstd + β`.
//!
//! ### Numerics
//! The mean is `Σx / n` with `x` widened to f64 lane by lane: within `1e-6 + 2e-6·|mean|` of
//! the exact mean of the f32 inputs at any spread and offset. The variance comes from shifted
//! sums `Σ(x − K)²` around a per-channel pivot `K` (the channel's first value, moved to the
//! mean and summed again in the rare case it lies more than 4σ away), accumulated in f32 lanes
//! flushed to f64 every few hundred values in a fixed order. Normalization is computed
//! in centered form, `(x − k)·a + b` with `k` the mean rounded to f32, `a = γ·invstd` and
//! `b = β − (mean − k)·a` in f64 (what rounding the mean cost, put back) — never as
//! `x·a + b` with `b = β − mean·a`, which cancels catastrophically when the mean is large
//! against the spread (a constant channel of 1e7 gives exactly `β` here). Results are
//! bit-identical for any thread count; across ISAs they may differ by FMA rounding (the
//! portable backend does not fuse).
//!
//! ### Split phase
//! Training in two phases, for synchronized batch norm (statistics all-reduced across
//! devices) and for a producer that computes its output's statistics itself:
//! [`channel_stats`] of any part of a batch, [`ChannelStats::merge`]d in a fixed order, then
//! [`batch_norm_apply`] normalizes and writes the saved and running statistics in one pass
//! (one read of `x`, one write of `y`); backward likewise, [`batch_norm_backward_sums`]
//! ([`GradSums`]: `Σdy`, `Σdy·(x − mean)`) per part, merged, then
//! [`batch_norm_backward_apply`] for `dx`, `dγ`, `dβ` in one pass. On a whole batch the two
//! phases give the one-call functions' bits exactly: those compute the same statistics and go
//! through the same constants.
//!
//! ### Running statistics
//! Updated in the same call, in one of two explicit conventions ([`Momentum`]): PyTorch
//! (`momentum` weights the batch, unbiased running variance) or ONNX/MXNet/d2l (`momentum`
//! weights the running value, biased running variance).
//!
//! ## Contracts
//! - **Determinism**: a dropout mask is a pure function of `(seed, element index, p)`; see
//!   [`rng`] for the stream layout. Batch-norm results are the same bits for any thread
//!   count (fixed reduction order); across ISAs they may differ by FMA rounding.
//! - **Numerics**: batch norm is computed in centered form, never `x·a + b`; see
//!   [Batch norm](#batch-norm).
//! - **ISA**: detected once; force one with `DROPNORM_ISA=portable|avx2|avx512`,
//!   [`force_isa`] or [`with_isa`].
//! - **Parallelism**: rayon's current pool (install your own with `ThreadPool::install`); the
//!   default-on `rayon` feature can be turned off to run everything on the caller's thread,
//!   and [`on_caller_thread`] does the same for the calls inside its scope.
//! - **Errors**: every function validates all arguments first; on `Err` nothing was written.

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod batch_norm;
mod dispatch;
mod dropout;
mod element;
mod error;
mod isa;
mod kernels;
mod layers;
mod parallel;
pub mod rng;
mod shape;
mod simd;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

// Scalar references, naive baselines and test hooks for this crate's own tests, benches,
// roofline and fuzz targets (which enable the feature): not part of the API.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod reference;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use batch_norm::{
    AddReluGrads, BnGrads, BnParams, ChannelStats, Epilogue, GradSums, Momentum, RunningStats,
    RunningStatsMut, SavedStats, SavedStatsMut, batch_norm_add_relu_apply,
    batch_norm_add_relu_backward, batch_norm_add_relu_infer, batch_norm_add_relu_train,
    batch_norm_apply, batch_norm_apply_inplace, batch_norm_backward, batch_norm_backward_apply,
    batch_norm_backward_eval, batch_norm_backward_sums, batch_norm_infer, batch_norm_infer_inplace,
    batch_norm_train, batch_norm_train_inplace, channel_stats, fold, fold_into,
};
pub use dropout::{
    DropoutParams, dropout, dropout_backward, dropout_backward_inplace, dropout_backward_with_mask,
    dropout_channels, dropout_channels_backward, dropout_channels_inplace, dropout_inplace,
    dropout_with_mask, mask_len,
};
pub use element::Element;
pub use error::Error;
/// The 16-bit element types, re-exported from the `half` crate.
pub use half::{bf16, f16};
pub use isa::{Isa, UnknownIsa, active_isa, force_isa, with_isa};
pub use layers::{BatchNorm, Dropout};
pub use parallel::on_caller_thread;
pub use shape::{Layout, Shape};
