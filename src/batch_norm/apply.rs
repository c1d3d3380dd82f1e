//! Split-phase training forward: normalization with batch statistics computed elsewhere
//! ([`channel_stats`](super::channel_stats) of the whole batch, or of its shards merged), and
//! the saved and running statistics they imply — one read of `x`, one write of `y`.
//!
//! The one-call training forward computes its statistics and then goes through the same
//! constants ([`channel_consts`]) and the same bookkeeping ([`finish_channel`]), so on the
//! same batch the two give the same bits.

use super::infer::normalize;
use super::scratch::{scratch_f32, scratch_f64};
use super::stats::ChannelStats;
use super::train::Columns;
use super::{BnParams, Epilogue, Momentum, RunningStatsMut, SavedStatsMut, check_eps, inv_std};
use crate::Element;
use crate::dispatch::{Src, active_kernels};
use crate::error::check_len;
use crate::kernels::bn::Affine;
use crate::{Error, Layout, Shape};

/// The running-statistics update a validated training call makes: `(weight of the running
/// value, weight of the batch value, unbiased variance?)`.
pub(crate) type Weights = (f64, f64, bool);

/// Checks what every training forward takes besides its tensors: eps, γ and β, the saved and
/// running buffers (`c` each), the momentum. Returns the running update's weights.
pub(crate) fn validate_train(
    c: usize,
    params: &BnParams,
    saved: &SavedStatsMut,
    running: &Option<(RunningStatsMut, Momentum)>,
) -> Result<Option<Weights>, Error> {
    check_eps(params.eps)?;
    if let Some(g) = params.gamma {
        check_len("gamma", c, g.len())?;
    }
    if let Some(b) = params.beta {
        check_len("beta", c, b.len())?;
    }
    check_len("saved.mean", c, saved.mean.len())?;
    check_len("saved.invstd", c, saved.invstd.len())?;
    match running {
        Some((r, momentum)) => {
            check_len("running.mean", c, r.mean.len())?;
            check_len("running.var", c, r.var.len())?;
            Ok(Some(momentum.weights(r.batches.saturating_add(1))?))
        }
        None => Ok(None),
    }
}

/// Channel `ch`'s normalization constants from its batch statistics, with the mean, the
/// biased variance and `invstd` as saved (f32): `k` = the mean rounded to f32,
/// `a = γ·invstd`, and `b = β − (mean − k)·a` in f64, which puts back what rounding the mean
/// cost (at most half an ulp of it: no cancellation; exactly β when the mean is an f32).
#[inline]
pub(crate) fn channel_consts(
    st: &ChannelStats,
    params: &BnParams,
    ch: usize,
) -> (Affine, [f32; 3]) {
    let (mean, var) = (st.mean as f32, st.var() as f32);
    let invstd = inv_std(var, params.eps);
    let g = params.gamma.map_or(1.0, |g| g[ch]);
    let a = (g as f64 * invstd as f64) as f32;
    let beta = params.beta.map_or(0.0, |b| b[ch]) as f64;
    let b = (beta - (st.mean - mean as f64) * a as f64) as f32;
    (Affine { k: mean, a, b }, [mean, var, invstd])
}

/// Saves channel `ch`'s `mean` and `invstd` and, with `weights`, updates its running
/// statistics from the batch mean and biased variance `var` of `count` values (unbiased by
/// `count/(count − 1)` where the convention keeps an unbiased variance).
#[inline]
pub(crate) fn finish_channel(
    saved: &mut SavedStatsMut,
    running: Option<&mut RunningStatsMut>,
    weights: Option<Weights>,
    ch: usize,
    [mean, var, invstd]: [f32; 3],
    count: u64,
) {
    if let (Some(r), Some((w_run, w_batch, unbiased))) = (running, weights) {
        let v = if unbiased {
            let n = count as f64;
            var as f64 * (n / (n - 1.0))
        } else {
            var as f64
        };
        r.mean[ch] = (w_run * r.mean[ch] as f64 + w_batch * mean as f64) as f32;
        r.var[ch] = (w_run * r.var[ch] as f64 + w_batch * v) as f32;
    }
    saved.mean[ch] = mean;
    saved.invstd[ch] = invstd;
}

/// [`finish_channel`] for every channel at once, all of `count` values, with `saved` holding
/// each channel's mean and (provisionally, in `invstd`) biased variance and `invstd` their
/// `invstd`: the same values, in loops over the channels that the compiler vectorizes (one
/// channel at a time, 4096 channels were ~11 µs of an NC (64,4096) training call).
pub(crate) fn finish_channels(
    saved: &mut SavedStatsMut,
    running: Option<&mut RunningStatsMut>,
    weights: Option<Weights>,
    invstd: &[f32],
    count: u64,
) {
    if let (Some(r), Some((w_run, w_batch, unbiased))) = (running, weights) {
        let n = count as f64;
        let unbias = n / (n - 1.0);
        let stats = saved.mean.iter().zip(saved.invstd.iter());
        for ((rm, rv), (&mean, &var)) in r.mean.iter_mut().zip(r.var.iter_mut()).zip(stats) {
            let v = if unbiased {
                var as f64 * unbias
            } else {
                var as f64
            };
            *rm = (w_run * *rm as f64 + w_batch * mean as f64) as f32;
            *rv = (w_run * *rv as f64 + w_batch * v) as f32;
        }
    }
    saved.invstd.copy_from_slice(invstd);
}

/// Training-mode batch norm with batch statistics computed beforehand — the second phase of
/// split-phase training: `y = γ·(x − mean)/sqrt(var + eps) + β` (then ReLU with
/// [`Epilogue::Relu`]) with `stats[ch]`'s mean and biased variance, `saved` written and
/// `running` updated from them exactly as [`batch_norm_train`](super::batch_norm_train) does
/// (the running update weighs by `stats[ch].count`, the count of the whole batch when the
/// statistics are merged from shards). One pass: `x` read once, `y` written once.
///
/// On the same tensor, [`channel_stats`](super::channel_stats) followed by this gives the
/// same bits as [`batch_norm_train`](super::batch_norm_train). A count below two or a
/// negative `m2` in `stats` is [`Error::InvalidStats`]; NaN statistics normalize to NaN.
///
/// ```
/// use dropnorm::{BnParams, ChannelStats, Epilogue, Layout, SavedStatsMut, Shape};
/// use dropnorm::{batch_norm_apply, channel_stats};
/// // Synchronized batch norm on two shards of one channel: statistics per shard, merged
/// // (on a real system: all-reduced), then each shard normalized with the whole batch's.
/// let (a, b) = ([1.0f32, 2.0], [3.0f32, 4.0]);
/// let (mut sa, mut sb) = ([ChannelStats::default()], [ChannelStats::default()]);
/// channel_stats(&a, &mut sa, Shape::nc(2, 1), Layout::Nc)?;
/// channel_stats(&b, &mut sb, Shape::nc(2, 1), Layout::Nc)?;
/// let whole = [sa[0].merge(&sb[0])?]; // mean 2.5, var 1.25
/// let (mut y, mut mean, mut invstd) = ([0.0f32; 2], [0.0f32], [0.0f32]);
/// let saved = SavedStatsMut { mean: &mut mean, invstd: &mut invstd };
/// let params = BnParams::new(0.0);
/// batch_norm_apply(&b, &mut y, Shape::nc(2, 1), Layout::Nc, &params, Epilogue::None, &whole, saved, None)?;
/// assert_eq!(mean, [2.5]);
/// assert!((y[0] - 0.5 / 1.25f32.sqrt()).abs() < 1e-6);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_apply<E: Element>(
    x: &[E],
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    epilogue: Epilogue,
    stats: &[ChannelStats],
    saved: SavedStatsMut,
    running: Option<(RunningStatsMut, Momentum)>,
) -> Result<(), Error> {
    check_len("x", shape.validate(layout)?, x.len())?;
    check_len("y", x.len(), y.len())?;
    let relu = epilogue.relu();
    run(
        Src::Slice(x),
        None,
        y,
        shape,
        layout,
        params,
        relu,
        stats,
        saved,
        running,
    )
}

/// [`batch_norm_apply`] in place: `x` is overwritten with the output.
///
/// ```
/// use dropnorm::{BnParams, ChannelStats, Epilogue, Layout, SavedStatsMut, Shape};
/// let mut x = [1.0f32, 3.0];
/// let stats = [ChannelStats::from_values(&x)]; // mean 2, var 1
/// let (mut mean, mut invstd) = ([0.0f32], [0.0f32]);
/// let saved = SavedStatsMut { mean: &mut mean, invstd: &mut invstd };
/// let p = BnParams::new(0.0);
/// dropnorm::batch_norm_apply_inplace(&mut x, Shape::nc(2, 1), Layout::Nc, &p, Epilogue::None, &stats, saved, None)?;
/// assert_eq!(x, [-1.0, 1.0]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_apply_inplace<E: Element>(
    x: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    epilogue: Epilogue,
    stats: &[ChannelStats],
    saved: SavedStatsMut,
    running: Option<(RunningStatsMut, Momentum)>,
) -> Result<(), Error> {
    check_len("x", shape.validate(layout)?, x.len())?;
    let relu = epilogue.relu();
    run(
        Src::InPlace,
        None,
        x,
        shape,
        layout,
        params,
        relu,
        stats,
        saved,
        running,
    )
}

/// [`batch_norm_apply`] followed by the residual add and ReLU in the same pass:
/// `y = relu(bn(x) + r)` with the given batch statistics — the split-phase
/// [`batch_norm_add_relu_train`](super::batch_norm_add_relu_train), and the same bits as it.
///
/// ```
/// use dropnorm::{BnParams, ChannelStats, Layout, SavedStatsMut, Shape, batch_norm_add_relu_apply};
/// let (x, r) = ([1.0f32, 3.0], [0.5f32, 0.5]);
/// let stats = [ChannelStats::from_values(&x)];
/// let (mut y, mut mean, mut invstd) = ([0.0f32; 2], [0.0f32], [0.0f32]);
/// let saved = SavedStatsMut { mean: &mut mean, invstd: &mut invstd };
/// let p = BnParams::new(0.0);
/// batch_norm_add_relu_apply(&x, &r, &mut y, Shape::nc(2, 1), Layout::Nc, &p, &stats, saved, None)?;
/// assert_eq!(y, [0.0, 1.5]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_add_relu_apply<E: Element>(
    x: &[E],
    r: &[E],
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    stats: &[ChannelStats],
    saved: SavedStatsMut,
    running: Option<(RunningStatsMut, Momentum)>,
) -> Result<(), Error> {
    check_len("x", shape.validate(layout)?, x.len())?;
    check_len("r", x.len(), r.len())?;
    check_len("y", x.len(), y.len())?;
    run(
        Src::Slice(x),
        Some(r),
        y,
        shape,
        layout,
        params,
        true,
        stats,
        saved,
        running,
    )
}

/// Checks the per-channel counts of split-phase statistics (`len` of them, one per channel
/// of `c`): each of at least two values, as a training batch needs.
pub(crate) fn check_counts(
    arg: &'static str,
    c: usize,
    len: usize,
    mut counts: impl Iterator<Item = u64>,
) -> Result<(), Error> {
    check_len(arg, c, len)?;
    match counts.position(|n| n < 2) {
        None => Ok(()),
        Some(channel) => Err(Error::InvalidStats {
            arg,
            channel,
            reason: "fewer than two values (training needs at least two per channel)",
        }),
    }
}

/// Checks batch statistics given to a split-phase call: one per channel, each of at least two
/// values with a non-negative `m2` (NaN passes: it normalizes to NaN, as NaN data does).
fn check_stats(arg: &'static str, c: usize, stats: &[ChannelStats]) -> Result<(), Error> {
    check_counts(arg, c, stats.len(), stats.iter().map(|s| s.count))?;
    match stats.iter().position(|s| s.m2 < 0.0) {
        None => Ok(()),
        Some(channel) => Err(Error::InvalidStats {
            arg,
            channel,
            reason: "negative sum of squared deviations `m2`",
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn run<E: Element>(
    x: Src<E>,
    res: Option<&[E]>,
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    relu: bool,
    stats: &[ChannelStats],
    mut saved: SavedStatsMut,
    mut running: Option<(RunningStatsMut, Momentum)>,
) -> Result<(), Error> {
    let c = shape.c;
    let weights = validate_train(c, params, &saved, &running)?;
    check_stats("stats", c, stats)?;
    // Validated: from here on the call succeeds.
    if let Some((r, _)) = running.as_mut() {
        *r.batches = r.batches.saturating_add(1);
    }
    // Every channel's constants at once, by the training forward's vectorized kernels (an
    // f64 division and square root per channel: one channel at a time, NC (64,4096) took
    // about as long for them as for the pass itself). The biased variance `m2 / count` comes
    // in ready, so the kernel's count is 1 (`(v·1)/1 = v`): `channel_consts`' bits.
    let kernels = active_kernels();
    scratch_f32(5 * c, |consts| {
        scratch_f64(2 * c, |mv| {
            let (mean, var) = mv.split_at_mut(c);
            for ((m, v), st) in mean.iter_mut().zip(var.iter_mut()).zip(stats) {
                (*m, *v) = (st.mean, st.var());
            }
            let (g, b) = (params.gamma, params.beta);
            kernels.bn_train_consts(mean, var, 1, g, b, params.eps, consts);
        });
        let (k, rest) = consts.split_at(c);
        let (a, rest) = rest.split_at(c);
        let (b, rest) = rest.split_at(c);
        let (var, invstd) = rest.split_at(c);
        let mut running = running.map(|(r, _)| r);
        match stats.first().map(|s| s.count) {
            Some(n) if stats.iter().all(|s| s.count == n) => {
                saved.mean.copy_from_slice(k);
                saved.invstd.copy_from_slice(var);
                finish_channels(&mut saved, running.as_mut(), weights, invstd, n);
            }
            _ => {
                for (ch, st) in stats.iter().enumerate() {
                    let saved_ch = [k[ch], var[ch], invstd[ch]];
                    let r = running.as_mut();
                    finish_channel(&mut saved, r, weights, ch, saved_ch, st.count);
                }
            }
        }
        normalize(x, res, y, shape, layout, relu, Columns { k, a, b });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isa;
    use crate::dispatch::Kernels;

    /// The vectorized training constants are `channel_consts`, bit for bit, on every ISA:
    /// with and without γ and β, at every tail length, for means far from their f32 rounding
    /// and variances from 0 to 1e30.
    #[test]
    fn vectorized_train_consts_are_channel_consts_bit_for_bit() {
        let n = 37;
        let mean: Vec<f64> = (0..n)
            .map(|i| (i as f64 - 11.3) * 1e3 + 1e-9 * i as f64)
            .collect();
        let var: Vec<f64> = (0..n)
            .map(|i| match i % 4 {
                0 => 0.0,
                1 => 1e30 / (i as f64 + 1.0),
                _ => 0.123 * i as f64,
            })
            .collect();
        let gamma: Vec<f32> = (0..n).map(|i| 0.9 + 0.07 * i as f32).collect();
        let beta: Vec<f32> = (0..n).map(|i| -0.3 * i as f32).collect();
        let count = 1001;
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            for eps in [0.0, 1e-5] {
                for affine in [false, true] {
                    let mut params = BnParams::new(eps);
                    if affine {
                        params = params.with_affine(&gamma, &beta);
                    }
                    for len in [1, 8, 9, 16, 17, n] {
                        let mut out = vec![f32::NAN; 5 * len];
                        let (g, b) = (
                            params.gamma.map(|g| &g[..len]),
                            params.beta.map(|b| &b[..len]),
                        );
                        k.bn_train_consts(&mean[..len], &var[..len], count, g, b, eps, &mut out);
                        for ch in 0..len {
                            let st = ChannelStats::from_moments(count, mean[ch], var[ch]);
                            let (f, [m, v, is]) = channel_consts(&st, &params, ch);
                            let got = [0, 1, 2, 3, 4].map(|r| out[r * len + ch].to_bits());
                            let want = [f.k, f.a, f.b, v, is].map(f32::to_bits);
                            assert_eq!(got, want, "{isa} eps {eps} affine {affine} ch {ch}");
                            assert_eq!(m.to_bits(), f.k.to_bits());
                        }
                    }
                }
            }
        }
    }
}
