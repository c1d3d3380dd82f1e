//! Split-phase backward: the two per-channel sums of any part of a batch, mergeable, then
//! `dx`, `dγ`, `dβ` from the merged sums in one pass.
//!
//! The one-call backward takes the same sums and goes through the same constants
//! ([`bwd_consts`]), so on the same batch the two give the same bits.

use super::BnParams;
use super::apply::check_counts;
use super::backward::{BnGrads, Norm, SavedStats, bwd_consts, row_dx, row_grad_sums, validate};
use super::moments::{Geometry, block_width, geometry, sum_index};
use super::scratch::{scratch_f32, scratch_f64};
use crate::Element;
use crate::dispatch::NT_MIN_BYTES_HEAVY;
use crate::dispatch::Src;
use crate::dispatch::channels::{for_each_bwd_block, for_each_bwd_block_read};
use crate::dispatch::{active_kernels, active_typed};
use crate::parallel::Par;
use crate::{Error, Layout, Shape};

/// One channel's backward sums over a part of a batch: what synchronized batch norm
/// all-reduces between the forward's statistics and `dx`.
///
/// ```
/// use dropnorm::GradSums;
/// let a = GradSums { count: 2, dy: 1.0, dy_xmu: 0.5 };
/// let b = GradSums { count: 3, dy: 2.0, dy_xmu: -1.5 };
/// assert_eq!(a.merge(&b)?, GradSums { count: 5, dy: 3.0, dy_xmu: -1.0 });
/// # Ok::<(), dropnorm::Error>(())
/// ```
// repr(C): the C API (capi/) passes arrays of these to and from C without a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct GradSums {
    /// Number of values summed.
    pub count: u64,
    /// `Σdy` (dy masked by `y > 0` with a fused ReLU): the part's `dβ`.
    pub dy: f64,
    /// `Σdy·(x − mean)` around the saved batch mean: the part's `dγ / invstd`.
    pub dy_xmu: f64,
}

impl GradSums {
    /// The sums of both parts; [`Error::CountOverflow`] when the count does not fit in `u64`.
    /// Plain additions: merging in a fixed order gives the same bits on every run.
    pub fn merge(&self, other: &GradSums) -> Result<GradSums, Error> {
        Ok(GradSums {
            count: self
                .count
                .checked_add(other.count)
                .ok_or(Error::CountOverflow)?,
            dy: self.dy + other.dy,
            dy_xmu: self.dy_xmu + other.dy_xmu,
        })
    }
}

/// The first phase of a split-phase backward: each channel's [`GradSums`] of this part of the
/// batch into `out`, around the forward's saved mean (the whole batch's, with synchronized
/// batch norm). `y` is `Some` exactly when the forward fused a ReLU, as in
/// [`batch_norm_backward`](super::batch_norm_backward). A part may hold any number of values
/// per channel, none included.
///
/// ```
/// use dropnorm::{BnGrads, BnParams, GradSums, Layout, SavedStats, Shape};
/// use dropnorm::{batch_norm_backward_apply, batch_norm_backward_sums};
/// let (x, dy) = ([1.0f32, 2.0, 3.0, 4.0], [1.0f32, 0.0, 0.0, 2.0]);
/// let saved = SavedStats { mean: &[2.5], invstd: &[1.0 / 1.25f32.sqrt()] };
/// let shape = Shape::nc(4, 1);
/// let mut sums = [GradSums::default()];
/// batch_norm_backward_sums(&x, &dy, None, &mut sums, shape, Layout::Nc, &saved)?;
/// assert_eq!(sums[0], GradSums { count: 4, dy: 3.0, dy_xmu: 1.5 }); // −1.5·1 + 1.5·2
/// // (merge the sums of every part here), then dx, dγ, dβ in one pass:
/// let (mut dx, mut dg, mut db) = ([0.0f32; 4], [0.0f32], [0.0f32]);
/// let grads = BnGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut db };
/// let params = BnParams::new(0.0);
/// batch_norm_backward_apply(&x, &dy, None, grads, shape, Layout::Nc, &params, &saved, &sums)?;
/// assert_eq!(db, [3.0]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn batch_norm_backward_sums<E: Element>(
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    out: &mut [GradSums],
    shape: Shape,
    layout: Layout,
    saved: &SavedStats,
) -> Result<(), Error> {
    let norm = Norm::Batch(saved);
    let params = BnParams::new(0.0);
    let per_channel = [("out", out.len()), ("out", out.len())];
    let (n, count) = validate(x, dy, y, x.len(), shape, layout, &params, norm, per_channel)?;
    let count = count as u64;
    if n == 0 {
        out.fill(GradSums {
            count,
            ..Default::default()
        });
        return Ok(());
    }
    let k = active_typed::<E>();
    let mean = saved.mean;
    let sums = |[dy, dy_xmu]: [f64; 2]| GradSums { count, dy, dy_xmu };
    match geometry(shape, layout) {
        Geometry::Runs(geo) => {
            let par = Par::above_threshold(n, 1);
            for_each_bwd_block_read(x, dy, y, geo, block_width(geo), par, out, |block, o| {
                for (ch, s) in block.channels().zip(o) {
                    *s = sums(block.sums(k, ch, mean[ch]));
                }
            });
        }
        Geometry::Rows { c, .. } => row_grad_sums(k, x, dy, y, c, mean, |s| {
            for (ch, o) in out.iter_mut().enumerate() {
                let (i1, i2) = sum_index(ch, c);
                *o = sums([s[i1], s[i2]]);
            }
        }),
    }
    Ok(())
}

/// The second phase of a split-phase backward: `dx` of this part of the batch, and `dγ`, `dβ`
/// (of the whole batch: the same on every part), from `sums` — every part's
/// [`batch_norm_backward_sums`] merged. One pass over `x` and `dy`. The constants are those
/// of [`batch_norm_backward`](super::batch_norm_backward) with `n = sums[ch].count`, so on a
/// whole batch the two give the same bits. A count below two in `sums` is
/// [`Error::InvalidStats`].
///
/// ```
/// use dropnorm::{BnGrads, BnParams, GradSums, Layout, SavedStats, Shape};
/// use dropnorm::{batch_norm_backward_apply, batch_norm_backward_sums};
/// // Two shards of one channel (1, 2 | 3, 4), mean 2.5, var 1.25.
/// let saved = SavedStats { mean: &[2.5], invstd: &[1.0 / 1.25f32.sqrt()] };
/// let (xa, xb, dy) = ([1.0f32, 2.0], [3.0f32, 4.0], [1.0f32; 2]);
/// let shard = Shape::nc(2, 1);
/// let (mut sa, mut sb) = ([GradSums::default()], [GradSums::default()]);
/// batch_norm_backward_sums(&xa, &dy, None, &mut sa, shard, Layout::Nc, &saved)?;
/// batch_norm_backward_sums(&xb, &dy, None, &mut sb, shard, Layout::Nc, &saved)?;
/// let all = [sa[0].merge(&sb[0])?];
/// let (mut dx, mut dg, mut db) = ([9.0f32; 2], [0.0f32], [0.0f32]);
/// let grads = BnGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut db };
/// let params = BnParams::new(0.0);
/// batch_norm_backward_apply(&xb, &dy, None, grads, shard, Layout::Nc, &params, &saved, &all)?;
/// assert!(dx.iter().all(|v| v.abs() < 1e-6)); // a constant dy has no gradient through bn
/// assert_eq!(db, [4.0]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_apply<E: Element>(
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    grads: BnGrads<E>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    saved: &SavedStats,
    sums: &[GradSums],
) -> Result<(), Error> {
    let norm = Norm::Batch(saved);
    let per_channel = [
        ("grads.dgamma", grads.dgamma.len()),
        ("grads.dbeta", grads.dbeta.len()),
    ];
    let dx_len = grads.dx.len();
    let (n, _) = validate(x, dy, y, dx_len, shape, layout, params, norm, per_channel)?;
    check_counts("sums", shape.c, sums.len(), sums.iter().map(|s| s.count))?;
    let BnGrads { dx, dgamma, dbeta } = grads;
    let uniform = sums
        .first()
        .map(|s| s.count)
        .filter(|&n| sums.iter().all(|s| s.count == n));
    if let (Geometry::Rows { c, .. }, Some(Ok(count))) =
        (geometry(shape, layout), uniform.map(usize::try_from))
    {
        // Every column's constants at once by the one-call backward's vectorized kernel (two
        // f64 divisions a channel: one at a time, most of a wide NC call's fixed cost).
        let k = active_typed::<E>();
        let nt = k.use_nt_from(n, NT_MIN_BYTES_HEAVY);
        scratch_f32(4 * c, |rows| {
            scratch_f64(2 * c, |row_sums| {
                for (ch, s) in sums.iter().enumerate() {
                    let (i1, i2) = sum_index(ch, c);
                    (row_sums[i1], row_sums[i2]) = (s.dy, s.dy_xmu);
                }
                let (mean, invstd) = (saved.mean, saved.invstd);
                active_kernels().bn_bwd_row_consts(
                    row_sums,
                    count,
                    params.gamma,
                    mean,
                    invstd,
                    true,
                    rows,
                    dgamma,
                    dbeta,
                );
            });
            if n > 0 {
                row_dx(k, x, dy, y, dx, None, c, nt, false, rows);
            }
        });
        return Ok(());
    }
    let consts = |ch: usize| {
        let s = &sums[ch];
        bwd_consts(params.gamma, norm, ch, s.count as f64, [s.dy, s.dy_xmu])
    };
    for ch in 0..shape.c {
        let (_, g, b) = consts(ch);
        (dgamma[ch], dbeta[ch]) = (g, b);
    }
    if n == 0 {
        return Ok(());
    }
    let k = active_typed::<E>();
    let nt = k.use_nt_from(n, NT_MIN_BYTES_HEAVY);
    match geometry(shape, layout) {
        Geometry::Runs(geo) => {
            let par = Par::above_threshold(n, 1);
            let width = block_width(geo);
            let dxs = Src::Slice(dy);
            // dγ and dβ are written above: the blocks get their chunks and leave them be.
            for_each_bwd_block(
                x,
                dxs,
                y,
                dx,
                None,
                geo,
                width,
                par,
                dgamma,
                dbeta,
                |mut block, _, _| {
                    for ch in block.channels() {
                        block.dx(k, ch, consts(ch).0, nt, false);
                    }
                },
            );
        }
        Geometry::Rows { c, .. } => {
            scratch_f32(4 * c, |rows| {
                for ch in 0..c {
                    let f = consts(ch).0;
                    let at = [ch, c + ch, 2 * c + ch, 3 * c + ch];
                    (rows[at[0]], rows[at[1]], rows[at[2]], rows[at[3]]) = (f.m, f.a, f.c1, f.c0);
                }
                row_dx(k, x, dy, y, dx, None, c, nt, false, rows);
            });
        }
    }
    Ok(())
}
