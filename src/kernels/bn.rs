//! Batch-norm kernel bodies: shifted sums (the statistics) and the centered normalization, for
//! channels stored as runs (NCHW: a channel is N runs of H·W) or as columns (NC and NHWC: a
//! block of up to 64 adjacent channels, one lane per channel, down all rows).
//!
//! Statistics are `Σx` in f64 (the mean) and `Σ(x − K)²` in f32 lanes (the variance) for a
//! per-channel pivot `K`, by the one reduction kernel of [`crate::kernels::sums`]. A pivot
//! close to the data keeps `x − K` small (and exact when `x` and `K` are within a factor of two
//! of each other), so the second moment keeps full precision whatever the channel's offset.
//!
//! Normalization is `(x − K)·a + b` with `a = γ·invstd` and `b = β − (mean − K)·a` (folded
//! in f64): centered, since `x − K` is exact or nearly so and `|mean − K|` is at most a few
//! standard deviations (the pivot rule ensures it), so `b` carries no cancellation and a
//! constant channel gives exactly `β`. One subtract and one FMA per element.

use crate::kernels::stream::{
    Lanes, OverTile64, PREFETCH_W_AHEAD, Tile64, WithConsts, line_body, line_head, load,
    load_for_arith, nt_head, store, write_stream, write_stream_unfenced,
};
use crate::kernels::sums::{Sums, Visit, XTerms, prefetch_l2_lines, prefetch_runs};
use crate::simd::elem::Elem;
use crate::simd::{LANES, Simd};

/// `1/sqrt(var + eps)` in f64, rounded to f32 once, and 0 when both are 0 (PyTorch's
/// convention, so a constant channel normalizes to `β` rather than NaN).
#[inline(always)]
pub(crate) fn inv_std(var: f32, eps: f32) -> f32 {
    let v = var as f64 + eps as f64;
    if v == 0.0 {
        0.0
    } else {
        (1.0 / v.sqrt()) as f32
    }
}

/// `out[i] = (γ[i] · inv_std(var[i], eps))` in f64, rounded once (γ = 1 when `gamma` is
/// null): the scale `a` of the inference constants, for a range of channels at once. Plain
/// loops, compiled inside each ISA's entry point so that LLVM vectorizes the f64 square roots
/// and divisions (8 lanes on AVX-512): one channel at a time, 4096 channels took ~17 µs,
/// longer than normalizing a small batch of them.
///
/// # Safety
/// `var` (and `gamma` when not null) valid for `n` reads, `out` for `n` writes.
#[inline(always)]
pub(crate) unsafe fn scale_consts<S: Simd>(
    _: S,
    var: *const f32,
    gamma: *const f32,
    eps: f32,
    out: *mut f32,
    n: usize,
) {
    // SAFETY: forwarded; i < n.
    unsafe {
        if gamma.is_null() {
            for i in 0..n {
                *out.add(i) = inv_std(*var.add(i), eps);
            }
        } else {
            for i in 0..n {
                *out.add(i) = (*gamma.add(i) as f64 * inv_std(*var.add(i), eps) as f64) as f32;
            }
        }
    }
}

/// The training forward's per-channel constants from each channel's batch mean and biased
/// variance (f64, of `count` values), for `n` channels at once, as `channel_consts` makes them
/// one at a time (the same bits): rows of `n` floats in `out` — `k` (the mean rounded to
/// f32), `a = γ·invstd`, `b = β − (mean − k)·a`, the saved variance `var` (as f32) and
/// `invstd` itself (what the call saves). Vectorized like [`scale_consts`]: a division and a
/// square root per channel.
///
/// # Safety
/// `mean`, `var` valid for `n` reads, `gamma` and `beta` too when not null, `out` for `5n`
/// writes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn train_consts<S: Simd>(
    _: S,
    mean: *const f64,
    var: *const f64,
    count: usize,
    gamma: *const f32,
    beta: *const f32,
    eps: f32,
    out: *mut f32,
    n: usize,
) {
    let cnt = count as f64;
    // SAFETY: forwarded; i < n, and the five output rows are [0, 5n).
    unsafe {
        for i in 0..n {
            let (m, v) = (*mean.add(i), *var.add(i));
            // `ChannelStats::from_moments(count, m, v).var()`, rounded as saved.
            let var32 = ((v * cnt) / cnt) as f32;
            let k = m as f32;
            let g = if gamma.is_null() { 1.0 } else { *gamma.add(i) };
            let beta = if beta.is_null() { 0.0 } else { *beta.add(i) };
            let is = inv_std(var32, eps);
            let a = (g as f64 * is as f64) as f32;
            *out.add(i) = k;
            *out.add(n + i) = a;
            *out.add(2 * n + i) = (beta as f64 - (m - k as f64) * a as f64) as f32;
            *out.add(3 * n + i) = var32;
            *out.add(4 * n + i) = is;
        }
    }
}

/// `(mean, biased var)` of `n` values from the shifted sums `[Σx, Σ(x − k)²]` around pivot `k`,
/// and whether the mean lies more than 4σ from `k` (then it is the better pivot): the one
/// definition of this arithmetic, for the channel-at-a-time `from_sums` and the vectorized
/// [`row_moments`], which must agree bit for bit.
#[inline(always)]
pub(crate) fn moments(k: f32, s1: f64, s2: f64, n: f64) -> (f64, f64, bool) {
    let mean = s1 / n;
    let d = mean - k as f64;
    let var = (s2 / n - d * d).max(0.0);
    let better = mean as f32;
    (
        mean,
        var,
        d * d > 16.0 * var && better.is_finite() && better != k,
    )
}

/// Each column's moments from its row sums, in place, for all `c` columns at once: in the
/// sums layout of the row kernels (`[Σx; Σ(x − K)²]` per segment of
/// [`ROW_SEGMENT`](crate::kernels::sums::ROW_SEGMENT) columns), `Σx` becomes the mean and
/// `Σ(x − K)²` the biased variance, by [`moments`] (as `from_sums`: the same bits). With
/// `refine`, a column whose pivot `K` lies more than 4σ from its mean gets the mean as its
/// pivot in `pivots`, and the result says whether any did (the sums must then be taken
/// again). One channel at a time in scalar code (two f64 divisions each) this was most of the
/// fixed cost of a wide training call: NC (2,4096), ~20 of 27 µs.
///
/// # Safety
/// `sums` valid for `2c` reads and writes, `pivots` for `c` reads (and writes).
#[inline(always)]
pub(crate) unsafe fn row_moments<S: Simd>(
    _: S,
    sums: *mut f64,
    pivots: *mut f32,
    c: usize,
    count: usize,
    refine: bool,
) -> bool {
    let n = count as f64;
    let mut again = false;
    let mut c0 = 0;
    while c0 < c {
        let w = crate::kernels::sums::ROW_SEGMENT.min(c - c0);
        // SAFETY: the segment's two rows of w are [2·c0, 2·c0 + 2w) ⊂ [0, 2c); its pivots
        // [c0, c0 + w) ⊂ [0, c).
        unsafe {
            let (s1, s2, p) = (sums.add(2 * c0), sums.add(2 * c0 + w), pivots.add(c0));
            for i in 0..w {
                let k = *p.add(i);
                let (mean, var, far) = moments(k, *s1.add(i), *s2.add(i), n);
                *s1.add(i) = mean;
                *s2.add(i) = var;
                if refine {
                    *p.add(i) = if far { mean as f32 } else { k };
                    again |= far;
                }
            }
        }
        c0 += w;
    }
    again
}

/// Shifted sums of `g` adjacent NCHW channels, each over its `runs` runs of `len` values
/// (run `r` of channel `i` at `r·stride + i·len`): `out[2i] = Σx`, `out[2i+1] = Σ(x − K_i)²`
/// with pivot `pivots[i]` (see [`crate::kernels::sums`]).
///
/// # Safety
/// `x + r·stride + [0, g·len)` readable for every `r < runs`; `pivots` valid for `g` reads and
/// `out` for `2g` writes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sums_runs<S: Simd, E: Elem>(
    s: S,
    x: *const E,
    runs: usize,
    len: usize,
    stride: usize,
    g: usize,
    pivots: *const f32,
    out: *mut f64,
) {
    // SAFETY: `out` holds 2g f64, `pivots` g floats; run (r, ch) is inside the contract.
    unsafe {
        for ch in 0..g {
            let t = XTerms { x: x.add(ch * len) };
            let sums = crate::kernels::sums::sums_runs(s, t, runs, len, stride, *pivots.add(ch));
            *out.add(2 * ch) = sums[0];
            *out.add(2 * ch + 1) = sums[1];
        }
    }
}

/// Per-column `[Σx; Σ(x − K)²]` of `rows` rows of a segment of `w <= ROW_SEGMENT` columns at
/// `x + r·stride`, added to `out[0..w]` and `out[w..2w]` (see
/// [`crate::kernels::sums::sums_rows`]).
///
/// # Safety
/// `x + r·stride + [0, w)` readable for every `r < rows`; `pivots` valid for `w` reads, `out`
/// for `2w` reads and writes; `0 < w <= ROW_SEGMENT`.
#[inline(always)]
pub(crate) unsafe fn sums_rows<S: Simd, E: Elem>(
    s: S,
    x: *const E,
    rows: usize,
    stride: usize,
    w: usize,
    pivots: *const f32,
    out: *mut f64,
) {
    // SAFETY: forwarded.
    unsafe { crate::kernels::sums::sums_rows(s, XTerms { x }, rows, stride, w, pivots, out) }
}

/// The centered affine map of one vector, optionally followed by ReLU.
struct Normalize<S: Simd, E, const RELU: bool> {
    x: *const E,
    k: S::F,
    a: S::F,
    b: S::F,
    /// Residual added before the ReLU, at the same offsets as `x` (null: none).
    res: *const E,
    /// Elements ahead of `x` to prefetch into L2 (0: none).
    prefetch: usize,
}

impl<S: Simd, E: Elem, const RELU: bool> Normalize<S, E, RELU> {
    #[inline(always)]
    fn activate(s: S, o: S::F) -> S::F {
        if RELU { s.relu(o) } else { o }
    }

    /// `(x[i..i+len] − k)·a + b`, then [`Normalize::finish`]: the value every normalization
    /// kernel stores, whichever way it holds its constants.
    ///
    /// # Safety
    /// `x` (and `res`, when not null) valid for reads of `i..i+len`.
    #[inline(always)]
    unsafe fn value(
        s: S,
        x: *const E,
        res: *const E,
        i: usize,
        len: usize,
        [k, a, b]: [S::F; 3],
    ) -> S::F {
        // SAFETY: forwarded.
        unsafe {
            // x and the residual only feed arithmetic, which quiets signalling NaNs.
            let o = s.mul_add(s.sub(load_for_arith(s, x.add(i), len), k), a, b);
            Self::finish(s, o, res, i, len)
        }
    }

    /// `o + res[i..i+len]` when there is a residual, then the activation.
    ///
    /// # Safety
    /// `res`, when not null, valid for reads of `i..i+len`.
    #[inline(always)]
    unsafe fn finish(s: S, o: S::F, res: *const E, i: usize, len: usize) -> S::F {
        if res.is_null() {
            Self::activate(s, o)
        } else {
            // SAFETY: forwarded.
            Self::activate(s, s.add(o, unsafe { load_for_arith(s, res.add(i), len) }))
        }
    }
}

impl<S: Simd, E: Elem, const RELU: bool> Lanes<S> for Normalize<S, E, RELU> {
    const PREFETCH_W: bool = true;

    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        if self.prefetch != 0 {
            s.prefetch_l2(self.x.wrapping_add(i + self.prefetch).cast());
        }
        // SAFETY: the kernel's contract covers x[i..i+len] and res[i..i+len].
        unsafe { Self::value(s, self.x, self.res, i, len, [self.k, self.a, self.b]) }
    }
}

/// Per-channel constants of the normalization `y = (x − k)·a + b`: pivot `k`,
/// `a = γ·invstd`, `b = β − (mean − k)·a`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Affine {
    pub k: f32,
    pub a: f32,
    pub b: f32,
}

/// Normalizes `g` adjacent NCHW channels in address order (as [`sums_runs`] reads them):
/// run `(r, i)` at `r·stride + i·len` gets channel `i`'s constants `aff[i]`, plus the residual
/// `res` at the same offsets (null: none) before the ReLU. Prefetches the element `prefetch`
/// ahead of each one read (0: none) into L2. `x` (or `res`) may equal `y`.
///
/// # Safety
/// `x + r·stride + [0, g·len)` (and `res` likewise, when not null) readable and
/// `y + r·stride + [0, g·len)` writable for every `r < runs`; `aff` valid for `g` reads.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn normalize_runs<S: Simd, E: Elem>(
    s: S,
    x: *const E,
    y: *mut E,
    runs: usize,
    len: usize,
    stride: usize,
    g: usize,
    aff: *const Affine,
    res: *const E,
    relu: bool,
    nt: bool,
    prefetch: usize,
) {
    for r in 0..runs {
        for ch in 0..g {
            // SAFETY: run (r, ch) is within the contract; `write_stream` stays inside it.
            unsafe {
                let f = *aff.add(ch);
                let (k, a, b) = (s.splat(f.k), s.splat(f.a), s.splat(f.b));
                let at = r * stride + ch * len;
                let (xr, yr) = (x.add(at), y.add(at));
                let res = if res.is_null() { res } else { res.add(at) };
                if relu {
                    let op = Normalize::<S, E, true> {
                        x: xr,
                        k,
                        a,
                        b,
                        res,
                        prefetch,
                    };
                    write_stream_unfenced(s, yr, len, nt, op);
                } else {
                    let op = Normalize::<S, E, false> {
                        x: xr,
                        k,
                        a,
                        b,
                        res,
                        prefetch,
                    };
                    write_stream_unfenced(s, yr, len, nt, op);
                }
            }
        }
    }
    if nt {
        s.fence();
    }
}

/// Per-vector work that can store its vector non-temporally (at a 64-byte aligned `i`) or
/// plainly (prefetching ahead for writing, as `Lanes::PREFETCH_W` kernels do).
pub(crate) trait StoreAt<S: Simd> {
    /// Computes and stores elements `i .. i + len`, non-temporally when `nt` (then `len` is
    /// 16 and the address aligned).
    ///
    /// # Safety
    /// As the implementor's constructor requires for offsets below the run length.
    unsafe fn store_at(&mut self, s: S, i: usize, len: usize, nt: bool);
}

/// Stores at the output's cache-line boundaries alongside [`Sums::add_run`](crate::kernels::sums::Sums::add_run), whose vectors sit at
/// the run's own offsets (they fix the order of the sums). Non-temporal stores need the
/// alignment; plain ones are twice as fast in cache with it (a store across two lines costs
/// two), and large buffers start 16 bytes past a line. Interleaved vector by vector, the next
/// channel's reads and this channel's writes overlap (interleaving whole runs instead leaves
/// DRAM without writes during each run's sums, and without reads during its writes). The
/// sums visit vector `i` of the run; this writes the aligned vector `head + i`, each of the
/// run's `body` aligned elements once; [`Shifted::finish`] then writes the unaligned head and
/// tail with plain stores.
pub(crate) struct Shifted<V> {
    op: V,
    head: usize,
    body: usize,
    nt: bool,
}

impl<V> Shifted<V> {
    /// `op` over a run of `len` elements whose output starts at `out`; non-temporal stores
    /// when `nt`.
    #[inline(always)]
    pub(crate) fn new<E>(op: V, out: *const E, len: usize, nt: bool) -> Self {
        // Streaming stores in whole lines only (see `line_head`); plain ones from a vector
        // boundary.
        let (head, body) = if nt {
            let head = line_head(out, len);
            (head, line_body::<E>(len - head))
        } else {
            let head = nt_head(out, len);
            (head, (len - head) / LANES * LANES)
        };
        Shifted { op, head, body, nt }
    }
}

impl<S: Simd, V: StoreAt<S>> Visit<S> for &mut Shifted<V> {
    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, _len: usize) {
        if i < self.body {
            // SAFETY: i is a multiple of 16 below body: [head + i, + 16) lies within the
            // run's aligned body.
            unsafe { self.op.store_at(s, self.head + i, LANES, self.nt) };
        }
    }
}

impl<V> Shifted<V> {
    /// Writes the elements before `head` and after `head + body` of a run of `len`.
    ///
    /// # Safety
    /// As the visitor: the run's inputs and outputs valid for `0..len`.
    #[inline(always)]
    pub(crate) unsafe fn finish<S: Simd>(&mut self, s: S, len: usize)
    where
        V: StoreAt<S>,
    {
        // SAFETY: [0, head) and [head + body, len) lie inside the run, written in pieces of
        // at most 16 (a head or tail is under a line: up to 31 elements of a 16-bit type).
        unsafe {
            let mut i = 0;
            while i < self.head {
                let n = (self.head - i).min(LANES);
                self.op.store_at(s, i, n, false);
                i += n;
            }
            let mut i = self.head + self.body;
            while i < len {
                let n = (len - i).min(LANES);
                self.op.store_at(s, i, n, false);
                i += n;
            }
        }
    }
}

/// Normalizes one vector of a run with plain stores, alongside [`Sums::add_run`](crate::kernels::sums::Sums::add_run).
struct NormalizeStore<S: Simd, E, const RELU: bool> {
    x: *const E,
    y: *mut E,
    k: S::F,
    a: S::F,
    b: S::F,
    /// Residual added before the ReLU (null: none).
    res: *const E,
}

impl<S: Simd, E: Elem, const RELU: bool> StoreAt<S> for NormalizeStore<S, E, RELU> {
    #[inline(always)]
    unsafe fn store_at(&mut self, s: S, i: usize, len: usize, nt: bool) {
        // SAFETY: the caller's offsets are within the run (see `Shifted`).
        unsafe {
            let abc = [self.k, self.a, self.b];
            let o = Normalize::<S, E, RELU>::value(s, self.x, self.res, i, len, abc);
            if nt {
                E::store_nt(s, self.y.add(i), o);
            } else {
                // The hint never faults, past the run or not.
                s.prefetch_w(self.y.wrapping_add(i + PREFETCH_W_AHEAD).cast());
                store(s, self.y.add(i), len, o);
            }
        }
    }
}

/// [`normalize_sum_runs`] with the ReLU chosen at run time (the entry point's signature).
///
/// # Safety
/// As [`normalize_sum_runs`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn normalize_sum_runs_relu<S: Simd, E: Elem>(
    s: S,
    x: *const E,
    y: *mut E,
    runs: usize,
    len: usize,
    stride: usize,
    f: Affine,
    res: *const E,
    relu: bool,
    nt: bool,
    xs: *const E,
    pivot: f32,
) -> [f64; 2] {
    // SAFETY: forwarded.
    unsafe {
        if relu {
            normalize_sum_runs::<S, E, true>(s, x, y, runs, len, stride, f, res, nt, xs, pivot)
        } else {
            normalize_sum_runs::<S, E, false>(s, x, y, runs, len, stride, f, res, nt, xs, pivot)
        }
    }
}

/// Normalizes one NCHW channel (runs at `x`/`y`) and, in the same loop, takes the shifted sums
/// of another channel (runs at `xs`, pivot `pivot`) — bit for bit what [`sums_runs`] returns
/// for it. Overlapping the next channel's reads with this one's stores is what keeps the
/// kernel near copy speed: the normalization alone is store-bound and leaves the load ports
/// and the memory reads idle. With `nt`, non-temporal stores interleaved with the sums vector
/// by vector ([`Shifted`]); the ReLU (after the residual) when `RELU`.
///
/// # Safety
/// For every `r < runs`: `x + r·stride + [0, len)`, `xs + r·stride + [0, len)` (and `res`
/// likewise, when not null) readable, `y + r·stride + [0, len)` writable.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn normalize_sum_runs<S: Simd, E: Elem, const RELU: bool>(
    s: S,
    x: *const E,
    y: *mut E,
    runs: usize,
    len: usize,
    stride: usize,
    f: Affine,
    res: *const E,
    nt: bool,
    xs: *const E,
    pivot: f32,
) -> [f64; 2] {
    let (k, a, b) = (s.splat(f.k), s.splat(f.a), s.splat(f.b));
    let ks = s.splat(pivot);
    let mut acc = Sums::new(s);
    // Without streaming stores in the backend, `nt` means nothing: plain stores.
    let nt = nt && S::NT;
    let pf = prefetch_runs::<E>(runs, len, stride);
    for r in 0..runs {
        let at = r * stride;
        let (xr, yr) = (x.wrapping_add(at), y.wrapping_add(at));
        let res = if res.is_null() {
            res
        } else {
            res.wrapping_add(at)
        };
        let op = NormalizeStore::<S, E, RELU> {
            x: xr,
            y: yr,
            k,
            a,
            b,
            res,
        };
        // The next run of the channel being summed (see `prefetch_l2_lines`).
        if pf && r + 1 < runs {
            prefetch_l2_lines(s, xs.wrapping_add(at + stride), len);
        }
        // SAFETY: run r of all inputs is within the contract.
        unsafe {
            let mut v = Shifted::new(op, yr, len, nt);
            acc.add_run(s, XTerms { x: xs.add(at) }, len, ks, &mut v);
            v.finish(s, len);
        }
    }
    if nt {
        s.fence();
    }
    acc.finish(s)
}

/// Centered normalization with periodic per-element constants: `y[i] = (x[i] − k[j])·a[j] +
/// b[j]` with `j = i mod l`, the constants read from `aff = [k; a; b]` (rows of `l + 16`
/// floats, the last 16 repeating the first, so a vector starting anywhere below `l` reads
/// contiguously). `j` is tracked incrementally: `write_stream` visits `i` in increasing steps
/// of at most 16.
struct NormalizeWith<S: Simd, E, const RELU: bool, const TRACK: bool> {
    x: *const E,
    res: *const E,
    aff: *const f32,
    l: usize,
    j: usize,
    last: usize,
    _s: core::marker::PhantomData<S>,
}

impl<S: Simd, E: Elem, const RELU: bool, const TRACK: bool> Lanes<S>
    for NormalizeWith<S, E, RELU, TRACK>
{
    const PREFETCH_W: bool = true;

    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        let j = if TRACK {
            self.j += i - self.last;
            self.last = i;
            if self.j >= self.l {
                self.j -= self.l;
            }
            self.j
        } else {
            i
        };
        let r = self.l + LANES;
        // SAFETY: the kernel's contract covers x[i..i+len]; j < l and len <= 16 keep the
        // constant loads inside rows of l + 16.
        unsafe {
            let k = load(s, self.aff.add(j), len);
            let a = load(s, self.aff.add(r + j), len);
            let b = load(s, self.aff.add(2 * r + j), len);
            Normalize::<S, E, RELU>::value(s, self.x, self.res, i, len, [k, a, b])
        }
    }
}

/// [`NormalizeWith`] for constants of period 64 (see [`OverTile64`]).
struct NormalizeTile64<S: Simd, E, const RELU: bool> {
    x: *const E,
    res: *const E,
    _s: core::marker::PhantomData<S>,
}

impl<S: Simd, E: Elem, const RELU: bool> WithConsts<S, 3> for NormalizeTile64<S, E, RELU> {
    #[inline(always)]
    unsafe fn apply(&self, s: S, i: usize, len: usize, consts: [S::F; 3]) -> S::F {
        // SAFETY: the kernel's contract covers x[i..i+len] (and res).
        unsafe { Normalize::<S, E, RELU>::value(s, self.x, self.res, i, len, consts) }
    }
}

/// Normalizes `n` contiguous elements with constants of period `l` (a multiple of 16), laid
/// out as in [`NormalizeWith`]: the NC/NHWC case, where whole rows get their columns'
/// constants, tiled over a whole number of rows. The residual `res` (null: none) is added
/// before the ReLU. `x` (or `res`) may equal `y`.
///
/// # Safety
/// `x` (and `res`, when not null) valid for `n` reads, `y` for `n` writes, `aff` for
/// `3(l + 16)` reads, `l >= 16`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn normalize_tiled<S: Simd, E: Elem>(
    s: S,
    x: *const E,
    y: *mut E,
    n: usize,
    aff: *const f32,
    l: usize,
    res: *const E,
    relu: bool,
    nt: bool,
) {
    // SAFETY: forwarded.
    unsafe {
        if relu {
            tiled::<S, E, true>(s, x, y, n, aff, l, res, nt)
        } else {
            tiled::<S, E, false>(s, x, y, n, aff, l, res, nt)
        }
    }
}

/// [`normalize_tiled`] for one ReLU setting. With plain stores, one stream per tile, so the
/// constants sit at the stream's own offsets; with non-temporal stores one stream for all
/// (each stream peels a misaligned head), the offset in the tile tracked as it goes — a short
/// dependency chain that only costs when the data is in cache, which is when stores are plain.
///
/// # Safety
/// As [`normalize_tiled`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tiled<S: Simd, E: Elem, const RELU: bool>(
    s: S,
    x: *const E,
    y: *mut E,
    n: usize,
    aff: *const f32,
    l: usize,
    res: *const E,
    nt: bool,
) {
    let pd = core::marker::PhantomData;
    // SAFETY: `write_stream` passes i + len <= n (or the tile's length) in increasing order.
    unsafe {
        if l == 64 {
            let op = OverTile64 {
                kernel: NormalizeTile64::<S, E, RELU> { x, res, _s: pd },
                tile: Tile64::new(s, aff, y, n),
            };
            write_stream(s, y, n, nt, op);
        } else if nt {
            let op = NormalizeWith::<S, E, RELU, true> {
                x,
                res,
                aff,
                l,
                j: 0,
                last: 0,
                _s: pd,
            };
            write_stream(s, y, n, true, op);
        } else {
            for t0 in (0..n).step_by(l) {
                let res = if res.is_null() { res } else { res.add(t0) };
                let op = NormalizeWith::<S, E, RELU, false> {
                    x: x.add(t0),
                    res,
                    aff,
                    l,
                    j: 0,
                    last: 0,
                    _s: pd,
                };
                write_stream(s, y.add(t0), l.min(n - t0), false, op);
            }
        }
    }
}
