//! Backward of the training forward: `dx`, `dγ`, `dβ` from `x`, `dy` and the saved batch
//! statistics; through the fused ReLU and the fused residual add + ReLU; and the eval-mode
//! backward.
//!
//! With `xhat = (x − mean)·invstd` and `n` values per channel:
//! `dβ = Σdy`, `dγ = Σdy·xhat`, `dx = γ·invstd/n · (n·dy − dβ − xhat·dγ)`, computed per element
//! as `dx = a·dy + c1·(x − mean) + c0`. The two sums are one pass over `x` and `dy`; `dx` is a
//! second pass while the channel is still in cache (NCHW) or a second row pass (NC/NHWC).

use super::infer::{RunningStats, check_running_var};
use super::moments::{
    Geometry, block_width, chunked_sums, count_per_channel, geometry, stats_chunks,
};
use super::rows::{aligned_like, blocks_last_first, tile_layout, tile_task};
use super::scratch::{scratch_f32, scratch_f64};
use super::{BnParams, check_eps, inv_std};
use crate::Element;
use crate::dispatch::channels::for_each_bwd_block;
use crate::dispatch::{NT_MIN_BYTES_HEAVY, Src, TypedKernels};
use crate::dispatch::{active_kernels, active_typed};
use crate::error::check_len;
use crate::kernels::bn_backward::{BwdConsts, coefficients};
use crate::parallel::{Par, for_each_chunk};
use crate::{Error, Layout, Shape};
use core::ops::Range;

/// The batch statistics the training forward saved ([`SavedStatsMut`](super::SavedStatsMut)), read
/// by backward.
#[derive(Clone, Copy, Debug)]
pub struct SavedStats<'a> {
    /// Batch mean per channel.
    pub mean: &'a [f32],
    /// Batch `1/sqrt(var + eps)` per channel.
    pub invstd: &'a [f32],
}

/// Where backward writes. All are overwritten (not accumulated into).
#[derive(Debug)]
pub struct BnGrads<'a, E = f32> {
    /// Gradient of the input, as long as `x`.
    pub dx: &'a mut [E],
    /// Gradient of γ, one per channel (`Σdy·xhat`; written even without affine parameters).
    pub dgamma: &'a mut [f32],
    /// Gradient of β, one per channel (`Σdy`).
    pub dbeta: &'a mut [f32],
}

/// Where the add+ReLU backward writes: the batch-norm gradients and the residual's. All are
/// overwritten (not accumulated into).
#[derive(Debug)]
pub struct AddReluGrads<'a, E = f32> {
    /// Gradient of the input, as long as `x`.
    pub dx: &'a mut [E],
    /// Gradient of the residual `r` (`dy` where `y > 0`), as long as `x`.
    pub dr: &'a mut [E],
    /// Gradient of γ, one per channel.
    pub dgamma: &'a mut [f32],
    /// Gradient of β, one per channel.
    pub dbeta: &'a mut [f32],
}

/// Backward of [`batch_norm_train`](super::batch_norm_train).
///
/// `x`, `dy`, `y` and `dx` are `f32`, [`bf16`](crate::bf16) or [`f16`](struct@crate::f16)
/// ([`Element`](crate::Element)); `dγ`, `dβ`, parameters and statistics are f32. A 16-bit
/// backward is the f32 kernel's on the widened values, `dx` narrowed once.
///
/// `params` are the forward's (γ is used; β and eps are not needed). `y` is `Some` exactly
/// when the forward fused a ReLU ([`Epilogue::Relu`](super::Epilogue)): its output, and the
/// gradient flows where `y > 0`. `dx`, `dγ`, `dβ` are overwritten.
///
/// ```
/// use dropnorm::{SavedStats, BnGrads, BnParams, Layout, Shape, batch_norm_backward};
/// // One channel holding 1, 2, 3, 4: mean 2.5, var 1.25.
/// let x = [1.0f32, 2.0, 3.0, 4.0];
/// let dy = [1.0f32; 4]; // the gradient of Σy: zero through the normalization
/// let saved = SavedStats { mean: &[2.5], invstd: &[1.0 / 1.25f32.sqrt()] };
/// let (mut dx, mut dg, mut db) = ([9.0f32; 4], [0.0f32], [0.0f32]);
/// let grads = BnGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut db };
/// batch_norm_backward(&x, &dy, None, grads, Shape::nc(4, 1), Layout::Nc, &BnParams::new(0.0), &saved)?;
/// assert!(dx.iter().all(|v| v.abs() < 1e-6));
/// assert_eq!(db, [4.0]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<E: Element>(
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    grads: BnGrads<E>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    saved: &SavedStats,
) -> Result<(), Error> {
    check_len("dy", x.len(), dy.len())?;
    run(
        x,
        dy,
        y,
        None,
        shape,
        layout,
        params,
        Norm::Batch(saved),
        grads,
    )
}

/// Backward of the training-mode `y = relu(bn(x) + r)` (the forward computed with
/// [`batch_norm_train`](super::batch_norm_train) and the residual added): writes `dr`, the
/// residual's gradient (`dy` where `y > 0`), and the batch-norm gradients from it. `y` is
/// the forward output.
///
/// ```
/// use dropnorm::{AddReluGrads, BnParams, Layout, SavedStatsMut, SavedStats, Shape};
/// use dropnorm::{batch_norm_add_relu_backward, batch_norm_add_relu_train};
/// let shape = Shape::nc(4, 1);
/// let (x, r) = ([1.0f32, 2.0, 3.0, 4.0], [0.0f32; 4]);
/// let params = BnParams::new(0.0);
/// let (mut y, mut mean, mut invstd) = ([0.0f32; 4], [0.0f32], [0.0f32]);
/// let saved = SavedStatsMut { mean: &mut mean, invstd: &mut invstd };
/// batch_norm_add_relu_train(&x, &r, &mut y, shape, Layout::Nc, &params, saved, None)?;
/// let dy = [1.0f32; 4];
/// let (mut dx, mut dr, mut dg, mut db) = ([0.0f32; 4], [0.0f32; 4], [0.0f32], [0.0f32]);
/// let saved = SavedStats { mean: &mean, invstd: &invstd };
/// let grads = AddReluGrads { dx: &mut dx, dr: &mut dr, dgamma: &mut dg, dbeta: &mut db };
/// batch_norm_add_relu_backward(&x, &dy, &y, grads, shape, Layout::Nc, &params, &saved)?;
/// assert_eq!(dr, [0.0, 0.0, 1.0, 1.0]); // the ReLU passed the two positive outputs
/// assert_eq!(db, [2.0]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_add_relu_backward<E: Element>(
    x: &[E],
    dy: &[E],
    y: &[E],
    grads: AddReluGrads<E>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    saved: &SavedStats,
) -> Result<(), Error> {
    check_len("dy", x.len(), dy.len())?;
    check_len("grads.dr", x.len(), grads.dr.len())?;
    let AddReluGrads {
        dx,
        dr,
        dgamma,
        dbeta,
    } = grads;
    let grads = BnGrads { dx, dgamma, dbeta };
    run(
        x,
        dy,
        Some(y),
        Some(dr),
        shape,
        layout,
        params,
        Norm::Batch(saved),
        grads,
    )
}

/// Eval-mode backward, as PyTorch computes it for a module in `eval()` whose parameters
/// require gradients: the forward normalized with the running statistics, which are
/// constants here, so with `x̂ = (x − running_mean)·invstd_running`:
/// `dγ = Σdy·x̂`, `dβ = Σdy`, `dx = dy·γ·invstd_running`. `y` is `Some` exactly when
/// the eval forward fused a ReLU: its output, and the gradient flows where `y > 0`. Everything in `grads` is
/// overwritten; nothing is written on error (a negative or NaN running variance included).
///
/// ```
/// use dropnorm::{BnGrads, BnParams, RunningStats, Layout, Shape, batch_norm_backward_eval};
/// let (x, dy) = ([7.0f32, 3.0], [1.0f32, 2.0]);
/// let stats = RunningStats { mean: &[5.0], var: &[4.0] }; // invstd 0.5
/// let (mut dx, mut dg, mut db) = ([0.0f32; 2], [0.0f32], [0.0f32]);
/// let grads = BnGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut db };
/// let params = BnParams::new(0.0);
/// batch_norm_backward_eval(&x, &dy, None, grads, Shape::nc(2, 1), Layout::Nc, &params, &stats)?;
/// assert_eq!(dx, [0.5, 1.0]);
/// assert_eq!(db, [3.0]); // Σdy
/// assert_eq!(dg, [-1.0]); // 1·(7−5)·0.5 + 2·(3−5)·0.5
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_eval<E: Element>(
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    grads: BnGrads<E>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    stats: &RunningStats,
) -> Result<(), Error> {
    check_len("dy", x.len(), dy.len())?;
    let norm = Norm::Running(stats, params.eps);
    run(x, dy, y, None, shape, layout, params, norm, grads)
}

/// The statistics a backward differentiates through.
#[derive(Clone, Copy)]
pub(crate) enum Norm<'a> {
    /// Training: the batch statistics the forward saved.
    Batch(&'a SavedStats<'a>),
    /// Eval: the running statistics (constants) and the forward's eps.
    Running(&'a RunningStats<'a>, f32),
}

impl Norm<'_> {
    fn validate(&self, c: usize) -> Result<(), Error> {
        match self {
            Norm::Batch(s) => {
                check_len("saved.mean", c, s.mean.len())?;
                check_len("saved.invstd", c, s.invstd.len())
            }
            Norm::Running(s, _) => {
                check_len("stats.mean", c, s.mean.len())?;
                check_len("stats.var", c, s.var.len())?;
                check_running_var("stats.var", s.var)
            }
        }
    }

    fn mean(&self) -> &[f32] {
        match self {
            Norm::Batch(s) => s.mean,
            Norm::Running(s, _) => s.mean,
        }
    }

    fn invstd(&self, ch: usize) -> f64 {
        match self {
            Norm::Batch(s) => s.invstd[ch] as f64,
            Norm::Running(s, eps) => inv_std(s.var[ch], *eps) as f64,
        }
    }

    /// Whether the statistics depend on `x` (then dx has the terms through mean and var).
    fn is_batch(&self) -> bool {
        matches!(self, Norm::Batch(_))
    }
}

/// Checks a backward's tensors, parameters, statistics and the per-channel gradients'
/// lengths; returns the tensor's length and its values per channel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn validate<E>(
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    dx_len: usize,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    norm: Norm,
    per_channel: [(&'static str, usize); 2],
) -> Result<(usize, usize), Error> {
    let n = shape.validate(layout)?;
    check_len("x", n, x.len())?;
    check_len("dy", n, dy.len())?;
    check_len("grads.dx", n, dx_len)?;
    let c = shape.c;
    check_eps(params.eps)?;
    if let Some(g) = params.gamma {
        check_len("gamma", c, g.len())?;
    }
    norm.validate(c)?;
    for (arg, len) in per_channel {
        check_len(arg, c, len)?;
    }
    // A forward output means the forward fused a ReLU: the gradient flows where y > 0.
    if let Some(y) = y {
        check_len("y", n, y.len())?;
    }
    Ok((n, count_per_channel(shape)?))
}

/// The `dx` constants of channel `ch` and its `(dγ, dβ)`, from the sums `[Σdy, Σdy·(x − m)]`
/// over `count` values (the formulas: [`coefficients`]).
#[inline]
pub(crate) fn bwd_consts(
    gamma: Option<&[f32]>,
    norm: Norm,
    ch: usize,
    count: f64,
    [s_dy, s_dyx]: [f64; 2],
) -> (BwdConsts, f32, f32) {
    let g = gamma.map_or(1.0, |g| g[ch]) as f64;
    let (m, is) = (norm.mean()[ch], norm.invstd(ch));
    let ([a, c1, c0], [dg, db]) = coefficients(g, is, s_dy, s_dyx, count, norm.is_batch());
    (BwdConsts { m, a, c1, c0 }, dg, db)
}

#[allow(clippy::too_many_arguments)]
fn run<E: Element>(
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    dr: Option<&mut [E]>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    norm: Norm,
    grads: BnGrads<E>,
) -> Result<(), Error> {
    let per_channel = [
        ("grads.dgamma", grads.dgamma.len()),
        ("grads.dbeta", grads.dbeta.len()),
    ];
    let dx_len = grads.dx.len();
    let (n, count) = validate(x, dy, y, dx_len, shape, layout, params, norm, per_channel)?;
    if norm.is_batch() && count < 2 && shape.c > 0 {
        return Err(Error::TooFewValuesPerChannel { count });
    }
    if n == 0 {
        grads.dgamma.fill(0.0);
        grads.dbeta.fill(0.0);
        return Ok(());
    }
    let k = active_typed::<E>();
    // Two inputs (x and dy): streaming stores from the lower threshold.
    let nt = k.use_nt_from(n, NT_MIN_BYTES_HEAVY);
    let par = Par::above_threshold(n, 1);
    let gamma = params.gamma;
    let mean = norm.mean();
    let consts = |ch: usize, sums: [f64; 2]| bwd_consts(gamma, norm, ch, count as f64, sums);
    let BnGrads { dx, dgamma, dbeta } = grads;
    match geometry(shape, layout) {
        Geometry::Runs(geo) => {
            let width = block_width(geo);
            for_each_bwd_block(
                x,
                Src::Slice(dy),
                y,
                dx,
                dr,
                geo,
                width,
                par,
                dgamma,
                dbeta,
                |mut block, dg, db| {
                    // Channel by channel: the sums (the one read of x and dy from memory),
                    // then dx while the channel is in cache. Taking the next channel's sums in
                    // the loop that writes this one's dx (as the forward pipelines) was slower
                    // on the AMD EPYC machine, 1 thread: NCHW (8,32,28,28) f32 ~10 %, beyond
                    // the caches (64,256,28,28) 8.4 → 5.3 ms: the second pass's L2 reads and
                    // stores shared the loop with the sums' misses.
                    for (i, ch) in block.channels().enumerate() {
                        let (f, g, b) = consts(ch, block.sums(k, ch, mean[ch]));
                        (dg[i], db[i]) = (g, b);
                        block.dx(k, ch, f, nt, true);
                    }
                },
            );
        }
        Geometry::Rows { c, .. } => {
            let gd = RowGrads {
                gamma,
                norm,
                count,
                dgamma,
                dbeta,
            };
            backward_rows(k, x, dy, y, dx, dr, c, nt, gd);
        }
    }
    Ok(())
}

/// What the NC/NHWC backward needs besides its tensors: the parameters and statistics of
/// the constants, and where `dγ`, `dβ` go.
struct RowGrads<'a> {
    gamma: Option<&'a [f32]>,
    norm: Norm<'a>,
    count: usize,
    dgamma: &'a mut [f32],
    dbeta: &'a mut [f32],
}

/// NC/NHWC backward: the two sums by row chunks (partials merged in a fixed order), every
/// column's constants at once (`bn_bwd_row_consts`, which also writes `dγ`, `dβ`), then `dx`
/// (and `dr`) by rows with tiled constants.
#[allow(clippy::too_many_arguments)]
fn backward_rows<E: Element>(
    k: &TypedKernels<E>,
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    dx: &mut [E],
    dr: Option<&mut [E]>,
    c: usize,
    nt: bool,
    gd: RowGrads,
) {
    let RowGrads {
        gamma,
        norm,
        count,
        dgamma,
        dbeta,
    } = gd;
    let mean = norm.mean();
    row_grad_sums(k, x, dy, y, c, mean, |sums| {
        scratch_f32(5 * c, |buf| {
            let (consts, is) = buf.split_at_mut(4 * c);
            let kernels = active_kernels();
            let invstd: &[f32] = match norm {
                Norm::Batch(s) => s.invstd,
                Norm::Running(s, eps) => {
                    // `inv_std` of each running variance, as `Norm::invstd` gives it.
                    kernels.bn_scale_consts(s.var, None, eps, is);
                    is
                }
            };
            let batch = norm.is_batch();
            kernels.bn_bwd_row_consts(
                sums, count, gamma, mean, invstd, batch, consts, dgamma, dbeta,
            );
            row_dx(k, x, dy, y, dx, dr, c, nt, true, consts);
        });
    });
}

/// Calls `f(sums)` with `[Σdy; Σdy·(x − m)]` of every column of an NC/NHWC tensor of `c`
/// columns (dy masked by `y > 0` when `y` is given), taken by row chunks merged in a fixed
/// order, in the [`sum_index`] layout.
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_grad_sums<E: Element>(
    k: &TypedKernels<E>,
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    c: usize,
    mean: &[f32],
    f: impl FnOnce(&[f64]),
) {
    let rows = x.len() / c;
    let chunks = stats_chunks(rows, c);
    scratch_f64((1 + chunks) * 2 * c, |buf| {
        let (sums, partials) = buf.split_at_mut(2 * c);
        // x and dy, and y for a fused ReLU.
        let read = size_of::<E>() * if y.is_some() { 3 } else { 2 };
        chunked_sums(rows, c, read, sums, partials, |rg, c0, w, out| {
            let range = rg.start * c..rg.end * c;
            let (xr, dyr) = (&x[range.clone()], &dy[range.clone()]);
            let yr = y.map(|y| &y[range]);
            k.bn_bwd_sums_rows(xr, dyr, yr, c, c0, w, &mean[c0..c0 + w], out);
        });
        f(sums);
    });
}

/// Columns above which [`row_dx`] with plain stores goes a band of at most
/// [`BWD_BAND_COLUMNS`] columns at a time, so that the band's four rows of constants (16 B a
/// column) stay in L1 beside the data streaming through: a whole 4096-column row of them is
/// 64 KiB, more than the 48 KiB L1 of the AMD EPYC machine, and each vector of `dx` then
/// loaded four vectors from L2. (NC (64,4096), 1 thread: f32 backward ×1.25, 16-bit
/// ×1.40–1.41, paired roofline. At 2048 columns, two bands measured 0.72–0.93: not banded.)
const BWD_WIDE_COLUMNS: usize = 2048;

/// Widest band of [`dx_wide_rows`]: 16 KiB of constants. (Bands of 512 columns were slower
/// on NC (256,4096); of 1536, no faster.)
const BWD_BAND_COLUMNS: usize = 1024;

/// [`row_dx`] for rows wider than [`BWD_WIDE_COLUMNS`] with plain stores: tasks of whole
/// rows (each thread's share, as the sums pass had it), within them a band of at most
/// [`BWD_BAND_COLUMNS`] columns at a time over all their rows — last to first after a sums
/// pass (see [`blocks_last_first`]).
#[allow(clippy::too_many_arguments)]
fn dx_wide_rows<E: Element>(
    k: &TypedKernels<E>,
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    dx: &mut [E],
    dr: Option<&mut [E]>,
    c: usize,
    after_sums: bool,
    consts: &[f32],
) {
    let bands = c.div_ceil(BWD_BAND_COLUMNS);
    let w = c.div_ceil(bands).next_multiple_of(16);
    let task = tile_task(dx.len(), c);
    let par = Par::above_threshold(dx.len(), 1);
    let like = dx.as_ptr() as usize;
    // One row segment of a band: `at` its range in the whole tensor, `dxs`/`drs` its outputs.
    let segment =
        |tile: &[f32], wb: usize, at: Range<usize>, dxs: &mut [E], drs: Option<&mut [E]>| {
            let yr = y.map(|y| &y[at.clone()]);
            let dys = Src::Slice(&dy[at.clone()]);
            k.bn_bwd_dx_tiled(&x[at], dys, yr, dxs, drs, tile, wb, false);
        };
    // Calls `f(tile, columns)` for each band, in the pass's order, with the band's tile.
    let each_band = |f: &mut dyn FnMut(&[f32], Range<usize>)| {
        for bi in 0..bands {
            let b = if after_sums { bands - 1 - bi } else { bi };
            let cols = b * w..((b + 1) * w).min(c);
            if cols.is_empty() {
                continue;
            }
            let wb = cols.len();
            let r = wb + 16;
            scratch_f32(4 * r + 16, |buf| {
                let tile = aligned_like(buf, like as *const E, 4 * r);
                for row in 0..4 {
                    let src = &consts[row * c + cols.start..row * c + cols.end];
                    tile[row * r..row * r + wb].copy_from_slice(src);
                    tile.copy_within(row * r..row * r + 16, row * r + wb);
                }
                f(tile, cols.clone());
            });
        }
    };
    let order = |rows: usize, i: usize| if after_sums { rows - 1 - i } else { i };
    match dr {
        None => for_each_chunk(dx, task, par, |ti, dxc| {
            let rows = dxc.len() / c;
            each_band(&mut |tile, cols| {
                for i in 0..rows {
                    let row = order(rows, i) * c;
                    let seg = row + cols.start..row + cols.end;
                    let at = ti * task + seg.start..ti * task + seg.end;
                    segment(tile, cols.len(), at, &mut dxc[seg], None);
                }
            });
        }),
        Some(dr) => crate::parallel::for_each_chunk2(dx, task, dr, task, par, |ti, dxc, drc| {
            let rows = dxc.len() / c;
            each_band(&mut |tile, cols| {
                for i in 0..rows {
                    let row = order(rows, i) * c;
                    let seg = row + cols.start..row + cols.end;
                    let at = ti * task + seg.start..ti * task + seg.end;
                    let drs = Some(&mut drc[seg.clone()]);
                    segment(tile, cols.len(), at, &mut dxc[seg], drs);
                }
            });
        }),
    }
}

/// `dx` (and `dr`) of an NC/NHWC tensor of `c` columns by rows, with `consts(ch)` tiled.
/// `after_sums`: a sums pass over the same rows just ran, so blocks go last to first (see
/// [`blocks_last_first`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_dx<E: Element>(
    k: &TypedKernels<E>,
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    dx: &mut [E],
    dr: Option<&mut [E]>,
    c: usize,
    nt: bool,
    after_sums: bool,
    consts: &[f32],
) {
    assert_eq!(consts.len(), 4 * c, "rows [m; a; c1; c0] of c");
    let (tile_rows, l) = tile_layout(c);
    if tile_rows == 1 && !nt && c > BWD_WIDE_COLUMNS {
        return dx_wide_rows(k, x, dy, y, dx, dr, c, after_sums, consts);
    }
    let r = l + 16;
    let fwd = nt || !after_sums;
    scratch_f32(4 * r + 16, |buf| {
        let aff = aligned_like(buf, dx.as_ptr(), 4 * r);
        // Row by row, tile row by tile row: slice copies (one store per value and channel
        // was a third of a wide call's fixed cost).
        for (row, src) in consts.chunks_exact(c).enumerate() {
            for t in 0..tile_rows {
                let at = row * r + t * c;
                aff[at..at + c].copy_from_slice(src);
            }
        }
        for row in 0..4 {
            aff.copy_within(row * r..row * r + 16, row * r + l);
        }
        let aff: &[f32] = aff;
        let task = tile_task(dx.len(), l);
        let par = Par::above_threshold(dx.len(), 1);
        match dr {
            None => for_each_chunk(dx, task, par, |ti, dxc| {
                blocks_last_first(dxc.len(), l, fwd, |b| {
                    let rg = ti * task + b.start..ti * task + b.end;
                    let yr = y.map(|y| &y[rg.clone()]);
                    let dyr = Src::Slice(&dy[rg.clone()]);
                    k.bn_bwd_dx_tiled(&x[rg], dyr, yr, &mut dxc[b], None, aff, l, nt);
                });
            }),
            Some(dr) => {
                crate::parallel::for_each_chunk2(dx, task, dr, task, par, |ti, dxc, drc| {
                    blocks_last_first(dxc.len(), l, fwd, |b| {
                        let rg = ti * task + b.start..ti * task + b.end;
                        let yr = y.map(|y| &y[rg.clone()]);
                        let dyr = Src::Slice(&dy[rg.clone()]);
                        let (dxb, drb) = (&mut dxc[b.clone()], Some(&mut drc[b]));
                        k.bn_bwd_dx_tiled(&x[rg], dyr, yr, dxb, drb, aff, l, nt);
                    });
                })
            }
        }
    });
}
