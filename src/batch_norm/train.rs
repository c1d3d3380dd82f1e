//! Training-mode forward: batch statistics fused with normalization, running statistics.

use core::ops::Range;

use super::apply::{channel_consts, finish_channels, validate_train};
use super::consts::ChannelConsts;
use super::moments::{Geometry, block_width, count_per_channel, from_sums, geometry, row_moments};
use super::rows::normalize_rows;
use super::scratch::{scratch_f32, scratch_f64};
use super::stats::ChannelStats;
use super::{BnParams, Epilogue, Momentum, RunningStatsMut, SavedStatsMut};
use crate::Element;
use crate::dispatch::channels::for_each_block;
use crate::dispatch::{NT_MIN_BYTES, NT_MIN_BYTES_HEAVY, Src};
use crate::dispatch::{TypedKernels, active_kernels, active_typed};
use crate::error::check_len;
use crate::kernels::bn::Affine;
use crate::parallel::Par;
use crate::{Error, Layout, Shape};

/// Training-mode batch norm, out of place: computes each channel's batch mean and biased
/// variance, writes `y = γ·(x − mean)/sqrt(var + eps) + β` (then ReLU with [`Epilogue::Relu`]),
/// saves the mean and `invstd` for backward, and updates `running` if given: the running
/// statistics with the given [`Momentum`], and their batch count.
///
/// `x` and `y` are `f32`, [`bf16`](crate::bf16) or [`f16`](struct@crate::f16)
/// ([`Element`](crate::Element)); parameters and statistics are f32. The statistics of a
/// 16-bit tensor are those of its widened values (the f32 kernel's, bit for bit), and its
/// output is the f32 kernel's output narrowed once.
///
/// Each channel (NCHW) or block of up to 64 adjacent channels (NC, NHWC) is read for its
/// statistics and normalized right after, while it is still in cache, so each element crosses
/// DRAM once each way; channels are spread over rayon's pool.
///
/// ```
/// use dropnorm::{BnParams, Epilogue, Layout, Momentum, RunningStatsMut, SavedStatsMut, Shape};
/// use dropnorm::batch_norm_train;
/// let shape = Shape::nchw(2, 1, 1, 2); // one channel, values 1 2 3 4
/// let x = [1.0f32, 2.0, 3.0, 4.0];
/// let mut y = [0.0f32; 4];
/// let (mut mean, mut invstd) = ([0.0f32], [0.0f32]);
/// let (mut rm, mut rv, mut batches) = ([0.0f32], [1.0f32], 0u64);
/// batch_norm_train(
///     &x,
///     &mut y,
///     shape,
///     Layout::Nchw,
///     &BnParams::new(0.0),
///     Epilogue::None, // or Epilogue::Relu: y = max(bn(x), 0) in the same pass
///     SavedStatsMut { mean: &mut mean, invstd: &mut invstd },
///     Some((RunningStatsMut { mean: &mut rm, var: &mut rv, batches: &mut batches }, Momentum::PyTorch(0.1))),
/// )?;
/// assert_eq!(batches, 1); // PyTorch's num_batches_tracked
/// assert_eq!(mean, [2.5]);
/// assert!((y[0] + 1.3416408).abs() < 1e-6); // (1 − 2.5)/sqrt(1.25)
/// assert!((rm[0] - 0.25).abs() < 1e-7);
/// assert!((rv[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6); // unbiased var 5/3
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train<E: Element>(
    x: &[E],
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    epilogue: Epilogue,
    saved: SavedStatsMut,
    running: Option<(RunningStatsMut, Momentum)>,
) -> Result<(), Error> {
    check_len("x", shape.validate(layout)?, x.len())?;
    check_len("y", x.len(), y.len())?;
    run(
        Src::Slice(x),
        None,
        y,
        shape,
        layout,
        params,
        epilogue.relu(),
        saved,
        running,
    )
}

/// Training-mode batch norm followed by the residual add and ReLU in the same pass:
/// `y = relu(bn(x) + r)` with the batch statistics (saved and running as in
/// [`batch_norm_train`]). The ReLU is always applied.
/// Backward: [`batch_norm_add_relu_backward`](super::batch_norm_add_relu_backward).
///
/// ```
/// use dropnorm::{BnParams, Layout, SavedStatsMut, Shape, batch_norm_add_relu_train};
/// let x = [1.0f32, 3.0]; // NC (2, 1): mean 2, var 1
/// let r = [0.5f32, 0.5];
/// let mut y = [0.0f32; 2];
/// let (mut mean, mut invstd) = ([0.0f32], [0.0f32]);
/// let saved = SavedStatsMut { mean: &mut mean, invstd: &mut invstd };
/// batch_norm_add_relu_train(&x, &r, &mut y, Shape::nc(2, 1), Layout::Nc, &BnParams::new(0.0), saved, None)?;
/// assert_eq!(y, [0.0, 1.5]); // relu(-1 + 0.5), relu(1 + 0.5)
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_add_relu_train<E: Element>(
    x: &[E],
    r: &[E],
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
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
        saved,
        running,
    )
}

/// [`batch_norm_train`] in place: `x` is overwritten with the output.
///
/// ```
/// use dropnorm::{BnParams, Layout, Momentum, RunningStatsMut, SavedStatsMut, Shape};
/// let mut x = [1.0f32, 3.0, 5.0, 7.0]; // NHWC (1, 2, 2, 1) = 2 pixels of 2 channels
/// let (mut mean, mut invstd) = ([0.0f32; 2], [0.0f32; 2]);
/// let (mut rmean, mut rvar) = ([0.0f32; 2], [1.0f32; 2]);
/// let saved = SavedStatsMut { mean: &mut mean, invstd: &mut invstd };
/// let mut batches = 0;
/// let running = RunningStatsMut { mean: &mut rmean, var: &mut rvar, batches: &mut batches };
/// let running = Some((running, Momentum::PyTorch(0.1)));
/// let shape = Shape::nchw(1, 2, 2, 1);
/// let params = BnParams::new(0.0);
/// let none = dropnorm::Epilogue::None;
/// dropnorm::batch_norm_train_inplace(&mut x, shape, Layout::Nhwc, &params, none, saved, running)?;
/// assert_eq!(x, [-1.0, -1.0, 1.0, 1.0]);
/// assert_eq!(mean, [3.0, 5.0]);
/// assert_eq!(rmean, [0.3, 0.5]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn batch_norm_train_inplace<E: Element>(
    x: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    epilogue: Epilogue,
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
        saved,
        running,
    )
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
    mut saved: SavedStatsMut,
    running: Option<(RunningStatsMut, Momentum)>,
) -> Result<(), Error> {
    // Validate everything before writing anything.
    let c = shape.c;
    let weights = validate_train(c, params, &saved, &running)?;
    let count = count_per_channel(shape)?;
    if count < 2 && c > 0 {
        return Err(Error::TooFewValuesPerChannel { count });
    }
    let mut running = running.map(|(r, _)| {
        // Validated: from here on the call succeeds.
        *r.batches = r.batches.saturating_add(1);
        r
    });
    if c == 0 {
        return Ok(());
    }

    let t = active_typed::<E>();
    let n = y.len();
    // The row passes read x twice, add+ReLU reads a second input: streaming stores from a
    // smaller size there.
    let heavy = res.is_some() || matches!(geometry(shape, layout), Geometry::Rows { .. });
    let nt = t.use_nt_from(
        n,
        if heavy {
            NT_MIN_BYTES_HEAVY
        } else {
            NT_MIN_BYTES
        },
    );
    // The constants of `channel_stats` + `apply`: the same bits as the split phase.
    let consts = |ch: usize, (_pivot, mean, var): (f32, f64, f64)| {
        let (f, [mean, var, _]) =
            channel_consts(&ChannelStats::from_moments(count, mean, var), params, ch);
        (f, mean, var)
    };
    let par = Par::above_threshold(n, 1);
    // Each block (or the row pass) saves its channels' mean and (provisionally, in `invstd`)
    // biased variance; then the running statistics from the saved ones, and the variance
    // becomes invstd (every channel's square root and division at once, vectorized; the row
    // pass has them from its constants).
    scratch_f32(c, |invstd| {
        match geometry(shape, layout) {
            Geometry::Runs(geo) => {
                // Channel by channel, pipelined: the statistics of channel c+1 are taken while
                // channel c is written, in the same loop.
                let width = block_width(geo);
                for_each_block(
                    x,
                    res,
                    y,
                    geo,
                    width,
                    par,
                    saved.mean,
                    saved.invstd,
                    |mut block, means, vars| {
                        let chans = block.channels();
                        let mut pivot = block.first(chans.start);
                        let mut sums = block.sums_one(t, chans.start, pivot);
                        for (i, ch) in chans.clone().enumerate() {
                            let (mut m, better) = from_sums(pivot, sums, count);
                            if let Some(b) = better {
                                m = from_sums(b, block.sums_one(t, ch, b), count).0;
                            }
                            let (f, mean, var) = consts(ch, m);
                            (means[i], vars[i]) = (mean, var);
                            if ch + 1 == chans.end {
                                block.normalize_one(t, ch, f, relu, nt, false);
                            } else {
                                pivot = block.first(ch + 1);
                                sums = block.normalize_sum_one(t, ch, f, relu, nt, ch + 1, pivot);
                            }
                        }
                    },
                );
                active_kernels().bn_scale_consts(saved.invstd, None, params.eps, invstd);
            }
            Geometry::Rows { c, .. } => {
                let (means, vars) = (&mut *saved.mean, &mut *saved.invstd);
                train_rows(
                    t,
                    x,
                    res,
                    y,
                    c,
                    relu,
                    nt,
                    params,
                    count,
                    [means, vars, invstd],
                );
            }
        }

        finish_channels(&mut saved, running.as_mut(), weights, invstd, count as u64);
    });
    Ok(())
}

/// Training forward for NC/NHWC (the row driver): statistics by rows, then `y` normalized by
/// rows with the constants `channel_consts` gives (the same bits, every channel's at once);
/// each channel's mean and biased variance go to `means` and `vars`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_rows<E: Element>(
    t: &TypedKernels<E>,
    x: Src<E>,
    res: Option<&[E]>,
    y: &mut [E],
    c: usize,
    relu: bool,
    nt: bool,
    params: &BnParams,
    count: usize,
    [means, vars, invstds]: [&mut [f32]; 3],
) {
    scratch_f32(6 * c, |buf| {
        let (pivots, consts) = buf.split_at_mut(c);
        let src: &[E] = match x {
            Src::Slice(xs) => xs,
            Src::InPlace => y,
        };
        scratch_f64(2 * c, |moments| {
            let (mean, var) = moments.split_at_mut(c);
            row_moments(t, src, c, pivots, |c0, _, m, v| {
                mean[c0..c0 + m.len()].copy_from_slice(m);
                var[c0..c0 + v.len()].copy_from_slice(v);
            });
            let (g, b) = (params.gamma, params.beta);
            active_kernels().bn_train_consts(mean, var, count, g, b, params.eps, consts);
        });
        let (k, rest) = consts.split_at(c);
        let (a, rest) = rest.split_at(c);
        let (b, rest) = rest.split_at(c);
        let (var, invstd) = rest.split_at(c);
        means.copy_from_slice(k);
        vars.copy_from_slice(var);
        invstds.copy_from_slice(invstd);
        let par = Par::above_threshold(y.len(), 1);
        let consts = Columns { k, a, b };
        normalize_rows(t, x, y, c, res.map(Src::Slice), relu, nt, par, true, consts);
    });
}

/// Constants held as three rows of per-channel values.
pub(crate) struct Columns<'a> {
    pub(crate) k: &'a [f32],
    pub(crate) a: &'a [f32],
    pub(crate) b: &'a [f32],
}

impl ChannelConsts for Columns<'_> {
    fn at(&self, ch: usize) -> Affine {
        Affine {
            k: self.k[ch],
            a: self.a[ch],
            b: self.b[ch],
        }
    }

    fn band(&self, chans: Range<usize>, k: &mut [f32], a: &mut [f32], b: &mut [f32]) {
        k.copy_from_slice(&self.k[chans.clone()]);
        a.copy_from_slice(&self.a[chans.clone()]);
        b.copy_from_slice(&self.b[chans]);
    }
}
