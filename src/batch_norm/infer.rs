//! Inference: normalization with the running statistics, the fused residual add + ReLU, and
//! folding batch norm into per-channel `(a, b)` or into the preceding layer's weights.

use core::ops::Range;

use super::consts::ChannelConsts;
use super::moments::{Geometry, block_width, geometry};
use super::rows::normalize_rows;
use super::{BnParams, Epilogue, check_eps, inv_std};
use crate::Element;
use crate::dispatch::channels::for_each_block_res;
use crate::dispatch::{NT_MIN_BYTES_HEAVY, Src};
use crate::dispatch::{active_kernels, active_typed};
use crate::error::check_len;
use crate::kernels::bn::Affine;
use crate::parallel::Par;
use crate::{Error, Layout, Shape};

/// The statistics inference normalizes with (a layer's running mean and variance).
#[derive(Clone, Copy, Debug)]
pub struct RunningStats<'a> {
    /// Mean per channel.
    pub mean: &'a [f32],
    /// Variance per channel (biased or not: whatever the running statistics hold).
    pub var: &'a [f32],
}

/// Inference-mode batch norm: `y = (x − mean)·a + β` with `a = γ/sqrt(var + eps)`, per
/// channel, from `stats` (then ReLU with [`Epilogue::Relu`]). Centered like the training forward,
/// never `x·a + b`: that form loses digits when the mean is large against the spread.
///
/// `x` and `y` are `f32`, [`bf16`](crate::bf16) or [`f16`](struct@crate::f16)
/// ([`Element`]); parameters and statistics are f32. A 16-bit tensor is widened, normalized
/// by the f32 arithmetic and rounded once: the output is the f32 kernel's on the widened
/// input, narrowed, bit for bit.
///
/// ```
/// use dropnorm::{BnParams, Epilogue, Layout, RunningStats, Shape, batch_norm_infer, bf16};
/// let x: Vec<bf16> = [1.0f32, 3.0, 5.0, 7.0].map(bf16::from_f32).to_vec();
/// let mut y = vec![bf16::ZERO; 4];
/// let stats = RunningStats { mean: &[2.0, 4.0], var: &[4.0, 1.0] };
/// batch_norm_infer(&x, &mut y, Shape::nc(2, 2), Layout::Nc, &BnParams::new(0.0), Epilogue::None, &stats)?;
/// assert_eq!(y.iter().map(|v| v.to_f32()).collect::<Vec<_>>(), [-0.5, -1.0, 1.5, 3.0]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
///
/// ```
/// use dropnorm::{BnParams, Epilogue, RunningStats, Layout, Shape, batch_norm_infer};
/// let x = [1.0f32, 3.0, 5.0, 7.0]; // NC (2, 2)
/// let mut y = [0.0f32; 4];
/// let stats = RunningStats { mean: &[2.0, 4.0], var: &[4.0, 1.0] };
/// let params = BnParams::new(0.0);
/// batch_norm_infer(&x, &mut y, Shape::nc(2, 2), Layout::Nc, &params, Epilogue::None, &stats)?;
/// assert_eq!(y, [-0.5, -1.0, 1.5, 3.0]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn batch_norm_infer<E: Element>(
    x: &[E],
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    epilogue: Epilogue,
    stats: &RunningStats,
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
        stats,
        epilogue.relu(),
    )
}

/// [`batch_norm_infer`] in place.
///
/// ```
/// use dropnorm::{BnParams, Epilogue, RunningStats, Layout, Shape, batch_norm_infer_inplace};
/// let mut x = [1.0f32, 3.0, 5.0, 7.0]; // NCHW (1, 1, 2, 2)
/// let stats = RunningStats { mean: &[4.0], var: &[4.0] };
/// let params = BnParams::new(0.0);
/// let shape = Shape::nchw(1, 1, 2, 2);
/// batch_norm_infer_inplace(&mut x, shape, Layout::Nchw, &params, Epilogue::Relu, &stats)?;
/// assert_eq!(x, [0.0, 0.0, 0.5, 1.5]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn batch_norm_infer_inplace<E: Element>(
    x: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    epilogue: Epilogue,
    stats: &RunningStats,
) -> Result<(), Error> {
    check_len("x", shape.validate(layout)?, x.len())?;
    run(
        Src::InPlace,
        None,
        x,
        shape,
        layout,
        params,
        stats,
        epilogue.relu(),
    )
}

/// The ResNet block tail in one pass: `y = relu(bn(x) + r)` in inference mode, `r` the
/// residual (same shape and layout as `x`). The ReLU is always applied. 12 bytes of traffic
/// per element instead of 20 for the three separate passes.
///
/// ```
/// use dropnorm::{BnParams, RunningStats, Layout, Shape, batch_norm_add_relu_infer};
/// let x = [1.0f32, 3.0];
/// let r = [0.5f32, -9.0];
/// let mut y = [0.0f32; 2];
/// let stats = RunningStats { mean: &[2.0], var: &[1.0] };
/// let shape = Shape::nc(2, 1);
/// batch_norm_add_relu_infer(&x, &r, &mut y, shape, Layout::Nc, &BnParams::new(0.0), &stats)?;
/// assert_eq!(y, [0.0, 0.0]); // relu(-1 + 0.5), relu(1 - 9)
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn batch_norm_add_relu_infer<E: Element>(
    x: &[E],
    r: &[E],
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    stats: &RunningStats,
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
        stats,
        true,
    )
}

/// Checks the per-channel arguments of inference and folding.
fn validate(params: &BnParams, stats: &RunningStats, c: usize) -> Result<(), Error> {
    check_eps(params.eps)?;
    if let Some(g) = params.gamma {
        check_len("gamma", c, g.len())?;
    }
    if let Some(b) = params.beta {
        check_len("beta", c, b.len())?;
    }
    check_len("stats.mean", c, stats.mean.len())?;
    check_len("stats.var", c, stats.var.len())?;
    check_running_var("stats.var", stats.var)
}

/// A running variance below 0 (or NaN) is a corrupt checkpoint: normalizing with it would
/// write NaN, so it is refused, naming the first bad channel.
pub(crate) fn check_running_var(arg: &'static str, var: &[f32]) -> Result<(), Error> {
    match var.iter().position(|v| v.is_nan() || *v < 0.0) {
        None => Ok(()),
        Some(channel) => Err(Error::InvalidRunningVar {
            arg,
            channel,
            var: var[channel],
        }),
    }
}

/// Channel `ch`'s centered constants: `k = mean`, `a = γ·invstd`, `b = β`.
fn affine(params: &BnParams, stats: &RunningStats, ch: usize) -> Affine {
    let g = params.gamma.map_or(1.0, |g| g[ch]);
    Affine {
        k: stats.mean[ch],
        a: (g as f64 * inv_std(stats.var[ch], params.eps) as f64) as f32,
        b: params.beta.map_or(0.0, |b| b[ch]),
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
    stats: &RunningStats,
    relu: bool,
) -> Result<(), Error> {
    validate(params, stats, shape.c)?;
    normalize(x, res, y, shape, layout, relu, Running { params, stats });
    Ok(())
}

/// Inference's constants from the running statistics: [`affine`], and a band of channels with
/// the scale `a` vectorized.
struct Running<'p, 'a> {
    params: &'p BnParams<'a>,
    stats: &'p RunningStats<'a>,
}

impl ChannelConsts for Running<'_, '_> {
    fn at(&self, ch: usize) -> Affine {
        affine(self.params, self.stats, ch)
    }

    fn band(&self, chans: Range<usize>, k: &mut [f32], a: &mut [f32], b: &mut [f32]) {
        let (p, st) = (self.params, self.stats);
        k.copy_from_slice(&st.mean[chans.clone()]);
        let gamma = p.gamma.map(|g| &g[chans.clone()]);
        active_kernels().bn_scale_consts(&st.var[chans.clone()], gamma, p.eps, a);
        match p.beta {
            Some(beta) => b.copy_from_slice(&beta[chans]),
            None => b.fill(0.0),
        }
    }
}

/// `y = (x − k)·a + b` per channel with the constants `consts(ch)` (then `+ res` and ReLU as
/// asked), in one pass over a validated tensor: inference, and the training forward's apply
/// phase.
pub(crate) fn normalize<E: Element>(
    x: Src<E>,
    res: Option<&[E]>,
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    relu: bool,
    consts: impl ChannelConsts,
) {
    if y.is_empty() {
        return;
    }
    let k = active_typed::<E>();
    // With a residual (a second input) streaming stores pay off from a smaller size.
    let nt = if res.is_some() {
        k.use_nt_from(y.len(), NT_MIN_BYTES_HEAVY)
    } else {
        k.use_nt(y.len())
    };
    let par = Par::above_threshold(y.len(), 1);
    match geometry(shape, layout) {
        Geometry::Runs(geo) => {
            let width = block_width(geo);
            for_each_block_res(x, res, y, geo, width, par, |mut block| {
                let mut aff = [Affine {
                    k: 0.0,
                    a: 0.0,
                    b: 0.0,
                }; super::moments::MAX_BLOCK];
                let chans = block.channels();
                for (i, ch) in chans.clone().enumerate() {
                    aff[i] = consts.at(ch);
                }
                block.normalize_all(k, &aff[..chans.len()], relu, nt);
            });
        }
        Geometry::Rows { c, .. } => {
            let res = res.map(Src::Slice);
            normalize_rows(k, x, y, c, res, relu, nt, par, false, consts);
        }
    }
}

/// Folds batch norm into per-channel `(a, b)` such that `bn(x) = x·a + b`:
/// `a = γ/sqrt(var + eps)`, `b = β − mean·a` (in f64, rounded once). What inference engines
/// fuse into a preceding layer; note that `x·a + b` itself loses digits when the mean is
/// large against the spread — [`batch_norm_infer`] does not.
///
/// ```
/// use dropnorm::{BnParams, RunningStats, fold};
/// let (mut a, mut b) = ([0.0f32; 1], [0.0f32; 1]);
/// let stats = RunningStats { mean: &[2.0], var: &[4.0] };
/// fold(&mut a, &mut b, &BnParams::new(0.0), &stats)?;
/// assert_eq!((a[0], b[0]), (0.5, -1.0));
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn fold(
    a: &mut [f32],
    b: &mut [f32],
    params: &BnParams,
    stats: &RunningStats,
) -> Result<(), Error> {
    let c = stats.mean.len();
    validate(params, stats, c)?;
    check_len("a", c, a.len())?;
    check_len("b", c, b.len())?;
    for ch in 0..c {
        let f = affine(params, stats, ch);
        a[ch] = f.a;
        b[ch] = (f.b as f64 - f.k as f64 * f.a as f64) as f32;
    }
    Ok(())
}

/// Folds batch norm into the layer before it (a convolution or linear layer whose weights are
/// laid out output-channel-major, `weights.len() = C·k`): `W'[o, ..] = W[o, ..]·a[o]`,
/// `bias'[o] = bias[o]·a[o] + b[o]`, with `(a, b)` from [`fold`]. A layer without a bias
/// passes zeros in `bias`, which receives the folded bias. After this the batch-norm node can
/// be deleted.
///
/// ```
/// use dropnorm::{BnParams, RunningStats, fold_into};
/// let mut w = [1.0f32, 2.0, 3.0, 4.0]; // 2 output channels × 2 inputs
/// let mut bias = [0.0f32, 1.0];
/// let stats = RunningStats { mean: &[1.0, 0.0], var: &[4.0, 1.0] };
/// fold_into(&mut w, &mut bias, &BnParams::new(0.0), &stats)?;
/// assert_eq!(w, [0.5, 1.0, 3.0, 4.0]);
/// assert_eq!(bias, [-0.5, 1.0]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn fold_into(
    weights: &mut [f32],
    bias: &mut [f32],
    params: &BnParams,
    stats: &RunningStats,
) -> Result<(), Error> {
    let c = stats.mean.len();
    validate(params, stats, c)?;
    check_len("bias", c, bias.len())?;
    if c == 0 || !weights.len().is_multiple_of(c) {
        return Err(Error::InvalidShape {
            reason: "`weights` must hold a whole number of values per output channel",
        });
    }
    let per = weights.len() / c;
    for ch in 0..c {
        let f = affine(params, stats, ch);
        let shift = f.b as f64 - f.k as f64 * f.a as f64;
        for w in &mut weights[ch * per..(ch + 1) * per] {
            *w *= f.a;
        }
        bias[ch] = (bias[ch] as f64 * f.a as f64 + shift) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isa;
    use crate::dispatch::Kernels;

    /// The vectorized band of constants is the per-channel `affine`, bit for bit, on every
    /// ISA: with and without γ, at every tail length, for variances from 0 (with eps 0: a
    /// scale of 0) to 1e30 and subnormal ones.
    #[test]
    fn a_band_of_scales_is_affine_bit_for_bit() {
        let var: Vec<f32> = (0..67)
            .map(|i| match i % 5 {
                0 => 0.0,
                1 => 1e-40 * i as f32,
                2 => 1e30 / i as f32,
                _ => 0.37 * i as f32,
            })
            .collect();
        let gamma: Vec<f32> = (0..67).map(|i| 1.5 - 0.11 * i as f32).collect();
        let mean = vec![0.25f32; 67];
        let stats = RunningStats {
            mean: &mean,
            var: &var,
        };
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            for eps in [0.0, 1e-5] {
                for g in [None, Some(&gamma[..])] {
                    let mut params = BnParams::new(eps);
                    params.gamma = g;
                    for n in [1, 7, 8, 9, 16, 17, 67] {
                        let mut a = vec![f32::NAN; n];
                        k.bn_scale_consts(&var[..n], g.map(|g| &g[..n]), eps, &mut a);
                        for (ch, got) in a.iter().enumerate() {
                            let want = affine(&params, &stats, ch).a;
                            assert_eq!(got.to_bits(), want.to_bits(), "{isa} eps {eps} ch {ch}");
                        }
                    }
                }
            }
        }
    }
}
