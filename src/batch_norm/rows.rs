//! The NC/NHWC normalization pass by rows: per-column constants tiled to a whole number of
//! rows, tasks of whole tiles, blocks ordered for the cache after a statistics pass.

use core::ops::Range;

use super::consts::ChannelConsts;
use super::scratch::scratch_tiles;
use crate::Element;
use crate::dispatch::channels::{Runs, for_each_block_res};
use crate::dispatch::{Src, TypedKernels};
use crate::parallel::{Par, for_each_chunk, threads};

/// `y = (x − k)·a + b` by rows for an NC/NHWC tensor of `c` columns, with `consts(ch)` per
/// column, plus the residual `res` before the ReLU when given; tasks as `par` says. With
/// `last_first` (after a statistics pass over `x`) each task's blocks go last to first (see
/// [`blocks_last_first`]); inference, with nothing of `x` in cache, goes forward, which the
/// prefetchers follow better (NC (4096,1024) on two threads 654 → 635 µs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn normalize_rows<E: Element>(
    k: &TypedKernels<E>,
    x: Src<E>,
    y: &mut [E],
    c: usize,
    res: Option<Src<E>>,
    relu: bool,
    nt: bool,
    par: Par,
    last_first: bool,
    consts: impl ChannelConsts,
) {
    let (tile_rows, l) = tile_layout(c);
    if tile_rows == 1 && !nt && c > WIDE_COLUMNS {
        match res {
            None => return normalize_wide_rows(k, x, None, y, c, relu, par, last_first, consts),
            Some(Src::Slice(r)) => {
                return normalize_wide_rows(k, x, Some(r), y, c, relu, par, last_first, consts);
            }
            // The residual is never the output itself here; the general path handles it.
            Some(Src::InPlace) => {}
        }
    }
    let r = l + 16;
    scratch_tiles(3 * r + 16, |buf| {
        let aff = aligned_like(buf, y.as_ptr(), 3 * r);
        // The first row of the tile a band at a time, then repeated.
        let (k_row, rest) = aff.split_at_mut(r);
        let (a_row, b_row) = rest.split_at_mut(r);
        consts.band(0..c, &mut k_row[..c], &mut a_row[..c], &mut b_row[..c]);
        for row in [k_row, a_row, b_row] {
            for t in 1..tile_rows {
                row.copy_within(0..c, t * c);
            }
        }
        for row in 0..3 {
            aff.copy_within(row * r..row * r + 16, row * r + l);
        }
        let aff: &[f32] = aff;
        let task = tile_task(y.len(), l);
        for_each_chunk(y, task, par, |ti, yc| {
            blocks_last_first(yc.len(), l, nt || !last_first, |b| {
                let range = ti * task + b.start..ti * task + b.end;
                let res = res.map(|s| s.sub(range.clone()));
                k.bn_normalize_tiled(x.sub(range), &mut yc[b], aff, l, res, relu, nt);
            });
        });
    });
}

/// Columns above which a row's constants (`k`, `a`, `b`: 12 bytes a column) are normalized in
/// bands of columns: 2 Ki columns are 24 KiB, half of a 48 KiB L1. A whole 4096-column row of
/// constants (48 KiB) does not stay in L1 beside the data streaming through, and then each
/// vector of output loads three vectors of constants from L2. (Bands of 1 Ki columns were
/// 12–16 % slower on NC (256,4096) f32, one thread, paired roofline: twice the calls.)
const WIDE_COLUMNS: usize = 2048;

/// [`normalize_rows`] for rows wider than [`WIDE_COLUMNS`] with plain stores, a band of
/// columns at a time so that the band's constants stay in L1 while the rows pass through.
///
/// After a statistics pass (`last_first`) tasks are bands of rows, as the statistics' chunks
/// were, so each thread finds its rows in its own cache; within a task the bands and rows go
/// last to first (see [`blocks_last_first`]). Otherwise (inference) tasks are bands of
/// columns over all rows, each computing only its band's constants — an f64 square root and
/// division a column, which for 4096 columns took ~17 µs on one thread before the pass while
/// the other slept — and the bands are as many as a multiple of the threads.
#[allow(clippy::too_many_arguments)]
fn normalize_wide_rows<E: Element>(
    k: &TypedKernels<E>,
    x: Src<E>,
    res: Option<&[E]>,
    y: &mut [E],
    c: usize,
    relu: bool,
    par: Par,
    last_first: bool,
    consts: impl ChannelConsts,
) {
    // Every band of every row starts at the output's lane (c and w are multiples of 16).
    let y_addr = y.as_ptr() as usize;
    if last_first {
        let w = band_width(c, 1);
        let task = tile_task(y.len(), c);
        for_each_chunk(y, task, par, |ti, yc| {
            let rows = yc.len() / c;
            for c0 in (0..c).step_by(w).rev() {
                let cols = c0..(c0 + w).min(c);
                with_band_tile(&consts, cols.clone(), y_addr as *const E, |tile| {
                    for row in (0..rows).rev() {
                        let seg = row * c + cols.start..row * c + cols.end;
                        let at = ti * task + seg.start..ti * task + seg.end;
                        let r = res.map(|r| Src::Slice(&r[at.clone()]));
                        let wb = cols.len();
                        k.bn_normalize_tiled(x.sub(at), &mut yc[seg], tile, wb, r, relu, false);
                    }
                });
            }
        });
        return;
    }
    let workers = if let Par::Tasks(_) = par {
        threads()
    } else {
        1
    };
    let w = band_width(c, workers);
    let geo = Runs {
        n: y.len() / c,
        c,
        hw: 1,
    };
    for_each_block_res(x, res, y, geo, w, par, |mut band| {
        with_band_tile(&consts, band.channels(), y_addr as *const E, |tile| {
            band.normalize_row_bands(k, tile, relu, false)
        });
    });
}

/// Width of the bands of [`normalize_wide_rows`]: at most [`WIDE_COLUMNS`], whole vectors
/// (`c` is a multiple of 16 there), as many bands as a multiple of `workers`.
fn band_width(c: usize, workers: usize) -> usize {
    let bands = c.div_ceil(WIDE_COLUMNS).next_multiple_of(workers);
    c.div_ceil(bands).next_multiple_of(16)
}

/// Runs `f` on a one-row tile of the constants of columns `cols` (`[k; a; b]`, rows of
/// `cols.len() + 16`, the last 16 repeating the first) at the lane of `like`.
fn with_band_tile<E>(
    consts: &impl ChannelConsts,
    cols: Range<usize>,
    like: *const E,
    f: impl FnOnce(&[f32]),
) {
    let wb = cols.len();
    let r = wb + 16;
    scratch_tiles(3 * r + 16, |buf| {
        let tile = aligned_like(buf, like, 3 * r);
        let (k_row, rest) = tile.split_at_mut(r);
        let (a_row, b_row) = rest.split_at_mut(r);
        consts.band(cols, &mut k_row[..wb], &mut a_row[..wb], &mut b_row[..wb]);
        for row in 0..3 {
            tile.copy_within(row * r..row * r + 16, row * r + wb);
        }
        f(tile)
    });
}

/// The `len` values of `buf` (which holds `len + 16`) that start at the same lane of a vector
/// as `like` does of its element type's (a 64-byte boundary for f32, 32 for 16-bit types). The streaming kernels align their stores (see
/// `kernels::stream`), and every task starts a whole number of tiles into the output; a tile
/// at the output's offset is then read with aligned loads too, not loads split across lines.
pub(crate) fn aligned_like<E>(buf: &mut [f32], like: *const E, len: usize) -> &mut [f32] {
    // The lane of `like` within its vector (16 elements of `E`), and of `buf` within its.
    let like_lane = (like as usize / size_of::<E>()) % 16;
    let buf_lane = (buf.as_ptr() as usize / 4) % 16;
    let off = (like_lane + 16 - buf_lane) % 16;
    &mut buf[off..off + len]
}

/// Calls `f` on the blocks of `0..n` (4 Ki values, whole tiles of `l`) from the last to the first when
/// stores are plain. The pass after a statistics pass over the same rows then starts with the
/// rows that pass read last, still in L2, before its own writes evict them; going forward,
/// LRU evicted just the rows it needed next (NC (512,1024) backward 386 → 326 µs). Streaming
/// stores (outputs far larger than the caches) go forward in one block.
pub(crate) fn blocks_last_first(n: usize, l: usize, nt: bool, mut f: impl FnMut(Range<usize>)) {
    let blk = if nt {
        n.max(1)
    } else {
        l * 4096usize.div_ceil(l)
    };
    for b in (0..n.div_ceil(blk)).rev() {
        f(b * blk..((b + 1) * blk).min(n));
    }
}

/// Task length for a pass over `n` values in tiles of `l`: one task per thread, of whole
/// tiles. An even split keeps each thread on the same part of the tensor from call to call,
/// in its own cache when the tensor fits; 64 Ki-value tasks (the previous rule) moved parts
/// between cores and made small tensors slower on 2 threads than on 1.
pub(crate) fn tile_task(n: usize, l: usize) -> usize {
    let per = n.div_ceil(crate::parallel::threads()).max(1);
    l * per.div_ceil(l)
}

/// `(rows, length)` of a tile of per-column constants: a whole number of rows whose length is
/// a multiple of 16 (the kernels step through it a vector at a time) and at least 1 Ki — or
/// exactly 64 when `c` divides 64, which the kernels recognize: with that period the four
/// vectors of their unrolled loop keep their constants in registers.
pub(crate) fn tile_layout(c: usize) -> (usize, usize) {
    if 64 % c == 0 {
        return (64 / c, 64);
    }
    let period = 16 / gcd(c, 16);
    let tile_rows = period * 1024usize.div_ceil(period * c);
    (tile_rows, tile_rows * c)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
