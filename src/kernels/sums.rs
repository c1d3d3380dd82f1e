//! The one reduction kernel of batch norm, forward and backward: per channel, a first sum
//! `Σt` (in f64 for the forward's mean, in f32 flushed to f64 for the backward's `Σdy`) and a
//! second sum `Σp·q` in f32 lanes flushed to f64.
//!
//! The forward takes `t = x`, `p = q = x − K` (pivot `K`): the mean comes from the f64 sum of
//! `x` itself, exact to f64 rounding whatever the spread (an f32 sum of `x − K` was ~100 ulp
//! off on data whose spread dwarfs its mean), while the variance's second moment, small
//! relative terms around a pivot near the data, keeps full precision in f32. The backward
//! takes `t = dy`, `p = dy`, `q = x − mean`; an f64 `Σdy` cost it 10–18 % in cache for no
//! stated accuracy need, so it stays f32.
//!
//! One order for both, so the result depends only on the data, never on threads or on what
//! runs alongside: no f32 accumulator lane takes more than [`FLUSH_TERMS`] terms between two
//! flushes to f64, and the flush points depend only on the run lengths (runs) or the row count
//! (rows).

use crate::kernels::stream::{load, load_for_arith};
use crate::simd::elem::Elem;
use crate::simd::{LANES, Simd};

/// Terms an f32 accumulator lane takes at most between flushes to f64 (~1e-6 relative error
/// in the second moment before the f64 sum).
pub(crate) const FLUSH_TERMS: usize = 64;

/// Vectors of a channel's runs between flushes: four accumulators of [`FLUSH_TERMS`] each
/// (checked every four vectors and at the end of each run).
const FLUSH_VECTORS: usize = 4 * FLUSH_TERMS;

/// Rows between flushes in the row (column) sums: even and odd rows go to separate
/// accumulators, so each lane holds half as many terms. (Not `2·FLUSH_TERMS`: the row chunks
/// of the parallel statistics are multiples of 64 rows, and must stay multiples of this.)
pub(crate) const FLUSH_ROWS: usize = FLUSH_TERMS;

/// Bits `0..n` set.
#[inline(always)]
pub(crate) fn low_bits(n: usize) -> u16 {
    ((1u32 << n) - 1) as u16
}

/// The accumulator of a first sum `Σt`, 16 lanes: f64 ([`Wide`]) where the sum is a mean
/// that must be exact whatever the spread, f32 ([`Narrow`]) where f32 suffices.
pub(crate) trait First<S: Simd>: Copy {
    /// Accumulators of this sum in a channel's runs (vector `j` of a run goes to `j mod
    /// ACCS`): enough independent chains to hide the add latency, few enough to stay in
    /// registers (an f64 accumulator is two or four vector registers).
    const ACCS: usize;
    /// All lanes `+0`.
    fn zero(s: S) -> Self;
    /// `self + v`, lane by lane.
    fn add(self, s: S, v: S::F) -> Self;
    /// `self + o`, lane by lane.
    fn plus(self, s: S, o: Self) -> Self;
    /// `self` in the lanes of `keep`, `o` elsewhere.
    fn select(self, s: S, keep: u16, o: Self) -> Self;
    /// The lanes, in f64.
    fn lanes(self, s: S) -> [f64; 16];
    /// `out[l] += lane l` for the 16 lanes.
    ///
    /// # Safety
    /// `out..out+16` readable and writable.
    unsafe fn add_to(self, s: S, out: *mut f64);
}

/// Two f64 accumulators, not four: an f64 sum of 16 lanes is two (AVX-512) or four (AVX2)
/// registers, and four of them left AVX2 no registers for the rest. Two chains of adds per
/// register already outrun the loop's other work (each vector also costs its widening).
const WIDE_ACCS: usize = 2;

/// An f64 first sum: `x` widened exactly, then added in f64.
#[derive(Clone, Copy)]
pub(crate) struct Wide<S: Simd>(S::W);

impl<S: Simd> First<S> for Wide<S> {
    const ACCS: usize = WIDE_ACCS;
    #[inline(always)]
    fn zero(s: S) -> Self {
        Wide(s.zero_w())
    }
    #[inline(always)]
    fn add(self, s: S, v: S::F) -> Self {
        Wide(s.add_widened(self.0, v))
    }
    #[inline(always)]
    fn plus(self, s: S, o: Self) -> Self {
        Wide(s.add_w(self.0, o.0))
    }
    #[inline(always)]
    fn select(self, s: S, keep: u16, o: Self) -> Self {
        Wide(s.select_w(keep, self.0, o.0))
    }
    #[inline(always)]
    fn lanes(self, s: S) -> [f64; 16] {
        s.w_to_array(self.0)
    }
    #[inline(always)]
    unsafe fn add_to(self, s: S, out: *mut f64) {
        // SAFETY: forwarded.
        unsafe { s.add_w_to(out, self.0) }
    }
}

/// An f32 first sum (the backward's `Σdy`), flushed to f64 like the second sums.
#[derive(Clone, Copy)]
pub(crate) struct Narrow<S: Simd>(S::F);

impl<S: Simd> First<S> for Narrow<S> {
    const ACCS: usize = 4;
    #[inline(always)]
    fn zero(s: S) -> Self {
        Narrow(s.splat(0.0))
    }
    #[inline(always)]
    fn add(self, s: S, v: S::F) -> Self {
        Narrow(s.add(self.0, v))
    }
    #[inline(always)]
    fn plus(self, s: S, o: Self) -> Self {
        Narrow(s.add(self.0, o.0))
    }
    #[inline(always)]
    fn select(self, s: S, keep: u16, o: Self) -> Self {
        // Neither operand is −0 where it is dropped (the accumulators start at +0 and a sum
        // of +0 and anything is not −0), so adding the +0 lanes `mul_keep` leaves is exact.
        let one = s.splat(1.0);
        Narrow(s.add(s.mul_keep(keep, self.0, one), s.mul_keep(!keep, o.0, one)))
    }
    #[inline(always)]
    fn lanes(self, s: S) -> [f64; 16] {
        s.to_array(self.0).map(|v| v as f64)
    }
    #[inline(always)]
    unsafe fn add_to(self, s: S, out: *mut f64) {
        // SAFETY: forwarded.
        unsafe { s.add_to_f64(out, self.0) }
    }
}

/// The terms of one reduction at element offsets from a base, around a per-lane centre `c`
/// (the forward's pivot, the backward's mean).
pub(crate) trait Terms<S: Simd>: Copy {
    /// The accumulator of `Σt`.
    type First: First<S>;

    /// `[t, p, q]` of elements `i .. i + len` (`len <= 16`): `Σt` and `Σp·q` are the sums.
    /// Lanes past `len` give `t = 0` and `p·q = 0`.
    ///
    /// # Safety
    /// The inputs valid for reads of `i .. i + len`.
    unsafe fn at(self, s: S, i: usize, len: usize, c: S::F) -> [S::F; 3];

    /// The same inputs `at` elements further (wrapping: only read within the contract).
    fn offset(self, at: usize) -> Self;

    /// Hints every cache line of elements `0 .. len` of each input into L2 (never faults).
    fn prefetch(self, s: S, len: usize);

    /// The inputs' element type.
    type Elem;

    /// Whether [`sums_rows`] may read whole rows through aligned vectors ([`rotated`]): only
    /// for a single input, whose address is [`Terms::base`].
    const ROTATE: bool = false;

    /// The single input's address (for [`Terms::ROTATE`]).
    fn base(self) -> *const f32;
}

/// The forward's terms `x`, `x − K`, `x − K` of `x` (any element type, widened).
pub(crate) struct XTerms<E = f32> {
    pub x: *const E,
}

// Manual impls: a derive would ask `E: Copy`; a raw pointer is `Copy` whatever `E`.
impl<E> Clone for XTerms<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for XTerms<E> {}

impl<S: Simd, E: Elem> Terms<S> for XTerms<E> {
    type First = Wide<S>;
    type Elem = E;
    // The rotated aligned-row reads are written for f32 rows (the same bits either way).
    const ROTATE: bool = size_of::<E>() == 4;

    #[inline(always)]
    unsafe fn at(self, s: S, i: usize, len: usize, k: S::F) -> [S::F; 3] {
        // SAFETY: forwarded; a partial load reads `len` floats and zeroes the rest. x only
        // feeds arithmetic (the f64 widening and x − K quiet a signalling NaN).
        let xv = unsafe { load_for_arith(s, self.x.add(i), len) };
        let d = s.sub(xv, k);
        // Past `len`, x loads as 0 (adding nothing) but 0 − K must not count.
        let d = if len < LANES {
            s.mul_keep(low_bits(len), d, s.splat(1.0))
        } else {
            d
        };
        [xv, d, d]
    }

    #[inline(always)]
    fn offset(self, at: usize) -> Self {
        XTerms {
            x: self.x.wrapping_add(at),
        }
    }

    #[inline(always)]
    fn prefetch(self, s: S, len: usize) {
        prefetch_l2_lines(s, self.x, len);
    }

    #[inline(always)]
    fn base(self) -> *const f32 {
        // Read as f32 only when `ROTATE`, that is when `E` is f32.
        self.x.cast()
    }
}

/// Work done alongside [`Sums::add_run`], at the same vector positions.
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

/// Sum of 16 f64 lanes by a balanced tree (short dependency chains).
#[inline(always)]
fn lanes_sum(l: [f64; 16]) -> f64 {
    let mut t = [0.0f64; 8];
    for (i, ti) in t.iter_mut().enumerate() {
        *ti = l[2 * i] + l[2 * i + 1];
    }
    ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
}

/// One channel's sums over its runs: `First::ACCS` accumulators of `Σt`, four f32
/// accumulators of `Σp·q`, and their f64 totals.
pub(crate) struct Sums<S: Simd, A: First<S>> {
    a1: [A; 4],
    a2: [S::F; 4],
    pending: usize,
    tot: [f64; 2],
}

impl<S: Simd, A: First<S>> Sums<S, A> {
    #[inline(always)]
    pub(crate) fn new(s: S) -> Self {
        Sums {
            a1: [A::zero(s); 4],
            a2: [s.splat(0.0); 4],
            pending: 0,
            tot: [0.0; 2],
        }
    }

    /// Adds the accumulators to the totals by a fixed tree, and zeroes them. (A method, not a
    /// closure: closures carry no inline attribute, and one left out of line would take its
    /// intrinsics out of the `#[target_feature]` context.)
    #[inline(always)]
    fn flush(&mut self, s: S) {
        let (a1, a2) = (&self.a1, &self.a2);
        let r1 = match A::ACCS {
            1 => a1[0],
            2 => a1[0].plus(s, a1[1]),
            _ => a1[0].plus(s, a1[1]).plus(s, a1[2].plus(s, a1[3])),
        };
        let r2 = s.add(s.add(a2[0], a2[1]), s.add(a2[2], a2[3]));
        self.tot[0] += lanes_sum(r1.lanes(s));
        self.tot[1] += lanes_sum(s.to_array(r2).map(|v| v as f64));
        self.a1 = [A::zero(s); 4];
        self.a2 = [s.splat(0.0); 4];
    }

    /// `[Σt, Σp·q]` of everything added.
    #[inline(always)]
    pub(crate) fn finish(mut self, s: S) -> [f64; 2] {
        self.flush(s);
        self.tot
    }

    /// Adds the terms of one run of `len` elements around centre `c`, with `visit` alongside.
    ///
    /// The order is the crate's canonical one, whatever runs alongside: within a run, vector
    /// `j` (from the run's start; the last may be partial) goes to second-sum accumulator
    /// `j mod 4` and first-sum accumulator `j mod First::ACCS`; the
    /// accumulators are flushed once [`FLUSH_VECTORS`] vectors have gathered (checked every
    /// four vectors and at the end of each run) and when the channel is done. Fused kernels
    /// therefore produce the same bits as the plain ones.
    ///
    /// # Safety
    /// `t` valid for `0..len`; `visit` safe to call for every vector of `0..len`.
    #[inline(always)]
    pub(crate) unsafe fn add_run<T: Terms<S, First = A>>(
        &mut self,
        s: S,
        t: T,
        len: usize,
        c: S::F,
        mut visit: impl Visit<S>,
    ) {
        let (mut i, mut u) = (0, 0);
        // A local copy: kept in the struct, LLVM packed the counter into a vector register
        // with a long dependency chain through every iteration.
        let mut pending = self.pending;
        // SAFETY: every term stays within 0..len; `visit` gets the same in-run positions.
        unsafe {
            while i + 4 * LANES <= len {
                for u in 0..4 {
                    visit.at(s, i + u * LANES, LANES);
                    let terms = t.at(s, i + u * LANES, LANES, c);
                    acc(s, terms, &mut self.a1[u % A::ACCS], &mut self.a2[u]);
                }
                i += 4 * LANES;
                pending += 4;
                if pending >= FLUSH_VECTORS {
                    self.flush(s);
                    pending = 0;
                }
            }
            while i < len {
                let n = (len - i).min(LANES);
                visit.at(s, i, n);
                let terms = t.at(s, i, n, c);
                acc(s, terms, &mut self.a1[u % A::ACCS], &mut self.a2[u]);
                u += 1;
                i += n;
            }
        }
        pending += u;
        if pending >= FLUSH_VECTORS {
            self.flush(s);
            pending = 0;
        }
        self.pending = pending;
    }
}

/// `[Σt, Σp·q]` of one channel's `runs` runs of `len` at `r·stride` from `t`, centre `c`.
///
/// # Safety
/// `t` valid for `r·stride + [0, len)` for every `r < runs`.
#[inline(always)]
pub(crate) unsafe fn sums_runs<S: Simd, T: Terms<S>>(
    s: S,
    t: T,
    runs: usize,
    len: usize,
    stride: usize,
    c: f32,
) -> [f64; 2] {
    let c = s.splat(c);
    let mut acc = Sums::<S, T::First>::new(s);
    let pf = prefetch_runs::<T::Elem>(runs, len, stride);
    for r in 0..runs {
        if pf && r + 1 < runs {
            t.offset((r + 1) * stride).prefetch(s, len);
        }
        // SAFETY: run r is within the contract.
        unsafe { acc.add_run(s, t.offset(r * stride), len, c, NoVisit) };
    }
    acc.finish(s)
}

/// Whether the run loops over `runs` runs of `len` elements of `E`, `stride` apart, hint
/// each next run into L2 ([`prefetch_l2_lines`]): for short runs (at most 2 KiB, where the
/// hardware prefetcher has no time to ramp up) of a tensor beyond the caches (8 MiB). Longer
/// runs and tensors in cache lost 10–25 % to the hints (paired roofline runs).
#[inline(always)]
pub(crate) fn prefetch_runs<E>(runs: usize, len: usize, stride: usize) -> bool {
    let size = size_of::<E>();
    len * size <= 2048 && runs.saturating_mul(stride).saturating_mul(size) >= 8 << 20
}

/// Hints every cache line of `p .. p + len` into L2 (never faults).
///
/// The run loops over an NCHW channel call it for the next run while they work on this one:
/// the next run is a whole image away, too far for the hardware prefetcher to have started
/// on it, so short runs (a 28×28 plane of 16-bit values is 24 lines) would each begin with a
/// wait for DRAM. Measured on NCHW (64,256,28,28), 1 thread: bf16 training forward 1.9–2.4 →
/// 3.3–3.4 Gelem/s, f16 3.0–3.3 → 4.2–4.3.
#[inline(always)]
pub(crate) fn prefetch_l2_lines<S: Simd, E>(s: S, p: *const E, len: usize) {
    let (p, bytes) = (p.cast::<u8>(), len * size_of::<E>());
    let mut off = 0;
    while off < bytes {
        s.prefetch_l2(p.wrapping_add(off).cast());
        off += 64;
    }
}

/// Length of vector `v` of a `w`-wide row segment.
#[inline(always)]
pub(crate) fn vec_len(w: usize, v: usize) -> usize {
    (w - v * LANES).min(LANES)
}

/// Widest row segment [`sums_rows`] takes: its accumulators live in registers. Wider rows
/// are summed segment by segment over a chunk of rows that stays in L2 (accumulators in
/// memory for whole 4 KB rows were slower: NC (4096,1024) statistics 0.90 → 0.78 ms).
pub(crate) const ROW_SEGMENT: usize = 64;

/// Per-column `[Σt; Σp·q]` of `rows` rows of a segment of `w <= ROW_SEGMENT` columns at
/// `r·stride` from `t`, centres `centres[0..w]`, added to `out[0..w]` and `out[w..2w]`.
///
/// Rows are read in order (sequential streams when the segment is a whole row); each column is
/// one lane of two pairs of accumulators (even and odd rows: twice the independent dependency
/// chains, as one add per row per vector is otherwise latency-bound on narrow rows), flushed
/// to `out` as `even + odd` every [`FLUSH_ROWS`] rows and at the end. The flush points depend only on `rows`, so a caller that cuts the rows into chunks of
/// a multiple of [`FLUSH_ROWS`] gets the same bits on any thread count.
///
/// # Safety
/// `t` valid for `r·stride + [0, w)` for every `r < rows`; `centres` valid for `w` reads,
/// `out` for `2w` reads and writes; `0 < w <= ROW_SEGMENT`.
#[inline(always)]
pub(crate) unsafe fn sums_rows<S: Simd, T: Terms<S>>(
    s: S,
    t: T,
    rows: usize,
    stride: usize,
    w: usize,
    centres: *const f32,
    out: *mut f64,
) {
    // SAFETY: (all arms) forwarded; w <= 64 is four vectors at most. A const vector count
    // keeps the accumulators in registers.
    unsafe {
        match w.div_ceil(LANES) {
            1 => sums_rows_n::<S, T, 1>(s, t, rows, stride, w, centres, out),
            2 => sums_rows_n::<S, T, 2>(s, t, rows, stride, w, centres, out),
            3 => sums_rows_n::<S, T, 3>(s, t, rows, stride, w, centres, out),
            _ => sums_rows_n::<S, T, 4>(s, t, rows, stride, w, centres, out),
        }
    }
}

#[inline(always)]
unsafe fn sums_rows_n<S: Simd, T: Terms<S>, const NV: usize>(
    s: S,
    t: T,
    rows: usize,
    stride: usize,
    w: usize,
    centres: *const f32,
    out: *mut f64,
) {
    let mut c = [s.splat(0.0); NV];
    for (v, cv) in c.iter_mut().enumerate() {
        // SAFETY: `centres` holds w floats; `load` reads only vec_len of them (zeros after).
        *cv = unsafe { load(s, centres.add(v * LANES), vec_len(w, v)) };
    }
    // SAFETY: (all arms) forwarded. Whole-vector segments (the common case: channel counts
    // are multiples of 16) get a loop without masks.
    unsafe {
        if w == NV * LANES {
            if T::ROTATE && stride == w && !(t.base() as usize).is_multiple_of(64) {
                rotated::<S, NV>(s, t.base(), rows, w, centres, out)
            } else {
                pair_sums::<S, T, NV, true>(s, t, rows, stride, w, c, out)
            }
        } else {
            pair_sums::<S, T, NV, false>(s, t, rows, stride, w, c, out)
        }
    }
}

/// Adds one vector's terms to a pair of accumulators.
#[inline(always)]
fn acc<S: Simd, A: First<S>>(s: S, [t, p, q]: [S::F; 3], a1: &mut A, a2: &mut S::F) {
    *a1 = a1.add(s, t);
    *a2 = s.mul_add(p, q, *a2);
}

/// Adds row `r`'s terms (vectors `0..NV`, the last `last` long unless `FULL`) to `a1`, `a2`.
///
/// # Safety
/// Row `r` covered by the caller's contract.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn add_row<S: Simd, T: Terms<S>, const NV: usize, const FULL: bool>(
    s: S,
    t: T,
    r: usize,
    stride: usize,
    last: usize,
    c: &[S::F; NV],
    a1: &mut [T::First; NV],
    a2: &mut [S::F; NV],
) {
    for v in 0..NV {
        let n = if FULL || v + 1 < NV { LANES } else { last };
        // SAFETY: columns [16v, 16v + n) of a covered row.
        let terms = unsafe { t.at(s, r * stride + v * LANES, n, c[v]) };
        acc(s, terms, &mut a1[v], &mut a2[v]);
    }
}

/// Adds vector `v` of the column sums `s1` and `s2` — columns `16v ..` of `w` —
/// to `out[..w]`, `out[w..2w]`: vectorized for whole vectors, the same bits as a scalar loop.
///
/// # Safety
/// `out` valid for `2w` reads and writes; `16v < w`.
#[inline(always)]
unsafe fn flush_vector<S: Simd, A: First<S>>(
    s: S,
    s1: A,
    s2: S::F,
    w: usize,
    v: usize,
    out: *mut f64,
) {
    let (o, len) = (v * LANES, vec_len(w, v));
    // SAFETY: columns [o, o + len) < w.
    unsafe {
        if len == LANES {
            s1.add_to(s, out.add(o));
            s.add_to_f64(out.add(w + o), s2);
        } else {
            let (t1, t2) = (s1.lanes(s), s.to_array(s2));
            for l in 0..len {
                *out.add(o + l) += t1[l];
                *out.add(w + o + l) += t2[l] as f64;
            }
        }
    }
}

/// The row sums (see [`sums_rows`]) through plain loads of each row.
///
/// # Safety
/// As [`sums_rows`]; `c` the centres by lane (0 past `w`).
#[inline(always)]
unsafe fn pair_sums<S: Simd, T: Terms<S>, const NV: usize, const FULL: bool>(
    s: S,
    t: T,
    rows: usize,
    stride: usize,
    w: usize,
    c: [S::F; NV],
    out: *mut f64,
) {
    let z = s.splat(0.0);
    let last = vec_len(w, NV - 1);
    let mut r = 0;
    while r < rows {
        let end = (r + FLUSH_ROWS).min(rows);
        let (mut e1, mut o1) = ([T::First::zero(s); NV], [T::First::zero(s); NV]);
        let (mut e2, mut o2) = ([z; NV], [z; NV]);
        let mut q = r;
        // SAFETY: rows q and q + 1 are below `end <= rows`.
        unsafe {
            while q + 1 < end {
                add_row::<S, T, NV, FULL>(s, t, q, stride, last, &c, &mut e1, &mut e2);
                add_row::<S, T, NV, FULL>(s, t, q + 1, stride, last, &c, &mut o1, &mut o2);
                q += 2;
            }
            if q < end {
                add_row::<S, T, NV, FULL>(s, t, q, stride, last, &c, &mut e1, &mut e2);
            }
        }
        for v in 0..NV {
            let (s1, s2) = (e1[v].plus(s, o1[v]), s.add(e2[v], o2[v]));
            // SAFETY: `out` holds 2w f64; columns [16v, 16v + vec_len) < w.
            unsafe { flush_vector(s, s1, s2, w, v, out) };
        }
        r = end;
    }
}

/// The forward's terms of vector 0 of an aligned row with only the lanes of `keep`. (A
/// function, not a closure: a closure left out of line would lose the target features.)
#[inline(always)]
fn masked<S: Simd>(s: S, a: S::F, keep: u16, k0: S::F, one: S::F) -> [S::F; 3] {
    let d = s.mul_keep(keep, s.sub(a, k0), one);
    [s.mul_keep(keep, a, one), d, d]
}

/// The forward's row sums for whole rows of `c = 16·NV` columns whose start `x` is not 64-byte
/// aligned (large buffers start 16 bytes past a page): every row then straddles cache lines
/// the same way, and each load would touch two lines (in cache, twice the L1 accesses). This
/// reads aligned vectors instead — "aligned row" `r` is the `c` floats from `x − m + r·c`, `m`
/// the misalignment in floats — so lane `l` of aligned vector `v` always holds column
/// `(16v + l − m) mod c`, and its first `m` lanes hold the end of row `r − 1`.
///
/// The bits are those of [`pair_sums`], because per column the same terms meet in the same
/// order: each lane adds its column's rows in order, flushes after the same 64-row blocks (the
/// end of a block's last row is carried in from the next aligned row), and the even/odd sets
/// of the second sum hold the same rows — swapped for the last `m` columns, whose row `r − 1`
/// arrives with aligned row `r`, which the flush undoes by adding `E + O` in that order.
///
/// # Safety
/// As [`sums_rows`] with `stride == c`; `x` not 64-byte aligned.
#[inline(always)]
unsafe fn rotated<S: Simd, const NV: usize>(
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
    let mut k = [z; NV];
    for (v, kv) in k.iter_mut().enumerate() {
        let mut lanes = [0.0f32; LANES];
        for (l, p) in lanes.iter_mut().enumerate() {
            // Lane l of vector v holds column (v·LANES + l − m) mod c.
            // SAFETY: `pivots` holds c floats.
            *p = unsafe { *pivots.add((v * LANES + l + c - m) % c) };
        }
        // SAFETY: a 16-float local array.
        *kv = unsafe { s.loadu(lanes.as_ptr()) };
    }
    let (tail, head) = (low_bits(m), !low_bits(m));
    let one = s.splat(1.0);
    let rows_at = XTerms { x: base };
    let mut r = 0;
    while r < rows {
        let end = (r + FLUSH_ROWS).min(rows);
        let (mut e1, mut o1) = ([Wide::<S>::zero(s); NV], [Wide::<S>::zero(s); NV]);
        let (mut e2, mut o2) = ([z; NV], [z; NV]);
        // SAFETY: (whole block) aligned rows r .. end lie within x − m .. x + rows·c, read
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
            acc(s, masked(s, a0, head, k[0], one), &mut e1[0], &mut e2[0]);
            for v in 1..NV {
                let terms = Terms::<S>::at(rows_at, s, r * c + v * LANES, LANES, k[v]);
                acc(s, terms, &mut e1[v], &mut e2[v]);
            }
            let mut q = r + 1;
            while q + 1 < end {
                add_row::<S, _, NV, true>(s, rows_at, q, c, LANES, &k, &mut o1, &mut o2);
                add_row::<S, _, NV, true>(s, rows_at, q + 1, c, LANES, &k, &mut e1, &mut e2);
                q += 2;
            }
            if q < end {
                add_row::<S, _, NV, true>(s, rows_at, q, c, LANES, &k, &mut o1, &mut o2);
            }
            let p = base.wrapping_add(end * c);
            // The end of row end − 1: the first m lanes of aligned row `end`, in the set of
            // `end`'s parity like every other aligned row's first m lanes.
            let a = if end < rows {
                s.loadu(p)
            } else {
                s.load_keep(p, tail)
            };
            let (c1, c2) = if (end - r).is_multiple_of(2) {
                (&mut e1[0], &mut e2[0])
            } else {
                (&mut o1[0], &mut o2[0])
            };
            acc(s, masked(s, a, tail, k[0], one), c1, c2);
        }
        // Per lane E + O — for the last m columns' lanes O + E, undoing their swap (the same
        // sum but for NaN payloads) — then rotated back to column order through buffers in
        // which vector u of the columns starts m lanes into aligned vector u.
        let mut b1 = [0.0f64; ROW_SEGMENT + LANES];
        let mut b2 = [0.0f32; ROW_SEGMENT + LANES];
        for v in 0..NV {
            let mut t1 = e1[v].plus(s, o1[v]);
            let mut t2 = s.add(e2[v], o2[v]);
            if v == 0 {
                t1 = t1.select(s, head, o1[0].plus(s, e1[0]));
                let w2 = s.add(o2[0], e2[0]);
                // Neither sum is −0 (the accumulators start at +0), so adding the +0 lanes
                // that `mul_keep` leaves changes no bits.
                t2 = s.add(s.mul_keep(head, t2, one), s.mul_keep(tail, w2, one));
                b1[c..c + LANES].copy_from_slice(&t1.lanes(s));
                // SAFETY: the buffer holds c + 16 floats.
                unsafe { s.storeu(b2.as_mut_ptr().add(c), t2) };
            }
            b1[v * LANES..(v + 1) * LANES].copy_from_slice(&t1.lanes(s));
            // SAFETY: 16v + 16 <= c.
            unsafe { s.storeu(b2.as_mut_ptr().add(v * LANES), t2) };
        }
        for u in 0..NV {
            let at = u * LANES + m;
            let mut t1 = [0.0f64; LANES];
            t1.copy_from_slice(&b1[at..at + LANES]);
            // SAFETY: 16u + m + 16 <= c + 16; `out` holds 2c f64 and column 16u < c.
            unsafe {
                let t2 = s.loadu(b2.as_ptr().add(at));
                flush_vector(s, Wide::<S>(s.w_from_array(t1)), t2, c, u, out);
            }
        }
        r = end;
    }
}
