//! Batch-norm backward kernel bodies: the two per-channel reductions `Σdy` and
//! `Σdy·(x − mean)`, and `dx = a·dy + c1·(x − mean) + c0` with per-channel constants.
//!
//! With a fused ReLU (forward `y = relu(...)`), `dy` is first masked by `y > 0`; with the fused
//! residual add + ReLU the masked `dy` is also the residual's gradient `dr`, written alongside.

use crate::kernels::stream::{
    Lanes, OverTile64, Tile64, WithConsts, load, load_for_arith, store, write_stream,
    write_stream_unfenced,
};
use crate::kernels::sums::{self, Narrow, Terms, prefetch_l2_lines};
use crate::simd::elem::Elem;
use crate::simd::{LANES, Simd};

/// The inputs of one run (or row block): `x`, `dy` and, for a fused ReLU, the forward output
/// `y` (null: no mask).
pub(crate) struct BwdIn<E = f32> {
    pub x: *const E,
    pub dy: *const E,
    pub y: *const E,
}

// Manual impls: a derive would ask `E: Copy`; raw pointers are `Copy` whatever `E`.
impl<E> Clone for BwdIn<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for BwdIn<E> {}

impl<E: Elem> BwdIn<E> {
    /// Whether there is no ReLU mask and no `dr`: the plain backward, which the kernels run
    /// with [`BwdIn::unmasked`] and a literal null `dr`, so that the per-vector tests of
    /// both fold away (LLVM does not unswitch the loops on them by itself).
    #[inline(always)]
    fn is_plain(self, dr: *mut E) -> bool {
        self.y.is_null() && dr.is_null()
    }

    /// These inputs with a literal null `y`.
    #[inline(always)]
    fn unmasked(self) -> Self {
        BwdIn {
            y: core::ptr::null(),
            ..self
        }
    }

    /// The same inputs `at` elements further.
    #[inline(always)]
    fn add(self, at: usize) -> BwdIn<E> {
        BwdIn {
            x: self.x.wrapping_add(at),
            dy: self.dy.wrapping_add(at),
            y: if self.y.is_null() {
                self.y
            } else {
                self.y.wrapping_add(at)
            },
        }
    }

    /// `dy` at `i..i+len`, masked by `y > 0` when there is a `y`.
    ///
    /// # Safety
    /// `dy` (and `y`) valid for reads of `i..i+len`.
    #[inline(always)]
    unsafe fn dy<S: Simd>(self, s: S, i: usize, len: usize) -> S::F {
        // SAFETY: forwarded.
        unsafe {
            let d = load(s, self.dy.add(i), len);
            if self.y.is_null() {
                d
            } else {
                s.keep_where_positive(load(s, self.y.add(i), len), d)
            }
        }
    }
}

/// Backward's terms `dy`, `dy`, `x − mean` (centre: the mean).
impl<S: Simd, E: Elem> Terms<S> for BwdIn<E> {
    // f32 suffices for Σdy (it enters dx through mean(dy), beside terms of the same size).
    type First = Narrow<S>;
    type Elem = E;

    #[inline(always)]
    unsafe fn at(self, s: S, i: usize, len: usize, m: S::F) -> [S::F; 3] {
        // SAFETY: forwarded. Past `len`, dy loads as 0: both terms add nothing.
        unsafe {
            let d = self.dy(s, i, len);
            [d, d, s.sub(load_for_arith(s, self.x.add(i), len), m)]
        }
    }

    #[inline(always)]
    fn offset(self, at: usize) -> Self {
        self.add(at)
    }

    #[inline(always)]
    fn prefetch(self, s: S, len: usize) {
        prefetch_l2_lines(s, self.x, len);
        prefetch_l2_lines(s, self.dy, len);
        if !self.y.is_null() {
            prefetch_l2_lines(s, self.y, len);
        }
    }

    #[inline(always)]
    fn base(self) -> *const f32 {
        // Never read (`ROTATE` is false for backward's terms).
        self.x.cast()
    }
}

/// Per-channel constants of `dx = a·dy + c1·(x − m) + c0`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BwdConsts {
    pub m: f32,
    pub a: f32,
    pub c1: f32,
    pub c0: f32,
}

/// A channel's `dx` constants `[a, c1, c0]` and `[dγ, dβ]` from `γ` (`g`), `invstd` (`is`)
/// and its sums `Σdy`, `Σdy·(x − m)` over `n` values: `a = γ·is`; with `batch`,
/// `c1 = −γ·is³·Σdy·(x − m)/n` and `c0 = −γ·is·Σdy/n` (else 0: in eval mode mean and invstd
/// are constants); `dγ = Σdy·(x − m)·is`, `dβ = Σdy`. The one definition of this arithmetic,
/// for the channel-at-a-time constants and the vectorized [`row_consts`], which must agree
/// bit for bit.
#[inline(always)]
pub(crate) fn coefficients(
    g: f64,
    is: f64,
    s_dy: f64,
    s_dyx: f64,
    n: f64,
    batch: bool,
) -> ([f32; 3], [f32; 2]) {
    let (c1, c0) = if batch {
        (-g * is * is * is * s_dyx / n, -g * is * s_dy / n)
    } else {
        (0.0, 0.0)
    };
    (
        [(g * is) as f32, c1 as f32, c0 as f32],
        [(s_dyx * is) as f32, s_dy as f32],
    )
}

/// The `dx` constants of `c` NC/NHWC columns at once from their row sums, by
/// [`coefficients`] as `batch_norm::backward::bwd_consts` makes them one at a time: `sums` in the
/// row kernels' layout (`[Σdy; Σdy·(x − m)]` per segment of
/// [`ROW_SEGMENT`](crate::kernels::sums::ROW_SEGMENT) columns) over `count` values; rows
/// `[m; a; c1; c0]` of `c` floats into `out`, `dγ` and `dβ` into `dgamma`, `dbeta`. Scalar per
/// channel, with its two f64 divisions, this was most of a wide backward call's fixed cost.
///
/// # Safety
/// `sums` valid for `2c` reads; `mean`, `invstd` (and `gamma` when not null) for `c` reads;
/// `out` for `4c` writes, `dgamma` and `dbeta` for `c` writes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn row_consts<S: Simd>(
    _: S,
    sums: *const f64,
    c: usize,
    count: usize,
    gamma: *const f32,
    mean: *const f32,
    invstd: *const f32,
    batch: bool,
    out: *mut f32,
    dgamma: *mut f32,
    dbeta: *mut f32,
) {
    let n = count as f64;
    let mut c0 = 0;
    while c0 < c {
        let w = crate::kernels::sums::ROW_SEGMENT.min(c - c0);
        // SAFETY: the segment's sums are [2·c0, 2·c0 + 2w) ⊂ [0, 2c), its channels
        // [c0, c0 + w) ⊂ [0, c); the four output rows are [0, 4c).
        unsafe {
            let (s1, s2) = (sums.add(2 * c0), sums.add(2 * c0 + w));
            for i in 0..w {
                let ch = c0 + i;
                let (s_dy, s_dyx) = (*s1.add(i), *s2.add(i));
                let g = if gamma.is_null() { 1.0 } else { *gamma.add(ch) } as f64;
                let is = *invstd.add(ch) as f64;
                let ([a, c1, c0], [dg, db]) = coefficients(g, is, s_dy, s_dyx, n, batch);
                *out.add(ch) = *mean.add(ch);
                *out.add(c + ch) = a;
                *out.add(2 * c + ch) = c1;
                *out.add(3 * c + ch) = c0;
                *dgamma.add(ch) = dg;
                *dbeta.add(ch) = db;
            }
        }
        c0 += w;
    }
}

/// `[Σdy, Σdy·(x − mean)]` of one NCHW channel: `runs` runs of `len` at `r·stride`.
///
/// # Safety
/// The inputs valid for reads of `r·stride + [0, len)` for every `r < runs`.
#[inline(always)]
pub(crate) unsafe fn sums_runs<S: Simd, E: Elem>(
    s: S,
    inp: BwdIn<E>,
    runs: usize,
    len: usize,
    stride: usize,
    mean: f32,
) -> [f64; 2] {
    // SAFETY: (both) forwarded. Without a ReLU mask the loop runs with a literal null `y`:
    // LLVM did not unswitch the per-vector test itself (bf16 kept a test and branch per
    // vector in the loop).
    unsafe {
        if inp.y.is_null() {
            sums::sums_runs(s, inp.unmasked(), runs, len, stride, mean)
        } else {
            sums::sums_runs(s, inp, runs, len, stride, mean)
        }
    }
}

/// `dx` (and `dr`) of one vector.
struct Dx<S: Simd, E> {
    inp: BwdIn<E>,
    dr: *mut E,
    m: S::F,
    a: S::F,
    c1: S::F,
    c0: S::F,
}

impl<S: Simd, E: Elem> Dx<S, E> {
    /// The `dx` of the run `at` elements into the inputs and outputs, with constants `c`.
    #[inline(always)]
    fn new(s: S, inp: BwdIn<E>, dr: *mut E, at: usize, c: BwdConsts) -> Self {
        Dx {
            inp: inp.add(at),
            dr: if dr.is_null() {
                dr
            } else {
                dr.wrapping_add(at)
            },
            m: s.splat(c.m),
            a: s.splat(c.a),
            c1: s.splat(c.c1),
            c0: s.splat(c.c0),
        }
    }
}

impl<S: Simd, E: Elem> Lanes<S> for Dx<S, E> {
    const PREFETCH_W: bool = true;

    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        let consts = [self.m, self.a, self.c1, self.c0];
        // SAFETY: the kernel's contract covers i..i+len of every input and of `dr`.
        unsafe { DxValue::value(s, self.inp, self.dr, i, len, consts) }
    }
}

/// `dx = a·dy + c1·(x − m) + c0` over one NCHW channel's runs, and `dr = dy` (masked) when
/// `dr` is not null. `dx` may equal `dy` (in place).
///
/// `last_first`: the runs from the last to the first. Right after the channel's sums, whose
/// last runs are still in L1, that order reads those first instead of evicting them (on the
/// AMD EPYC machine, 1 thread: NCHW (8,32,28,28) f32 about 0.93× the time of first to last).
///
/// # Safety
/// For every `r < runs`: the inputs readable and `dx` (and `dr`) writable at
/// `r·stride + [0, len)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dx_runs<S: Simd, E: Elem>(
    s: S,
    inp: BwdIn<E>,
    dx: *mut E,
    dr: *mut E,
    runs: usize,
    len: usize,
    stride: usize,
    c: BwdConsts,
    nt: bool,
    last_first: bool,
) {
    // SAFETY: (both) forwarded; the plain case's `y` and `dr` are null, as tested.
    unsafe {
        if inp.is_plain(dr) {
            let null = core::ptr::null_mut();
            let inp = inp.unmasked();
            dx_runs_body(s, inp, dx, null, runs, len, stride, c, nt, last_first);
        } else {
            dx_runs_body(s, inp, dx, dr, runs, len, stride, c, nt, last_first);
        }
    }
}

/// [`dx_runs`]' loop.
///
/// # Safety
/// As [`dx_runs`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dx_runs_body<S: Simd, E: Elem>(
    s: S,
    inp: BwdIn<E>,
    dx: *mut E,
    dr: *mut E,
    runs: usize,
    len: usize,
    stride: usize,
    c: BwdConsts,
    nt: bool,
    last_first: bool,
) {
    for i in 0..runs {
        let r = if last_first { runs - 1 - i } else { i };
        let at = r * stride;
        let op = Dx::<S, E>::new(s, inp, dr, at, c);
        // SAFETY: run r is within the contract.
        unsafe { write_stream_unfenced(s, dx.add(at), len, nt, op) };
    }
    if nt {
        s.fence();
    }
}

/// Per-column `[Σdy; Σdy·(x − mean)]` (`out[0..w]`, `out[w..2w]`, added to) for `rows` rows
/// of a segment of `w <= 64` columns at `r·stride`, means `mean[0..w]`; flushed to f64 every
/// 64 rows and at the end, like the forward's row sums.
///
/// # Safety
/// The inputs readable at `r·stride + [0, w)` for every `r < rows`; `mean` valid for `w`
/// reads, `out` for `2w` reads and writes; `0 < w <= 64`.
#[inline(always)]
pub(crate) unsafe fn sums_rows<S: Simd, E: Elem>(
    s: S,
    inp: BwdIn<E>,
    rows: usize,
    stride: usize,
    w: usize,
    mean: *const f32,
    out: *mut f64,
) {
    // SAFETY: (both) forwarded.
    unsafe {
        if inp.y.is_null() {
            sums::sums_rows(s, inp.unmasked(), rows, stride, w, mean, out)
        } else {
            sums::sums_rows(s, inp, rows, stride, w, mean, out)
        }
    }
}

/// `dx` (and `dr`) with per-element constants of period `l` from `aff = [m; a; c1; c0]` (rows
/// of `l + 16`, the last 16 repeating the first), like the forward's tiled normalization.
struct DxTiled<S: Simd, E> {
    inp: BwdIn<E>,
    dr: *mut E,
    aff: *const f32,
    l: usize,
    _s: core::marker::PhantomData<S>,
}

impl<S: Simd, E: Elem> Lanes<S> for DxTiled<S, E> {
    const PREFETCH_W: bool = true;

    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        let r = self.l + LANES;
        // SAFETY: i < l within one tile (the caller streams tile by tile), len <= 16: the
        // constant loads stay inside rows of l + 16; the rest is the kernel's contract.
        unsafe {
            let m = load(s, self.aff.add(i), len);
            let a = load(s, self.aff.add(r + i), len);
            let c1 = load(s, self.aff.add(2 * r + i), len);
            let c0 = load(s, self.aff.add(3 * r + i), len);
            DxValue::value(s, self.inp, self.dr, i, len, [m, a, c1, c0])
        }
    }
}

/// `dx` for `n` contiguous values of an NC/NHWC tensor whose per-column constants repeat with
/// period `l` (whole rows), tile by tile, and `dr` when not null. `dx` may equal `dy`.
///
/// # Safety
/// The inputs readable, `dx` (and `dr`) writable for `n` values; `aff` valid for
/// `4(l + 16)` reads.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dx_tiled<S: Simd, E: Elem>(
    s: S,
    inp: BwdIn<E>,
    dx: *mut E,
    dr: *mut E,
    n: usize,
    aff: *const f32,
    l: usize,
    nt: bool,
) {
    // SAFETY: (both) forwarded; the plain case's `y` and `dr` are null, as tested.
    unsafe {
        if inp.is_plain(dr) {
            let null = core::ptr::null_mut();
            dx_tiled_body(s, inp.unmasked(), dx, null, n, aff, l, nt);
        } else {
            dx_tiled_body(s, inp, dx, dr, n, aff, l, nt);
        }
    }
}

/// [`dx_tiled`]'s loops.
///
/// # Safety
/// As [`dx_tiled`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dx_tiled_body<S: Simd, E: Elem>(
    s: S,
    inp: BwdIn<E>,
    dx: *mut E,
    dr: *mut E,
    n: usize,
    aff: *const f32,
    l: usize,
    nt: bool,
) {
    if l == 64 {
        // SAFETY: `aff` holds four rows of 64 + 16; the stream covers the contract's 0..n.
        unsafe {
            let op = OverTile64 {
                kernel: DxValue { inp, dr },
                tile: Tile64::new(s, aff, dx, n),
            };
            write_stream(s, dx, n, nt, op);
        }
        return;
    }
    for t0 in (0..n).step_by(l) {
        let op = DxTiled::<S, E> {
            inp: inp.add(t0),
            dr: if dr.is_null() {
                dr
            } else {
                dr.wrapping_add(t0)
            },
            aff,
            l,
            _s: core::marker::PhantomData,
        };
        // SAFETY: the tile [t0, t0 + l) ∩ [0, n) is within the contract.
        unsafe { write_stream_unfenced(s, dx.add(t0), l.min(n - t0), nt, op) };
    }
    // One fence for all tiles: one per tile drained the write-combining buffers every 4 KB.
    if nt {
        s.fence();
    }
}

/// The `dx` (and `dr`) of the vectors of one stream given their constants: every backward
/// `dx` kernel's arithmetic, and with constants of period 64 a kernel of its own (see
/// [`OverTile64`]).
struct DxValue<E> {
    inp: BwdIn<E>,
    dr: *mut E,
}

impl<E: Elem> DxValue<E> {
    /// `dx = a·dy + c1·(x − m) + c0` of elements `i..i+len` (and `dr = dy`, masked, when
    /// `dr` is not null): the value every backward kernel stores, whichever way it holds its
    /// constants.
    ///
    /// # Safety
    /// The inputs readable and `dr` (when not null) writable at `i..i+len`.
    #[inline(always)]
    unsafe fn value<S: Simd>(
        s: S,
        inp: BwdIn<E>,
        dr: *mut E,
        i: usize,
        len: usize,
        [m, a, c1, c0]: [S::F; 4],
    ) -> S::F {
        // SAFETY: forwarded.
        unsafe {
            let d = inp.dy(s, i, len);
            if !dr.is_null() {
                store(s, dr.add(i), len, d);
            }
            // x only feeds arithmetic (dy may also be stored as `dr`: loaded quiet).
            let xm = s.sub(load_for_arith(s, inp.x.add(i), len), m);
            s.mul_add(a, d, s.mul_add(c1, xm, c0))
        }
    }
}

impl<S: Simd, E: Elem> WithConsts<S, 4> for DxValue<E> {
    #[inline(always)]
    unsafe fn apply(&self, s: S, i: usize, len: usize, consts: [S::F; 4]) -> S::F {
        // SAFETY: the kernel's contract covers i..i+len of every input and output.
        unsafe { Self::value(s, self.inp, self.dr, i, len, consts) }
    }
}
