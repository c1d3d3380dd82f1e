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
//! Normalization is `((x − K) − d)·a + b` with `d = mean − K`, `a = γ·invstd`,
//! `b = β`: centered, so a constant channel gives exactly `β`.

use crate::kernels::stream::{Lanes, load, store_partial, write_stream};
use crate::simd::{LANES, Simd};

/// f32 lane sums are flushed to f64 after at most this many vectors (each of four
/// accumulators then holds at most 64 terms: ~1e-6 relative error before the f64 sum).
const FLUSH_VECTORS: usize = 256;

/// Rows between flushes in the column kernels (one term per row per lane).
const FLUSH_ROWS: usize = 64;

/// How many rows ahead the column kernels prefetch.
const ROWS_AHEAD: usize = 16;

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

/// Work done alongside the statistics loop of [`run_sums`], at the same vector positions.
trait Visit<S: Simd> {
    /// Called once per vector `[i, i + len)` of the run, in order.
    ///
    /// # Safety
    /// As the implementor's constructor requires for offsets below the run length.
    unsafe fn at(&mut self, s: S, i: usize, len: usize);
}

/// Nothing alongside.
struct NoVisit;

impl<S: Simd> Visit<S> for NoVisit {
    #[inline(always)]
    unsafe fn at(&mut self, _: S, _: usize, _: usize) {}
}

/// `[Σ(x − K), Σ(x − K)²]` of one run of `len` values.
///
/// The order of the additions is the crate's canonical one, whatever runs alongside:
/// vector `j` of the run (from its start; the last may be partial) goes to accumulator
/// `j mod 4`; the four accumulator pairs are flushed to f64 after every 256 vectors and at the
/// end, by a fixed tree. So the fused kernels below produce the same bits as the plain ones.
///
/// # Safety
/// `p..p+len` must be readable; `visit` safe to call for every vector of `0..len`.
#[inline(always)]
unsafe fn run_sums<S: Simd>(
    s: S,
    p: *const f32,
    len: usize,
    k: S::F,
    mut visit: impl Visit<S>,
) -> [f64; 2] {
    let z = s.splat(0.0);
    let (mut a1, mut a2) = ([z; 4], [z; 4]);
    let mut tot = [0.0f64; 2];
    let mut flush = |a1: &mut [S::F; 4], a2: &mut [S::F; 4]| {
        let r1 = s.add(s.add(a1[0], a1[1]), s.add(a1[2], a1[3]));
        let r2 = s.add(s.add(a2[0], a2[1]), s.add(a2[2], a2[3]));
        tot[0] += lanes_sum_f64(s.to_array(r1));
        tot[1] += lanes_sum_f64(s.to_array(r2));
        *a1 = [z; 4];
        *a2 = [z; 4];
    };
    let mut i = 0;
    let mut pending = 0;
    // SAFETY: every load stays within p..p+len; `visit` gets the same in-run positions.
    unsafe {
        while i + 4 * LANES <= len {
            for u in 0..4 {
                visit.at(s, i + u * LANES, LANES);
                let v = s.sub(s.loadu(p.add(i + u * LANES)), k);
                a1[u] = s.add(a1[u], v);
                a2[u] = s.mul_add(v, v, a2[u]);
            }
            i += 4 * LANES;
            pending += 4;
            if pending >= FLUSH_VECTORS {
                flush(&mut a1, &mut a2);
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
            a1[u] = s.add(a1[u], v);
            a2[u] = s.mul_add(v, v, a2[u]);
            u += 1;
            i += n;
        }
    }
    flush(&mut a1, &mut a2);
    tot
}

/// Shifted sums of `g` adjacent NCHW channels, visited in address order: for each of the
/// `runs` images, the `g` channels' runs of `len` values (adjacent in memory) in turn, so the
/// reads are `runs` long sequential streams of `g·len` values rather than `g·runs` short ones.
/// `out[2i] = Σ(x − K_i)`, `out[2i+1] = Σ(x − K_i)²` for channel `i` with pivot `pivots[i]`.
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
        for i in 0..2 * g {
            *out.add(i) = 0.0;
        }
        for r in 0..runs {
            for ch in 0..g {
                let p = x.add(r * stride + ch * len);
                let t = run_sums(s, p, len, s.splat(*pivots.add(ch)), NoVisit);
                *out.add(2 * ch) += t[0];
                *out.add(2 * ch + 1) += t[1];
            }
        }
    }
}

/// The centered affine map of one vector, optionally followed by ReLU.
struct Normalize<S: Simd, const RELU: bool> {
    x: *const f32,
    k: S::F,
    d: S::F,
    a: S::F,
    b: S::F,
    /// Elements ahead of `x` to prefetch into L2 (0: none).
    prefetch: usize,
}

impl<S: Simd, const RELU: bool> Normalize<S, RELU> {
    #[inline(always)]
    fn apply(s: S, v: S::F, k: S::F, d: S::F, a: S::F, b: S::F) -> S::F {
        let r = s.mul_add(s.sub(s.sub(v, k), d), a, b);
        if RELU { s.relu(r) } else { r }
    }
}

impl<S: Simd, const RELU: bool> Lanes<S> for Normalize<S, RELU> {
    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        if self.prefetch != 0 {
            s.prefetch_l2(self.x.wrapping_add(i + self.prefetch));
        }
        // SAFETY: the kernel's contract covers x[i..i+len].
        let v = unsafe { load(s, self.x.add(i), len) };
        Self::apply(s, v, self.k, self.d, self.a, self.b)
    }
}

/// Per-channel constants of the normalization: pivot `k`, `d = mean − k`, `a = γ·invstd`,
/// `b = β`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Affine {
    pub k: f32,
    pub d: f32,
    pub a: f32,
    pub b: f32,
}

/// Normalizes `g` adjacent NCHW channels in address order (as [`sums_runs`] reads them):
/// run `(r, i)` at `r·stride + i·len` gets channel `i`'s constants `aff[i]`. Prefetches the
/// element `prefetch` ahead of each one read (0: none) into L2. `x` may equal `y`.
///
/// # Safety
/// `x + r·stride + [0, g·len)` readable and `y + r·stride + [0, g·len)` writable for every
/// `r < runs`; `aff` valid for `g` reads.
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
    relu: bool,
    nt: bool,
    prefetch: usize,
) {
    for r in 0..runs {
        for ch in 0..g {
            // SAFETY: run (r, ch) is within the contract; `write_stream` stays inside it.
            unsafe {
                let f = *aff.add(ch);
                let (k, d, a, b) = (s.splat(f.k), s.splat(f.d), s.splat(f.a), s.splat(f.b));
                let at = r * stride + ch * len;
                let (xr, yr) = (x.add(at), y.add(at));
                if relu {
                    let op = Normalize::<S, true> {
                        x: xr,
                        k,
                        d,
                        a,
                        b,
                        prefetch,
                    };
                    write_stream(s, yr, len, nt, op);
                } else {
                    let op = Normalize::<S, false> {
                        x: xr,
                        k,
                        d,
                        a,
                        b,
                        prefetch,
                    };
                    write_stream(s, yr, len, nt, op);
                }
            }
        }
    }
}

/// Normalizes one vector of a run with plain stores, alongside [`run_sums`].
struct NormalizeStore<S: Simd, const RELU: bool> {
    x: *const f32,
    y: *mut f32,
    k: S::F,
    d: S::F,
    a: S::F,
    b: S::F,
}

impl<S: Simd, const RELU: bool> Visit<S> for NormalizeStore<S, RELU> {
    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) {
        // SAFETY: `normalize_sum_runs`' contract covers x[i..i+len] and y[i..i+len].
        unsafe {
            let o = Normalize::<S, RELU>::apply(
                s,
                load(s, self.x.add(i), len),
                self.k,
                self.d,
                self.a,
                self.b,
            );
            if len == LANES {
                s.storeu(self.y.add(i), o);
            } else {
                s.store_partial(self.y.add(i), len, o);
            }
        }
    }
}

/// Normalizes one NCHW channel (runs at `x`/`y`) and, in the same loop, takes the shifted sums
/// of another channel (runs at `xs`, pivot `pivot`) — bit for bit what [`sums_runs`] returns
/// for it. Overlapping the next channel's reads with this one's stores is what keeps a
/// cache-resident tensor near copy speed: the normalization alone is store-bound and leaves
/// the load ports idle. Plain stores only (for outputs below the non-temporal threshold).
///
/// # Safety
/// For every `r < runs`: `x + r·stride + [0, len)` and `xs + r·stride + [0, len)` readable,
/// `y + r·stride + [0, len)` writable.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn normalize_sum_runs<S: Simd>(
    s: S,
    x: *const f32,
    y: *mut f32,
    runs: usize,
    len: usize,
    stride: usize,
    f: Affine,
    relu: bool,
    xs: *const f32,
    pivot: f32,
) -> [f64; 2] {
    let (k, d, a, b) = (s.splat(f.k), s.splat(f.d), s.splat(f.a), s.splat(f.b));
    let ks = s.splat(pivot);
    let mut out = [0.0f64; 2];
    for r in 0..runs {
        let at = r * stride;
        // SAFETY: run r of all three is within the contract.
        let t = unsafe {
            let (xr, yr) = (x.add(at), y.add(at));
            if relu {
                let v = NormalizeStore::<S, true> {
                    x: xr,
                    y: yr,
                    k,
                    d,
                    a,
                    b,
                };
                run_sums(s, xs.add(at), len, ks, v)
            } else {
                let v = NormalizeStore::<S, false> {
                    x: xr,
                    y: yr,
                    k,
                    d,
                    a,
                    b,
                };
                run_sums(s, xs.add(at), len, ks, v)
            }
        };
        out[0] += t[0];
        out[1] += t[1];
    }
    out
}

/// Length of vector `v` of a `w`-wide column block.
#[inline(always)]
fn vec_len(w: usize, v: usize) -> usize {
    (w - v * LANES).min(LANES)
}

/// Per-column `Σ(x − K)` into `out[0..w]` and `Σ(x − K)²` into `out[w..2w]`, for `rows` rows
/// of a block of `w <= 64` adjacent columns at `x + r·stride`, pivots `pivots[0..w]`.
///
/// # Safety
/// `x + r·stride + [0, w)` readable for every `r < rows`; `pivots` valid for `w` reads,
/// `out` for `2w` writes; `0 < w <= 64`.
#[inline(always)]
pub(crate) unsafe fn sums_cols<S: Simd>(
    s: S,
    x: *const f32,
    rows: usize,
    stride: usize,
    w: usize,
    pivots: *const f32,
    out: *mut f64,
) {
    // SAFETY (all arms): forwarded.
    unsafe {
        match w.div_ceil(LANES) {
            1 => sums_cols_n::<S, 1>(s, x, rows, stride, w, pivots, out),
            2 => sums_cols_n::<S, 2>(s, x, rows, stride, w, pivots, out),
            3 => sums_cols_n::<S, 3>(s, x, rows, stride, w, pivots, out),
            _ => sums_cols_n::<S, 4>(s, x, rows, stride, w, pivots, out),
        }
    }
}

#[inline(always)]
unsafe fn sums_cols_n<S: Simd, const NV: usize>(
    s: S,
    x: *const f32,
    rows: usize,
    stride: usize,
    w: usize,
    pivots: *const f32,
    out: *mut f64,
) {
    let z = s.splat(0.0);
    let mut k = [z; NV];
    for (v, kv) in k.iter_mut().enumerate() {
        // SAFETY: pivots holds w floats; `load` reads only vec_len of them.
        *kv = unsafe { load(s, pivots.add(v * LANES), vec_len(w, v)) };
    }
    let (mut a1, mut a2) = ([z; NV], [z; NV]);
    let (mut t1, mut t2) = ([0.0f64; 64], [0.0f64; 64]);
    let mut flush = |a1: &mut [S::F; NV], a2: &mut [S::F; NV]| {
        for v in 0..NV {
            for (l, (x1, x2)) in s
                .to_array(a1[v])
                .into_iter()
                .zip(s.to_array(a2[v]))
                .enumerate()
            {
                t1[v * LANES + l] += x1 as f64;
                t2[v * LANES + l] += x2 as f64;
            }
            a1[v] = z;
            a2[v] = z;
        }
    };
    for r in 0..rows {
        for v in 0..NV {
            // Rows are a stride apart (often kilobytes): too far for the hardware prefetchers
            // to follow, so fetch a few rows ahead by hand. Prefetches never fault.
            s.prefetch(x.wrapping_add((r + ROWS_AHEAD) * stride + v * LANES));
        }
        for v in 0..NV {
            // SAFETY: row r, columns [16v, 16v + vec_len) < w. Lanes past `w` load 0 and
            // subtract a zero pivot, so they add nothing.
            let xv = unsafe { load(s, x.add(r * stride + v * LANES), vec_len(w, v)) };
            let d = s.sub(xv, k[v]);
            a1[v] = s.add(a1[v], d);
            a2[v] = s.mul_add(d, d, a2[v]);
        }
        if (r + 1) % FLUSH_ROWS == 0 {
            flush(&mut a1, &mut a2);
        }
    }
    flush(&mut a1, &mut a2);
    for c in 0..w {
        // SAFETY: out holds 2w f64.
        unsafe {
            *out.add(c) = t1[c];
            *out.add(w + c) = t2[c];
        }
    }
}

/// Normalizes `rows` rows of a `w`-column block: `y = ((x − k) − d)·a + b` per column, with the
/// per-column constants in `aff = [k; d; a; b]` (each `w` floats). Prefetches `prefetch`
/// elements ahead of each row segment into L2 (0: none). `x` may equal `y`.
///
/// # Safety
/// `x + r·stride + [0, w)` readable and `y + r·stride + [0, w)` writable for every `r < rows`;
/// `aff` valid for `4w` reads; `0 < w <= 64`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn normalize_cols<S: Simd>(
    s: S,
    x: *const f32,
    y: *mut f32,
    rows: usize,
    stride: usize,
    w: usize,
    aff: *const f32,
    relu: bool,
    nt: bool,
    prefetch: usize,
) {
    // SAFETY (all arms): forwarded.
    unsafe {
        match (w.div_ceil(LANES), relu) {
            (1, false) => norm_cols_n::<S, 1, false>(s, x, y, rows, stride, w, aff, nt, prefetch),
            (2, false) => norm_cols_n::<S, 2, false>(s, x, y, rows, stride, w, aff, nt, prefetch),
            (3, false) => norm_cols_n::<S, 3, false>(s, x, y, rows, stride, w, aff, nt, prefetch),
            (_, false) => norm_cols_n::<S, 4, false>(s, x, y, rows, stride, w, aff, nt, prefetch),
            (1, true) => norm_cols_n::<S, 1, true>(s, x, y, rows, stride, w, aff, nt, prefetch),
            (2, true) => norm_cols_n::<S, 2, true>(s, x, y, rows, stride, w, aff, nt, prefetch),
            (3, true) => norm_cols_n::<S, 3, true>(s, x, y, rows, stride, w, aff, nt, prefetch),
            (_, true) => norm_cols_n::<S, 4, true>(s, x, y, rows, stride, w, aff, nt, prefetch),
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn norm_cols_n<S: Simd, const NV: usize, const RELU: bool>(
    s: S,
    x: *const f32,
    y: *mut f32,
    rows: usize,
    stride: usize,
    w: usize,
    aff: *const f32,
    nt: bool,
    prefetch: usize,
) {
    let z = s.splat(0.0);
    let mut c = [[z; NV]; 4];
    for (j, cj) in c.iter_mut().enumerate() {
        for (v, cv) in cj.iter_mut().enumerate() {
            // SAFETY: aff holds 4w floats; `load` reads vec_len of row j's.
            *cv = unsafe { load(s, aff.add(j * w + v * LANES), vec_len(w, v)) };
        }
    }
    let [k, d, a, b] = c;
    for r in 0..rows {
        // SAFETY: row r's segment [0, w) is within the contract; full vectors only where
        // 16 columns remain, the last one partial.
        unsafe {
            let (xr, yr) = (x.add(r * stride), y.add(r * stride));
            for v in 0..NV {
                let len = vec_len(w, v);
                if prefetch != 0 {
                    s.prefetch_l2(xr.wrapping_add(v * LANES + prefetch));
                }
                let o = Normalize::<S, RELU>::apply(
                    s,
                    load(s, xr.add(v * LANES), len),
                    k[v],
                    d[v],
                    a[v],
                    b[v],
                );
                let p = yr.add(v * LANES);
                if len < LANES {
                    store_partial(s, p, len, o);
                } else if nt && S::NT && (p as usize) % 64 == 0 {
                    s.store_nt(p, o);
                } else {
                    s.storeu(p, o);
                }
            }
        }
    }
    if nt {
        s.fence();
    }
}
