//! Per-channel moments: how a tensor's channels lie in memory, the sums kernels' output
//! turned into `(pivot, mean, var)` with the pivot rule, and the NC/NHWC statistics pass by
//! rows (chunks fixed by the shape, merged in chunk order).
//!
//! NC and NHWC channels are the columns of `rows` rows of `c` values. Walking a column down
//! all rows reads a cache line per row at a stride of `c` floats — a power of two in most
//! networks, which maps every row to the same few cache sets and defeats both the caches and
//! the prefetchers — so their statistics are taken by rows, which are contiguous.

use core::ops::Range;

use super::scratch::{scratch_f32, scratch_f64};
use crate::Element;
use crate::dispatch::channels::{Block, Runs};
use crate::dispatch::{TypedKernels, active_kernels};
use crate::kernels::sums::ROW_SEGMENT;
use crate::parallel::{Par, for_each_chunk};
use crate::{Error, Layout, Shape};

/// Channels per block at most (the column kernels' 64 lanes).
pub(crate) const MAX_BLOCK: usize = 64;

/// Values per channel, checked (the caller's shape may be one whose element count is 0 but
/// whose `n·h·w` overflows).
pub(crate) fn count_per_channel(shape: Shape) -> Result<usize, Error> {
    shape.per_channel()
}

/// How the channels of a tensor lie in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Geometry {
    /// NCHW: each channel is `n` runs of `h·w`.
    Runs(Runs),
    /// NC and NHWC: each channel is a column of `rows` rows of `c`.
    Rows { rows: usize, c: usize },
}

/// The geometry of a validated `shape`. NCHW with `H·W = 1` is NC.
pub(crate) fn geometry(shape: Shape, layout: Layout) -> Geometry {
    let hw = shape.h * shape.w;
    match layout {
        Layout::Nchw if hw != 1 => Geometry::Runs(Runs {
            n: shape.n,
            c: shape.c,
            hw,
        }),
        _ => Geometry::Rows {
            rows: shape.n * hw,
            c: shape.c,
        },
    }
}

/// Channels per NCHW block (one task). The result does not depend on it (every channel's
/// arithmetic is the same in any block). The training forward pipelines the channels of a
/// block (the next one's statistics in the loop that writes this one), so blocks are as
/// large as leave every thread two of them.
pub(crate) fn block_width(geo: Runs) -> usize {
    geo.c
        .div_ceil(2 * crate::parallel::threads())
        .clamp(1, MAX_BLOCK)
}

/// `(pivot, mean, biased var)` of each channel of `block`, in f64, into `out`.
///
/// The pivot is the channel's first value; if the mean lies more than 4σ from it (an outlier
/// pivot), the sums are taken again around the mean, so the cancellation in
/// `Σv²/n − (Σv/n)²` never costs more than a factor of 17 in relative precision.
pub(crate) fn moments<E: Element>(
    k: &TypedKernels<E>,
    block: &Block<E>,
    count: usize,
    out: &mut [(f32, f64, f64)],
) {
    let chans = block.channels();
    let w = chans.len();
    let mut pivots = [0.0f32; MAX_BLOCK];
    for (p, ch) in pivots.iter_mut().zip(chans.clone()) {
        *p = block.first(ch);
    }
    let mut sums = [[0.0f64; 2]; MAX_BLOCK];
    block.sums(k, &pivots[..w], &mut sums[..w]);
    let mut again = false;
    for i in 0..w {
        let (m, better) = from_sums(pivots[i], sums[i], count);
        out[i] = m;
        if let Some(b) = better {
            pivots[i] = b;
            again = true;
        }
    }
    if again {
        block.sums(k, &pivots[..w], &mut sums[..w]);
        for i in 0..w {
            out[i] = from_sums(pivots[i], sums[i], count).0;
        }
    }
}

/// `(pivot, mean, biased var)` from the sums `[Σx, Σ(x − pivot)²]` of `count` values, and a
/// better pivot (the mean) when this one lies more than 4σ away.
///
/// The mean is `Σx / n` from the f64 sum of `x` itself, so it is accurate to f64 rounding
/// whatever the spread; the variance is `Σ(x − K)²/n − (mean − K)²`, whose cancellation the
/// pivot rule bounds.
pub(crate) fn from_sums(
    pivot: f32,
    sums: [f64; 2],
    count: usize,
) -> ((f32, f64, f64), Option<f32>) {
    let (mean, var, far) = crate::kernels::bn::moments(pivot, sums[0], sums[1], count as f64);
    ((pivot, mean, var), far.then_some(mean as f32))
}

/// Rows per statistics chunk of a tensor of `rows` rows of `c`: about a sixteenth of the
/// tensor (enough tasks for the threads, each taking a contiguous sixteenth-multiple that
/// matches its part of the normalization pass), at most 256 Ki values (1 MiB: the chunk is
/// walked once per 64-column segment and must stay in L2), a multiple of 64 rows. It depends
/// on the shape only — never on the thread count — because the chunks fix the order of the
/// additions. (Merging costs `2c` additions per chunk: small next to the chunk's own work.)
pub(crate) fn stats_chunk_rows(rows: usize, c: usize) -> usize {
    let values = (rows.saturating_mul(c) / 16).min(1 << 18);
    (values / c.max(1)).div_ceil(64).max(1) * 64
}

/// Where channel `ch`'s two sums sit in a per-channel sums buffer: the layout of the kernel's
/// output, `[s1; s2]` per segment of `ROW_SEGMENT` columns.
#[inline]
pub(crate) fn sum_index(ch: usize, c: usize) -> (usize, usize) {
    let c0 = ch / ROW_SEGMENT * ROW_SEGMENT;
    let w = ROW_SEGMENT.min(c - c0);
    (2 * c0 + (ch - c0), 2 * c0 + w + (ch - c0))
}

/// Chunks per task so that each thread takes one contiguous run of the `chunks`: the same
/// rows the normalization pass ([`tile_task`]) gives it, which then finds them in its own
/// cache.
fn per_thread(chunks: usize) -> usize {
    // Rounded down: rayon does not split a range below this many, so rounding up would leave
    // an odd count in one task.
    (chunks / crate::parallel::threads()).max(1)
}

/// Statistics chunks of a tensor of `rows` rows of `c`.
pub(crate) fn stats_chunks(rows: usize, c: usize) -> usize {
    rows.div_ceil(stats_chunk_rows(rows, c))
}

/// Bytes read in a statistics chunk from which [`chunked_sums`] splits its segments among
/// the threads when there are fewer chunks than threads. Paired roofline, NC (64,4096), 2
/// threads: from 2 MiB to 1 MiB the f32 training forward ×1.73 and the 16-bit backward
/// ×1.9–2.0; from 1 MiB to 512 KiB the 16-bit training forward ×1.56–1.87, the rest within
/// noise. (Before the per-channel work was vectorized, splitting 1 MiB measured 0.82–0.90.)
const SPLIT_CHUNK_MIN_BYTES: usize = 1 << 19;

/// Per-column sums of a tensor of `rows` rows of `c`, taken chunk by chunk and merged in chunk
/// order into `sums` (`2c`): `sum_segment(range, c0, w, part)` sums columns `c0 .. c0 + w`
/// (one [`ROW_SEGMENT`] at most) of the rows `range` into `part` (`2w`, zeroed), in the
/// [`sum_index`] layout. `partials` is scratch of `stats_chunks(rows, c) · 2c`. The chunks
/// depend on the shape only, and each (chunk, segment) is one call whoever makes it, so the
/// bits do not depend on the thread count; each thread takes a contiguous run of chunks, and
/// where there are fewer chunks than threads (few, wide rows: NC (64,4096) is one chunk) the
/// chunks' segments are split among the threads too.
///
/// `read`: the bytes each value of the tensor costs the sums to read (all inputs).
pub(crate) fn chunked_sums(
    rows: usize,
    c: usize,
    read: usize,
    sums: &mut [f64],
    partials: &mut [f64],
    sum_segment: impl Fn(Range<usize>, usize, usize, &mut [f64]) + Sync + Send,
) {
    let chunk = stats_chunk_rows(rows, c);
    let chunks = rows.div_ceil(chunk);
    let par = Par::above_threshold(rows * c, per_thread(chunks));
    let segments = c.div_ceil(ROW_SEGMENT);
    let workers = if let Par::Tasks(_) = par {
        crate::parallel::threads()
    } else {
        1
    };
    // Segments per task: all of a chunk's, unless the chunks are too few to go round and each
    // is large enough to be worth a fork (below some size waking the other worker costs
    // about what half of the chunk saves; the backward reads x and dy, twice the bytes).
    let bytes = chunk.min(rows).saturating_mul(c).saturating_mul(read);
    let per_task = if chunks < workers && bytes >= SPLIT_CHUNK_MIN_BYTES {
        segments.div_ceil(workers.div_ceil(chunks))
    } else {
        segments
    };
    let inner = if per_task < segments {
        Par::Tasks(1)
    } else {
        Par::Seq
    };
    let group = 2 * per_task * ROW_SEGMENT;
    // One chunk (few rows) sums straight into `sums`: the same bits (the merge would add its
    // values to +0.0, and the kernels never leave a −0.0 to change), without a pass over
    // `partials` and `sums` that was part of a wide call's fixed cost.
    let single = chunks == 1;
    let target = if single {
        &mut sums[..2 * c]
    } else {
        &mut partials[..chunks * 2 * c]
    };
    for_each_chunk(target, 2 * c, par, |ci, part| {
        let range = ci * chunk..((ci + 1) * chunk).min(rows);
        // The part's segments are [Σ1; Σ2] blocks of 2w at 2·c0: a run of them is contiguous.
        for_each_chunk(part, group, inner, |gi, run| {
            // Zeroed by the task that fills it: in parallel, and in that core's cache.
            run.fill(0.0);
            let first = gi * per_task * ROW_SEGMENT;
            for c0 in (first..c.min(first + per_task * ROW_SEGMENT)).step_by(ROW_SEGMENT) {
                let w = ROW_SEGMENT.min(c - c0);
                let at = 2 * (c0 - first);
                sum_segment(range.clone(), c0, w, &mut run[at..at + 2 * w]);
            }
        });
    });
    if single {
        return;
    }
    sums[..2 * c].fill(0.0);
    for part in partials[..chunks * 2 * c].chunks_exact(2 * c) {
        for (t, p) in sums.iter_mut().zip(part) {
            *t += p;
        }
    }
}

/// Shifted sums of every column of `x` (`c` columns) around `pivots`, into `sums` (`2c`, in
/// the [`sum_index`] layout); `partials` is scratch of `stats_chunks(rows, c) · 2c`.
fn column_sums<E: Element>(
    k: &TypedKernels<E>,
    x: &[E],
    c: usize,
    pivots: &[f32],
    sums: &mut [f64],
    partials: &mut [f64],
) {
    chunked_sums(
        x.len() / c,
        c,
        size_of::<E>(),
        sums,
        partials,
        |rg, c0, w, out| {
            let xr = &x[rg.start * c..rg.end * c];
            k.bn_sums_rows(xr, rg.len(), c, c0, w, &pivots[c0..c0 + w], out);
        },
    );
}

/// Calls `f(c0, pivots, means, vars)` for every segment of [`ROW_SEGMENT`] columns of `x`
/// (`c` columns, at least one row) from column `c0`, with each column's pivot, mean and biased
/// variance, by the same pivot rule as the NCHW path (the first row's value; the mean if that
/// lies more than 4σ away). By segments, as the sums lie: a call per column (a closure
/// writing two f64) was a fifth of a wide training call's fixed cost (NC (2,4096)).
/// `pivots` is scratch of `c` floats.
pub(crate) fn row_moments<E: Element>(
    k: &TypedKernels<E>,
    x: &[E],
    c: usize,
    pivots: &mut [f32],
    mut f: impl FnMut(usize, &[f32], &[f64], &[f64]),
) {
    let count = x.len() / c;
    for (p, v) in pivots.iter_mut().zip(&x[..c]) {
        *p = v.widen();
    }
    let chunks = stats_chunks(count, c);
    {
        scratch_f64((1 + chunks) * 2 * c, |buf| {
            let (sums, partials) = buf.split_at_mut(2 * c);
            column_sums(k, x, c, pivots, sums, partials);
            // Each channel's moments replace its sums (`from_sums`, all channels at once).
            let kernels = active_kernels();
            if kernels.bn_row_moments(sums, pivots, count, true) {
                column_sums(k, x, c, pivots, sums, partials);
                kernels.bn_row_moments(sums, pivots, count, false);
            }
            for c0 in (0..c).step_by(ROW_SEGMENT) {
                let w = ROW_SEGMENT.min(c - c0);
                let (mean, var) = sums[2 * c0..2 * c0 + 2 * w].split_at(w);
                f(c0, &pivots[c0..c0 + w], mean, var);
            }
        })
    }
}

/// [`row_moments`] with its own pivot scratch.
pub(crate) fn row_moments_alone<E: Element>(
    k: &TypedKernels<E>,
    x: &[E],
    c: usize,
    f: impl FnMut(usize, &[f32], &[f64], &[f64]),
) {
    scratch_f32(c, |pivots| row_moments(k, x, c, pivots, f));
}
