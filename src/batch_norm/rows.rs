//! NC and NHWC: channels are the columns of `rows` rows of `c` values.
//!
//! Walking a column block down all rows reads one or a few cache lines per row at a stride of
//! `c` floats — a power of two in most networks, which maps every row to the same few cache
//! sets and defeats both the caches and the prefetchers. So these layouts are processed by
//! rows, which are contiguous: one pass for the statistics (row chunks in parallel, partial
//! sums merged in a fixed order) and one for the normalization. For tensors larger than the
//! caches that reads `x` twice from memory.

use core::cell::RefCell;
use core::ops::Range;

use super::stats::from_sums;
use crate::kernels::bn::Affine;
use crate::kernels::sums::ROW_SEGMENT;
use crate::parallel::{Par, for_each_chunk};
use crate::simd::{Kernels, Src};

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

macro_rules! scratch_fn {
    ($name:ident, $t:ty) => {
        /// Runs `f` on a scratch buffer of `len` values, reused across calls on this thread
        /// (contents unspecified: callers write before they read). The thread keeps a stack
        /// of buffers, one per level of nesting — a call made from a rayon task that a worker
        /// picked up while an outer call on that thread holds its buffer takes the next — so
        /// nothing is allocated once the deepest nesting and largest size have been seen.
        pub(crate) fn $name<R>(len: usize, f: impl FnOnce(&mut [$t]) -> R) -> R {
            thread_local! {
                static FREE: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) };
            }
            // The stack is borrowed only to pop and push, never across `f`.
            let mut buf = FREE
                .try_with(|s| s.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_default();
            if buf.len() < len {
                buf.resize(len, 0 as $t);
            }
            let r = f(&mut buf[..len]);
            // During thread teardown the stack may be gone: the buffer is then just dropped.
            // (`borrow_mut` cannot fail: no borrow outlives these two statements.)
            let _ = FREE.try_with(|s| s.borrow_mut().push(buf));
            r
        }
    };
}
scratch_fn!(scratch_f64, f64);
scratch_fn!(scratch_f32, f32);
// The tiled constants, taken while `scratch_f32` may be in use by the caller.
scratch_fn!(scratch_tiles, f32);

/// Where channel `ch`'s two sums sit in a per-channel sums buffer: the layout of the kernel's
/// output, `[s1; s2]` per segment of `ROW_SEGMENT` columns.
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

/// Per-column sums of a tensor of `rows` rows of `c`, taken chunk by chunk and merged in chunk
/// order into `sums` (`2c`): `sum_rows(range, part)` adds the sums of the rows `range` into
/// `part` (`2c`, zeroed), in the [`sum_index`] layout. `partials` is scratch of
/// `stats_chunks(rows, c) · 2c`. The chunks depend on the shape only, so the bits do not
/// depend on the thread count; each thread takes a contiguous run of them.
pub(crate) fn chunked_sums(
    rows: usize,
    c: usize,
    sums: &mut [f64],
    partials: &mut [f64],
    sum_rows: impl Fn(Range<usize>, &mut [f64]) + Sync + Send,
) {
    let chunk = stats_chunk_rows(rows, c);
    let chunks = rows.div_ceil(chunk);
    let par = Par::above_threshold(rows * c, per_thread(chunks));
    for_each_chunk(&mut partials[..chunks * 2 * c], 2 * c, par, |ci, part| {
        // Zeroed by the task that fills it: in parallel, and in that core's cache.
        part.fill(0.0);
        sum_rows(ci * chunk..((ci + 1) * chunk).min(rows), part);
    });
    sums[..2 * c].fill(0.0);
    for part in partials[..chunks * 2 * c].chunks_exact(2 * c) {
        for (t, p) in sums.iter_mut().zip(part) {
            *t += p;
        }
    }
}

/// Shifted sums of every column of `x` (`c` columns) around `pivots`, into `sums` (`2c`, in
/// the [`sum_index`] layout); `partials` is scratch of `stats_chunks(rows, c) · 2c`.
fn column_sums(
    k: &Kernels,
    x: &[f32],
    c: usize,
    pivots: &[f32],
    sums: &mut [f64],
    partials: &mut [f64],
) {
    chunked_sums(x.len() / c, c, sums, partials, |rg, part| {
        let xr = &x[rg.start * c..rg.end * c];
        for c0 in (0..c).step_by(ROW_SEGMENT) {
            let w = ROW_SEGMENT.min(c - c0);
            let out = &mut part[2 * c0..2 * c0 + 2 * w];
            k.bn_sums_rows(xr, rg.len(), c, c0, w, &pivots[c0..c0 + w], out);
        }
    });
}

/// Calls `f(ch, (pivot, mean, biased var))` for every column of `x` (`c` columns, at least
/// one row), with the same pivot rule as the NCHW path (the first row's value; the mean if
/// that lies more than 4σ away).
/// `pivots` is scratch of `c` floats.
pub(crate) fn row_moments(
    k: &Kernels,
    x: &[f32],
    c: usize,
    pivots: &mut [f32],
    mut f: impl FnMut(usize, (f32, f64, f64)),
) {
    let count = x.len() / c;
    pivots.copy_from_slice(&x[..c]);
    let chunks = stats_chunks(count, c);
    {
        scratch_f64((1 + chunks) * 2 * c, |buf| {
            let (sums, partials) = buf.split_at_mut(2 * c);
            column_sums(k, x, c, pivots, sums, partials);
            let mut again = false;
            for (ch, p) in pivots.iter_mut().enumerate() {
                let (i1, i2) = sum_index(ch, c);
                if let (_, Some(better)) = from_sums(*p, [sums[i1], sums[i2]], count) {
                    *p = better;
                    again = true;
                }
            }
            if again {
                column_sums(k, x, c, pivots, sums, partials);
            }
            for (ch, &p) in pivots.iter().enumerate() {
                let (i1, i2) = sum_index(ch, c);
                f(ch, from_sums(p, [sums[i1], sums[i2]], count).0);
            }
        })
    }
}

/// [`row_moments`] with its own pivot scratch.
pub(crate) fn row_moments_alone(
    k: &Kernels,
    x: &[f32],
    c: usize,
    f: impl FnMut(usize, (f32, f64, f64)),
) {
    scratch_f32(c, |pivots| row_moments(k, x, c, pivots, f));
}

/// Training forward for NC/NHWC: statistics by rows, then `y` normalized by rows with
/// `consts(ch, (pivot, mean, var))`, which also records each channel's saved statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_rows(
    k: &Kernels,
    x: Src,
    res: Option<&[f32]>,
    y: &mut [f32],
    c: usize,
    relu: bool,
    nt: bool,
    mut consts: impl FnMut(usize, (f32, f64, f64)) -> Affine,
) {
    scratch_f32(4 * c, |buf| {
        let (pivots, aff) = buf.split_at_mut(c);
        let src: &[f32] = match x {
            Src::Slice(xs) => xs,
            Src::InPlace => y,
        };
        row_moments(k, src, c, pivots, |ch, m| {
            let f = consts(ch, m);
            (aff[3 * ch], aff[3 * ch + 1], aff[3 * ch + 2]) = (f.k, f.a, f.b);
        });
        let aff: &[f32] = aff;
        let par = Par::above_threshold(y.len(), 1);
        normalize_rows(k, x, y, c, res.map(Src::Slice), relu, nt, par, true, |ch| {
            Affine {
                k: aff[3 * ch],
                a: aff[3 * ch + 1],
                b: aff[3 * ch + 2],
            }
        });
    });
}

/// `y = (x − k)·a + b` by rows for an NC/NHWC tensor of `c` columns, with `consts(ch)` per
/// column, plus the residual `res` before the ReLU when given; tasks as `par` says. With
/// `last_first` (after a statistics pass over `x`) each task's blocks go last to first (see
/// [`blocks_last_first`]); inference, with nothing of `x` in cache, goes forward, which the
/// prefetchers follow better (NC (4096,1024) on two threads 654 → 635 µs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn normalize_rows(
    k: &Kernels,
    x: Src,
    y: &mut [f32],
    c: usize,
    res: Option<Src>,
    relu: bool,
    nt: bool,
    par: Par,
    last_first: bool,
    consts: impl Fn(usize) -> Affine,
) {
    let (tile_rows, l) = tile_layout(c);
    let r = l + 16;
    scratch_tiles(3 * r + 16, |buf| {
        let aff = aligned_like(buf, y.as_ptr(), 3 * r);
        for ch in 0..c {
            let f = consts(ch);
            for t in 0..tile_rows {
                let at = t * c + ch;
                aff[at] = f.k;
                aff[r + at] = f.a;
                aff[2 * r + at] = f.b;
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

/// The `len` values of `buf` (which holds `len + 16`) that start at the same offset from a
/// 64-byte boundary as `like`. The streaming kernels align their stores (see
/// `kernels::stream`), and every task starts a whole number of tiles into the output; a tile
/// at the output's offset is then read with aligned loads too, not loads split across lines.
pub(crate) fn aligned_like(buf: &mut [f32], like: *const f32, len: usize) -> &mut [f32] {
    let lanes = |p: *const f32| (p as usize / 4) % 16;
    let off = (lanes(like) + 16 - lanes(buf.as_ptr())) % 16;
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
