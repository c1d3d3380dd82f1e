//! Batch-norm kernel bodies: shifted sums (the statistics) and the centered normalization, for
//! channels stored as runs (NCHW: a channel is N runs of H·W) or as columns (NC and NHWC: a
//! block of up to 64 adjacent channels, one lane per channel, down all rows).
//!
//! Statistics are sums of `v = x − K` and `v²` for a per-channel pivot `K`. Subtracting a pivot
//! close to the data keeps `v` small (and exact when `x` and `K` are within a factor of two of
//! each other), so the sums keep full precision whatever the channel's offset. The f32 lane
//! sums are flushed to f64 totals every [`FLUSH_VECTORS`] vectors in a fixed order, so the
//! result depends only on the data, never on threads.
//!
//! Normalization is `(x − K)·a + b` with `a = γ·invstd` and `b = β − (mean − K)·a` (folded
//! in f64): centered, since `x − K` is exact or nearly so and `|mean − K|` is at most a few
//! standard deviations (the pivot rule ensures it), so `b` carries no cancellation and a
//! constant channel gives exactly `β`. One subtract and one FMA per element.

use crate::kernels::stream::{
    Lanes, OverTile64, PREFETCH_W_AHEAD, Tile64, WithConsts, load, nt_head, store, write_stream,
    write_stream_unfenced,
};
use crate::simd::{LANES, Simd};

/// f32 lane sums are flushed to f64 after at most this many vectors (each of four
/// accumulators then holds at most 64 terms: ~1e-6 relative error before the f64 sum).
const FLUSH_VECTORS: usize = 256;

/// Rows between flushes in the column kernels (one term per row per lane).
const FLUSH_ROWS: usize = 64;

/// Bits `0..n` set.
#[inline(always)]
fn low_bits(n: usize) -> u16 {
    ((1u32 << n) - 1) as u16
}

/// Sum of the 16 lanes in f64, as a balanced tree (short dependency chains).
#[inline(always)]
fn lanes_sum_f64(l: [f32; 16]) -> f64 {
    let mut t = [0.0f64; 8];
    for (i, ti) in t.iter_mut().enumerate() {
        *ti = l[2 * i] as f64 + l[2 * i + 1] as f64;
    }
    ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
}

/// Adds four pairs of accumulators to the f64 totals by a fixed tree, and zeroes them. (A
/// function, not a closure: closures carry no inline attribute, and one left out of line
/// would take its intrinsics out of the `#[target_feature]` context.)
#[inline(always)]
fn flush4<S: Simd>(s: S, a1: &mut [S::F; 4], a2: &mut [S::F; 4], tot: &mut [f64; 2]) {
    let r1 = s.add(s.add(a1[0], a1[1]), s.add(a1[2], a1[3]));
    let r2 = s.add(s.add(a2[0], a2[1]), s.add(a2[2], a2[3]));
    tot[0] += lanes_sum_f64(s.to_array(r1));
    tot[1] += lanes_sum_f64(s.to_array(r2));
    let z = s.splat(0.0);
    *a1 = [z; 4];
    *a2 = [z; 4];
}

/// Work done alongside the statistics loop of [`run_sums`], at the same vector positions.
pub(crate) trait Visit<S: Simd> {
    /// Called once per vector `[i, i + len)` of the run, in order.
    ///
    /// # Safety
    /// As the implementor's constructor requires for offsets below the run length.
    unsafe fn at(&mut self, s: S, i: usize, len: usize);
}

/// Nothing alongside.
pub(crate) struct NoVisit;

impl<S: Simd> Visit<S> for NoVisit {
    #[inline(always)]
    unsafe fn at(&mut self, _: S, _: usize, _: usize) {}
}

/// The running sums of one channel: four pairs of f32 vector accumulators and their f64
/// totals.
struct RunAcc<S: Simd> {
    a1: [S::F; 4],
    a2: [S::F; 4],
    pending: usize,
    tot: [f64; 2],
}

impl<S: Simd> RunAcc<S> {
    #[inline(always)]
    fn new(s: S) -> Self {
        let z = s.splat(0.0);
        RunAcc {
            a1: [z; 4],
            a2: [z; 4],
            pending: 0,
            tot: [0.0; 2],
        }
    }

    /// `[Σ(x − K), Σ(x − K)²]` of everything added.
    #[inline(always)]
    fn finish(mut self, s: S) -> [f64; 2] {
        flush4(s, &mut self.a1, &mut self.a2, &mut self.tot);
        self.tot
    }
}

/// Adds one run of `len` values to a channel's sums `acc`.
///
/// The order of the additions is the crate's canonical one, whatever runs alongside: within a
/// run, vector `j` (from the run's start; the last may be partial) goes to accumulator
/// `j mod 4`; the accumulators are flushed to f64, by a fixed tree, once 256 vectors have
/// gathered (checked every four vectors and at the end of each run) and when the channel is
/// done. The fused kernels below therefore produce the same bits as the plain ones.
///
/// # Safety
/// `p..p+len` must be readable; `visit` safe to call for every vector of `0..len`.
#[inline(always)]
unsafe fn run_sums<S: Simd>(
    s: S,
    acc: &mut RunAcc<S>,
    p: *const f32,
    len: usize,
    k: S::F,
    mut visit: impl Visit<S>,
) {
    let mut i = 0;
    // A local copy: kept in the struct, LLVM packed the counter into a vector register with a
    // long dependency chain through every iteration.
    let mut pending = acc.pending;
    // SAFETY: every load stays within p..p+len; `visit` gets the same in-run positions.
    unsafe {
        while i + 4 * LANES <= len {
            for u in 0..4 {
                visit.at(s, i + u * LANES, LANES);
                let v = s.sub(s.loadu(p.add(i + u * LANES)), k);
                acc.a1[u] = s.add(acc.a1[u], v);
                acc.a2[u] = s.mul_add(v, v, acc.a2[u]);
            }
            i += 4 * LANES;
            pending += 4;
            if pending >= FLUSH_VECTORS {
                flush4(s, &mut acc.a1, &mut acc.a2, &mut acc.tot);
                pending = 0;
            }
        }
        let mut u = 0;
        while i < len {
            let n = (len - i).min(LANES);
            visit.at(s, i, n);
            // A partial load is zero past the run; zero − K must not count, so mask it.
            let v = s.sub(load(s, p.add(i), n), k);
            let v = if n < LANES {
                s.mul_keep(low_bits(n), v, s.splat(1.0))
            } else {
                v
            };
            acc.a1[u] = s.add(acc.a1[u], v);
            acc.a2[u] = s.mul_add(v, v, acc.a2[u]);
            u += 1;
            i += n;
        }
        pending += u;
        if pending >= FLUSH_VECTORS {
            flush4(s, &mut acc.a1, &mut acc.a2, &mut acc.tot);
            pending = 0;
        }
    }
    acc.pending = pending;
}

/// Shifted sums of `g` adjacent NCHW channels, each over its `runs` runs of `len` values
/// (run `r` of channel `i` at `r·stride + i·len`): `out[2i] = Σ(x − K_i)`,
/// `out[2i+1] = Σ(x − K_i)²` with pivot `pivots[i]`.
///
/// # Safety
/// `x + r·stride + [0, g·len)` readable for every `r < runs`; `pivots` valid for `g` reads and
/// `out` for `2g` writes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sums_runs<S: Simd>(
    s: S,
    x: *const f32,
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
            let k = s.splat(*pivots.add(ch));
            let mut acc = RunAcc::new(s);
            for r in 0..runs {
                run_sums(s, &mut acc, x.add(r * stride + ch * len), len, k, NoVisit);
            }
            let t = acc.finish(s);
            *out.add(2 * ch) = t[0];
            *out.add(2 * ch + 1) = t[1];
        }
    }
}

/// The centered affine map of one vector, optionally followed by ReLU.
struct Normalize<S: Simd, const RELU: bool> {
    x: *const f32,
    k: S::F,
    a: S::F,
    b: S::F,
    /// Residual added before the ReLU, at the same offsets as `x` (null: none).
    res: *const f32,
    /// Elements ahead of `x` to prefetch into L2 (0: none).
    prefetch: usize,
}

impl<S: Simd, const RELU: bool> Normalize<S, RELU> {
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
        x: *const f32,
        res: *const f32,
        i: usize,
        len: usize,
        [k, a, b]: [S::F; 3],
    ) -> S::F {
        // SAFETY: forwarded.
        unsafe {
            let o = s.mul_add(s.sub(load(s, x.add(i), len), k), a, b);
            Self::finish(s, o, res, i, len)
        }
    }

    /// `o + res[i..i+len]` when there is a residual, then the activation.
    ///
    /// # Safety
    /// `res`, when not null, valid for reads of `i..i+len`.
    #[inline(always)]
    unsafe fn finish(s: S, o: S::F, res: *const f32, i: usize, len: usize) -> S::F {
        if res.is_null() {
            Self::activate(s, o)
        } else {
            // SAFETY: forwarded.
            Self::activate(s, s.add(o, unsafe { load(s, res.add(i), len) }))
        }
    }
}

impl<S: Simd, const RELU: bool> Lanes<S> for Normalize<S, RELU> {
    const PREFETCH_W: bool = true;

    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        if self.prefetch != 0 {
            s.prefetch_l2(self.x.wrapping_add(i + self.prefetch));
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
pub(crate) unsafe fn normalize_runs<S: Simd>(
    s: S,
    x: *const f32,
    y: *mut f32,
    runs: usize,
    len: usize,
    stride: usize,
    g: usize,
    aff: *const Affine,
    res: *const f32,
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
                    let op = Normalize::<S, true> {
                        x: xr,
                        k,
                        a,
                        b,
                        res,
                        prefetch,
                    };
                    write_stream_unfenced(s, yr, len, nt, op);
                } else {
                    let op = Normalize::<S, false> {
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

/// Stores at the output's cache-line boundaries alongside [`run_sums`], whose vectors sit at
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
    pub(crate) fn new(op: V, out: *const f32, len: usize, nt: bool) -> Self {
        let head = nt_head(out, len);
        Shifted {
            op,
            head,
            body: (len - head) / LANES * LANES,
            nt,
        }
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
        // SAFETY: head < 16 and len − (head + body) < 16 elements, inside the run.
        unsafe {
            if self.head > 0 {
                self.op.store_at(s, 0, self.head, false);
            }
            let t0 = self.head + self.body;
            if t0 < len {
                self.op.store_at(s, t0, len - t0, false);
            }
        }
    }
}

/// Normalizes one vector of a run with plain stores, alongside [`run_sums`].
struct NormalizeStore<S: Simd, const RELU: bool> {
    x: *const f32,
    y: *mut f32,
    k: S::F,
    a: S::F,
    b: S::F,
    /// Residual added before the ReLU (null: none).
    res: *const f32,
}

impl<S: Simd, const RELU: bool> StoreAt<S> for NormalizeStore<S, RELU> {
    #[inline(always)]
    unsafe fn store_at(&mut self, s: S, i: usize, len: usize, nt: bool) {
        // SAFETY: the caller's offsets are within the run (see `Shifted`).
        unsafe {
            let abc = [self.k, self.a, self.b];
            let o = Normalize::<S, RELU>::value(s, self.x, self.res, i, len, abc);
            if nt {
                s.store_nt(self.y.add(i), o);
            } else {
                // The hint never faults, past the run or not.
                s.prefetch_w(self.y.wrapping_add(i + PREFETCH_W_AHEAD));
                store(s, self.y.add(i), len, o);
            }
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
pub(crate) unsafe fn normalize_sum_runs<S: Simd, const RELU: bool>(
    s: S,
    x: *const f32,
    y: *mut f32,
    runs: usize,
    len: usize,
    stride: usize,
    f: Affine,
    res: *const f32,
    nt: bool,
    xs: *const f32,
    pivot: f32,
) -> [f64; 2] {
    let (k, a, b) = (s.splat(f.k), s.splat(f.a), s.splat(f.b));
    let ks = s.splat(pivot);
    let mut acc = RunAcc::new(s);
    // Without streaming stores in the backend, `nt` means nothing: plain stores.
    let nt = nt && S::NT;
    for r in 0..runs {
        let at = r * stride;
        let (xr, yr) = (x.wrapping_add(at), y.wrapping_add(at));
        let res = if res.is_null() {
            res
        } else {
            res.wrapping_add(at)
        };
        let op = NormalizeStore::<S, RELU> {
            x: xr,
            y: yr,
            k,
            a,
            b,
            res,
        };
        // SAFETY: run r of all inputs is within the contract.
        unsafe {
            let mut v = Shifted::new(op, yr, len, nt);
            run_sums(s, &mut acc, xs.add(at), len, ks, &mut v);
            v.finish(s, len);
        }
    }
    if nt {
        s.fence();
    }
    acc.finish(s)
}

/// Length of vector `v` of a `w`-wide row segment.
#[inline(always)]
fn vec_len(w: usize, v: usize) -> usize {
    (w - v * LANES).min(LANES)
}

/// Widest row segment [`sums_rows`] takes: its f32 accumulators live in registers. Wider
/// rows are summed segment by segment over a chunk of rows that stays in L2 (accumulators in
/// memory for whole 4 KB rows were slower: NC (4096,1024) statistics 0.90 → 0.78 ms).
pub(crate) const ROW_SEGMENT: usize = 64;

/// Per-column shifted sums of `rows` rows of a segment of `w <= ROW_SEGMENT` columns at
/// `x + r·stride`, added to `out[0..w]` (`Σ(x − K)`) and `out[w..2w]` (`Σ(x − K)²`).
///
/// Rows are read in order (sequential streams when the segment is a whole row); each column
/// is one lane of an f32 accumulator, flushed to `out` every [`FLUSH_ROWS`] rows and at the
/// end. The flush points depend only on `rows`, so a caller that cuts the rows into fixed
/// chunks gets the same bits on any thread count.
///
/// # Safety
/// `x + r·stride + [0, w)` readable for every `r < rows`; `pivots` valid for `w` reads, `out`
/// for `2w` reads and writes; `0 < w <= ROW_SEGMENT`.
#[inline(always)]
pub(crate) unsafe fn sums_rows<S: Simd>(
    s: S,
    x: *const f32,
    rows: usize,
    stride: usize,
    w: usize,
    pivots: *const f32,
    out: *mut f64,
) {
    // SAFETY (all arms): forwarded; w <= 64 is four vectors at most.
    unsafe {
        match w.div_ceil(LANES) {
            1 => sums_rows_reg::<S, 1>(s, x, rows, stride, w, pivots, out),
            2 => sums_rows_reg::<S, 2>(s, x, rows, stride, w, pivots, out),
            3 => sums_rows_reg::<S, 3>(s, x, rows, stride, w, pivots, out),
            _ => sums_rows_reg::<S, 4>(s, x, rows, stride, w, pivots, out),
        }
    }
}

/// Adds vector `v` of the f32 column sums `s1`, `s2` (columns `16v ..`, of `w`) to the f64
/// totals `out[..w]`, `out[w..2w]` — vectorized for whole vectors, the same bits as a scalar
/// loop.
///
/// # Safety
/// `out` valid for `2w` reads and writes; `16v < w`.
#[inline(always)]
pub(crate) unsafe fn flush_vector<S: Simd>(
    s: S,
    s1: S::F,
    s2: S::F,
    w: usize,
    v: usize,
    out: *mut f64,
) {
    let (o, len) = (v * LANES, vec_len(w, v));
    // SAFETY: columns [o, o + len) < w.
    unsafe {
        if len == LANES {
            s.add_to_f64(out.add(o), s1);
            s.add_to_f64(out.add(w + o), s2);
        } else {
            let (t1, t2) = (s.to_array(s1), s.to_array(s2));
            for l in 0..len {
                *out.add(o + l) += t1[l] as f64;
                *out.add(w + o + l) += t2[l] as f64;
            }
        }
    }
}

#[inline(always)]
unsafe fn sums_rows_reg<S: Simd, const NV: usize>(
    s: S,
    x: *const f32,
    rows: usize,
    stride: usize,
    w: usize,
    pivots: *const f32,
    out: *mut f64,
) {
    let mut k = [s.splat(0.0); NV];
    for (v, kv) in k.iter_mut().enumerate() {
        // SAFETY: pivots holds w floats; `load` reads only vec_len of them (zeros after).
        *kv = unsafe { load(s, pivots.add(v * LANES), vec_len(w, v)) };
    }
    // SAFETY (all arms): forwarded. Whole-vector segments (the common case: channel counts
    // are multiples of 16) get a loop without masks.
    unsafe {
        if w == NV * LANES {
            if stride == w && !(x as usize).is_multiple_of(64) {
                sums_rows_rotated::<S, NV>(s, x, rows, w, pivots, out)
            } else {
                pair_sums::<S, NV, true>(s, &XTerms { x, stride, k }, rows, w, out)
            }
        } else {
            pair_sums::<S, NV, false>(s, &XTerms { x, stride, k }, rows, w, out)
        }
    }
}

/// One row's terms of a pair of per-column sums, for [`pair_sums`]: the forward's `x − K`
/// and `(x − K)²` ([`XTerms`]), backward's `dy` and `dy·(x − mean)`.
pub(crate) trait RowTerms<S: Simd, const NV: usize> {
    /// Adds row `r`'s terms (columns `0..w`, the last vector `last` long; every vector whole
    /// when `FULL`) into `a1` and `a2`, one lane per column.
    ///
    /// # Safety
    /// Row `r` is one of the rows the caller's contract covers.
    unsafe fn add_row<const FULL: bool>(
        &self,
        s: S,
        r: usize,
        last: usize,
        a1: &mut [S::F; NV],
        a2: &mut [S::F; NV],
    );
}

/// The per-column sums of `rows` rows of `w <= 16·NV` columns, added to `out[0..w]` and
/// `out[w..2w]`: rows in order, even and odd rows into separate f32 accumulators (twice the
/// independent dependency chains: one add per row per vector is otherwise latency-bound for
/// narrow rows), both flushed to f64 as `even + odd` every [`FLUSH_ROWS`] rows and at the end.
/// The flush points depend only on `rows`, so callers that cut rows into fixed chunks get the
/// same bits on any thread count.
///
/// # Safety
/// `t` safe to call for every row below `rows`; `out` valid for `2w` reads and writes.
#[inline(always)]
pub(crate) unsafe fn pair_sums<S: Simd, const NV: usize, const FULL: bool>(
    s: S,
    t: &impl RowTerms<S, NV>,
    rows: usize,
    w: usize,
    out: *mut f64,
) {
    let z = s.splat(0.0);
    let last = vec_len(w, NV - 1);
    let mut r = 0;
    while r < rows {
        let end = (r + FLUSH_ROWS).min(rows);
        let (mut e1, mut e2, mut o1, mut o2) = ([z; NV], [z; NV], [z; NV], [z; NV]);
        let mut q = r;
        // SAFETY: rows q and q + 1 are below `end <= rows`.
        unsafe {
            while q + 1 < end {
                t.add_row::<FULL>(s, q, last, &mut e1, &mut e2);
                t.add_row::<FULL>(s, q + 1, last, &mut o1, &mut o2);
                q += 2;
            }
            if q < end {
                t.add_row::<FULL>(s, q, last, &mut e1, &mut e2);
            }
        }
        for v in 0..NV {
            let (s1, s2) = (s.add(e1[v], o1[v]), s.add(e2[v], o2[v]));
            // SAFETY: `out` holds 2w f64; columns [16v, 16v + vec_len) < w.
            unsafe { flush_vector(s, s1, s2, w, v, out) };
        }
        r = end;
    }
}

/// The forward's terms `x − K` and `(x − K)²` of rows at `x + r·stride`, pivots `k` by lane.
struct XTerms<S: Simd, const NV: usize> {
    x: *const f32,
    stride: usize,
    k: [S::F; NV],
}

impl<S: Simd, const NV: usize> RowTerms<S, NV> for XTerms<S, NV> {
    #[inline(always)]
    unsafe fn add_row<const FULL: bool>(
        &self,
        s: S,
        r: usize,
        last: usize,
        a1: &mut [S::F; NV],
        a2: &mut [S::F; NV],
    ) {
        let x = self.x.wrapping_add(r * self.stride);
        for v in 0..NV {
            // SAFETY: columns [16v, 16v + 16) (the last vector: `last`) of a covered row.
            // Lanes past `w` load 0 and subtract a zero pivot, so they add nothing.
            let xv = unsafe {
                if FULL || v + 1 < NV {
                    s.loadu(x.add(v * LANES))
                } else {
                    s.load_partial(x.add(v * LANES), last)
                }
            };
            acc_vec(s, xv, self.k[v], &mut a1[v], &mut a2[v]);
        }
    }
}

/// [`pair_sums`] of [`XTerms`] for whole rows of `c = 16·NV` columns whose start `x` is not 64-byte
/// aligned (large buffers start 16 bytes past a page): every row then straddles cache lines
/// the same way, and each load would touch two lines (in cache, twice the L1 accesses). This
/// reads aligned vectors instead — "aligned row" `r` is the `c` floats from `x − m + r·c`, `m`
/// the misalignment in floats — so lane `l` of aligned vector `v` always holds column
/// `(16v + l − m) mod c`, and its first `m` lanes hold the end of row `r − 1`.
///
/// The bits are those of [`pair_sums`], because per column the same terms meet in the
/// same order: each lane adds its column's rows in order, flushes after the same 64-row
/// blocks (the end of a block's last row is carried in from the next aligned row), and the
/// even/odd sets hold the same rows — swapped for the last `m` columns, whose row `r − 1`
/// arrives with aligned row `r`, which the flush undoes by adding `E + O` in that order.
///
/// # Safety
/// As [`sums_rows`] with `stride == c`; `x` not 64-byte aligned.
#[inline(always)]
unsafe fn sums_rows_rotated<S: Simd, const NV: usize>(
    s: S,
    x: *const f32,
    rows: usize,
    c: usize,
    pivots: *const f32,
    out: *mut f64,
) {
    let m = (x as usize % 64) / 4;
    let base = x.wrapping_sub(m);
    let z = s.splat(0.0);
    let col = |v: usize, l: usize| (v * LANES + l + c - m) % c;
    let mut k = [z; NV];
    for (v, kv) in k.iter_mut().enumerate() {
        let mut lanes = [0.0f32; LANES];
        for (l, p) in lanes.iter_mut().enumerate() {
            // SAFETY: `pivots` holds c floats.
            *p = unsafe { *pivots.add(col(v, l)) };
        }
        // SAFETY: a 16-float local array.
        *kv = unsafe { s.loadu(lanes.as_ptr()) };
    }
    let (tail, head) = (low_bits(m), !low_bits(m));
    let one = s.splat(1.0);
    let mut r = 0;
    while r < rows {
        let end = (r + FLUSH_ROWS).min(rows);
        let (mut e1, mut e2, mut o1, mut o2) = ([z; NV], [z; NV], [z; NV], [z; NV]);
        // SAFETY (whole block): aligned rows r .. end lie within x − m .. x + rows·c, read
        // only at lanes inside x .. x + rows·c (masked at the two ends), 64-byte aligned.
        unsafe {
            // Aligned row r without its first m lanes (row r − 1: the previous block's, or
            // before the rows), then full aligned rows, alternating sets.
            let first = base.wrapping_add(r * c);
            let a0 = if r == 0 {
                s.load_keep(first, head)
            } else {
                s.loadu(first)
            };
            let d = s.mul_keep(head, s.sub(a0, k[0]), one);
            e1[0] = s.add(e1[0], d);
            e2[0] = s.mul_add(d, d, e2[0]);
            for v in 1..NV {
                acc_vec(
                    s,
                    s.loadu(first.add(v * LANES)),
                    k[v],
                    &mut e1[v],
                    &mut e2[v],
                );
            }
            let rows_at = XTerms {
                x: base,
                stride: c,
                k,
            };
            let mut q = r + 1;
            while q + 1 < end {
                rows_at.add_row::<true>(s, q, LANES, &mut o1, &mut o2);
                rows_at.add_row::<true>(s, q + 1, LANES, &mut e1, &mut e2);
                q += 2;
            }
            if q < end {
                rows_at.add_row::<true>(s, q, LANES, &mut o1, &mut o2);
            }
            let p = base.wrapping_add(end * c);
            // The end of row end − 1: the first m lanes of aligned row `end`, in the set of
            // `end`'s parity like every other aligned row's first m lanes.
            let a = if end < rows {
                s.loadu(p)
            } else {
                s.load_keep(p, tail)
            };
            let d = s.mul_keep(tail, s.sub(a, k[0]), one);
            let (c1, c2) = if (end - r).is_multiple_of(2) {
                (&mut e1[0], &mut e2[0])
            } else {
                (&mut o1[0], &mut o2[0])
            };
            *c1 = s.add(*c1, d);
            *c2 = s.mul_add(d, d, *c2);
        }
        // Per lane E + O — for the last m columns' lanes O + E, undoing their swap (the same
        // sum but for NaN payloads) — then rotated back to column order through a buffer in
        // which vector u of the columns starts m lanes into aligned vector u.
        let (mut b1, mut b2) = ([0.0f32; ROW_SEGMENT + LANES], [0.0f32; ROW_SEGMENT + LANES]);
        for v in 0..NV {
            let (mut t1, mut t2) = (s.add(e1[v], o1[v]), s.add(e2[v], o2[v]));
            if v == 0 {
                let (w1, w2) = (s.add(o1[0], e1[0]), s.add(o2[0], e2[0]));
                // Neither sum is −0 (the accumulators start at +0), so adding the +0 lanes
                // that `mul_keep` leaves changes no bits.
                t1 = s.add(s.mul_keep(head, t1, one), s.mul_keep(tail, w1, one));
                t2 = s.add(s.mul_keep(head, t2, one), s.mul_keep(tail, w2, one));
                // SAFETY: the buffers hold c + 16 floats.
                unsafe {
                    s.storeu(b1.as_mut_ptr().add(c), t1);
                    s.storeu(b2.as_mut_ptr().add(c), t2);
                }
            }
            // SAFETY: 16v + 16 <= c.
            unsafe {
                s.storeu(b1.as_mut_ptr().add(v * LANES), t1);
                s.storeu(b2.as_mut_ptr().add(v * LANES), t2);
            }
        }
        for u in 0..NV {
            // SAFETY: 16u + m + 16 <= c + 16; `out` holds 2c f64 and column 16u < c.
            unsafe {
                let t1 = s.loadu(b1.as_ptr().add(u * LANES + m));
                let t2 = s.loadu(b2.as_ptr().add(u * LANES + m));
                flush_vector(s, t1, t2, c, u, out);
            }
        }
        r = end;
    }
}

/// Adds one vector's `x − K` and `(x − K)²` into a pair of accumulators.
#[inline(always)]
fn acc_vec<S: Simd>(s: S, xv: S::F, k: S::F, a1: &mut S::F, a2: &mut S::F) {
    let d = s.sub(xv, k);
    *a1 = s.add(*a1, d);
    *a2 = s.mul_add(d, d, *a2);
}

/// Centered normalization with periodic per-element constants: `y[i] = (x[i] − k[j])·a[j] +
/// b[j]` with `j = i mod l`, the constants read from `aff = [k; a; b]` (rows of `l + 16`
/// floats, the last 16 repeating the first, so a vector starting anywhere below `l` reads
/// contiguously). `j` is tracked incrementally: `write_stream` visits `i` in increasing steps
/// of at most 16.
struct NormalizeWith<S: Simd, const RELU: bool, const TRACK: bool> {
    x: *const f32,
    res: *const f32,
    aff: *const f32,
    l: usize,
    j: usize,
    last: usize,
    _s: core::marker::PhantomData<S>,
}

impl<S: Simd, const RELU: bool, const TRACK: bool> Lanes<S> for NormalizeWith<S, RELU, TRACK> {
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
            Normalize::<S, RELU>::value(s, self.x, self.res, i, len, [k, a, b])
        }
    }
}

/// [`NormalizeWith`] for constants of period 64 (see [`OverTile64`]).
struct NormalizeTile64<S: Simd, const RELU: bool> {
    x: *const f32,
    res: *const f32,
    _s: core::marker::PhantomData<S>,
}

impl<S: Simd, const RELU: bool> WithConsts<S, 3> for NormalizeTile64<S, RELU> {
    #[inline(always)]
    unsafe fn apply(&self, s: S, i: usize, len: usize, consts: [S::F; 3]) -> S::F {
        // SAFETY: the kernel's contract covers x[i..i+len] (and res).
        unsafe { Normalize::<S, RELU>::value(s, self.x, self.res, i, len, consts) }
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
pub(crate) unsafe fn normalize_tiled<S: Simd>(
    s: S,
    x: *const f32,
    y: *mut f32,
    n: usize,
    aff: *const f32,
    l: usize,
    res: *const f32,
    relu: bool,
    nt: bool,
) {
    // SAFETY: forwarded.
    unsafe {
        if relu {
            tiled::<S, true>(s, x, y, n, aff, l, res, nt)
        } else {
            tiled::<S, false>(s, x, y, n, aff, l, res, nt)
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
unsafe fn tiled<S: Simd, const RELU: bool>(
    s: S,
    x: *const f32,
    y: *mut f32,
    n: usize,
    aff: *const f32,
    l: usize,
    res: *const f32,
    nt: bool,
) {
    let pd = core::marker::PhantomData;
    // SAFETY: `write_stream` passes i + len <= n (or the tile's length) in increasing order.
    unsafe {
        if l == 64 {
            let op = OverTile64 {
                kernel: NormalizeTile64::<S, RELU> { x, res, _s: pd },
                tile: Tile64::new(s, aff, y, n),
            };
            write_stream(s, y, n, nt, op);
        } else if nt {
            let op = NormalizeWith::<S, RELU, true> {
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
                let op = NormalizeWith::<S, RELU, false> {
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
