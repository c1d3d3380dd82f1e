//! Disjoint per-channel access to an NCHW tensor for the batch-norm kernels.
//!
//! A channel of an NCHW tensor is N strided runs, so channels cannot be handed to rayon tasks
//! as plain `&mut` sub-slices. (NC and NHWC tensors are processed by rows, which are plain
//! sub-slices, and need none of this.)
//! [`for_each_block`] cuts the channels into blocks of adjacent channels, gives each block to
//! exactly one task as a [`Block`], and a `Block` only ever reads and writes the elements of
//! its own channels. That is the whole soundness argument for the raw pointers below.

use core::marker::PhantomData;
use core::ops::Range;

use super::table::{Src, TypedKernels};
use crate::kernels::bn::Affine;
use crate::kernels::bn_backward::{BwdConsts, BwdIn};
use crate::parallel::{Par, for_each_chunk2};
use crate::simd::elem::Elem;

/// The shape of an NCHW tensor: channel `ch` is `n` runs of `hw` elements at
/// `(i·c + ch)·hw`, `i < n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Runs {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl Runs {
    fn numel(&self) -> usize {
        self.n * self.c * self.hw
    }
}

/// The input and output base pointers, shared by the tasks of one [`for_each_block`], of
/// element type `E` (f32 for the training forward; any for inference).
pub(crate) struct Base<E = f32> {
    x: *const E,
    y: *mut E,
    /// A second input with the layout of `x` (the residual of add+ReLU), or null.
    r: *const E,
}

// Manual impls: a derive would ask `E: Copy`; raw pointers are `Copy` whatever `E`.
impl<E> Clone for Base<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Base<E> {}

// SAFETY: the pointers come from a `&[f32]`/`&mut [f32]` borrowed for the whole
// `for_each_block` call, and each task touches only the channels of its own block, so no
// element is written by one task while another task reads or writes it.
unsafe impl<E> Send for Base<E> {}
// SAFETY: as above.
unsafe impl<E> Sync for Base<E> {}

/// Exclusive access to the channels `c0 .. c1` of an NCHW tensor, through the pointers `P`
/// ([`Base`] for forward and inference, [`BwdBase`] for backward).
pub(crate) struct ChannelBlock<'a, P> {
    base: P,
    geo: Runs,
    c0: usize,
    c1: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

impl<P> ChannelBlock<'_, P> {
    /// The block's channels.
    pub(crate) fn channels(&self) -> Range<usize> {
        self.c0..self.c1
    }
}

/// A block of a forward or inference (input, output, residual).
pub(crate) type Block<'a, E = f32> = ChannelBlock<'a, Base<E>>;

impl<E: Elem> Block<'_, E> {
    /// The residual (if any) at element offset `at`.
    fn res_at(&self, at: usize) -> *const E {
        if self.base.r.is_null() {
            self.base.r
        } else {
            self.base.r.wrapping_add(at)
        }
    }

    /// Normalizes every channel of the block with `aff[i]` for channel `c0 + i`, in address
    /// order, adding the residual (if the block has one) before the ReLU.
    pub(crate) fn normalize_all(
        &mut self,
        t: &TypedKernels<E>,
        aff: &[Affine],
        relu: bool,
        nt: bool,
    ) {
        let w = self.c1 - self.c0;
        assert!(
            aff.len() >= w && !self.base.y.is_null(),
            "normalize on a read-only block"
        );
        let Runs { n, c, hw } = self.geo;
        let at = self.c0 * hw;
        let (x, y) = (self.base.x.wrapping_add(at), self.base.y.wrapping_add(at));
        let r = self.res_at(at);
        // SAFETY: features checked; image i's runs of channels c0..c1 are
        // [c0·hw + i·c·hw, +w·hw) of the tensors (x, y and the residual share the layout),
        // owned by this block; `aff` holds w constants.
        unsafe { (t.bn_normalize_runs)(x, y, n, hw, c * hw, w, aff.as_ptr(), r, relu, nt, 0) }
    }
}

impl<E: Elem> Block<'_, E> {
    /// For an NC tensor seen as `Runs { n: rows, c: columns, hw: 1 }` (a block is then a band
    /// of columns): normalizes the block's part of every row with the one-row tile `tile`
    /// (`[k; a; b]` of its columns, rows of `w + 16`; see `bn_normalize_tiled`), residual
    /// added before the ReLU, plain stores; rows in order, or from the last with `last_first`.
    pub(crate) fn normalize_row_bands(
        &mut self,
        t: &TypedKernels<E>,
        tile: &[f32],
        relu: bool,
        last_first: bool,
    ) {
        let w = self.c1 - self.c0;
        let Runs { n, c, hw } = self.geo;
        assert!(hw == 1 && w >= 16 && w.is_multiple_of(16) && tile.len() >= 3 * (w + 16));
        assert!(!self.base.y.is_null(), "normalize on a read-only block");
        for i in 0..n {
            let row = if last_first { n - 1 - i } else { i };
            let at = row * c + self.c0;
            let (x, y) = (self.base.x.wrapping_add(at), self.base.y.wrapping_add(at));
            let r = self.res_at(at);
            // SAFETY: features checked; row `row`'s columns c0..c1 are [row·c + c0, + w) of
            // the tensors (x, y and the residual share the layout), owned by this block; the
            // tile holds the padded rows of period w, which a run of w values never wraps.
            unsafe { (t.bn_normalize_tiled)(x, y, w, tile.as_ptr(), w, r, relu, false) }
        }
    }

    /// The input's first element of channel `ch` (a good pivot: it is a sample of the data).
    pub(crate) fn first(&self, ch: usize) -> f32 {
        assert!(self.channels().contains(&ch));
        let at = ch * self.geo.hw;
        // SAFETY: `for_each_block` only makes blocks of non-empty channels (every channel has
        // at least one element), and element `at` belongs to channel `ch` of this block.
        unsafe { (*self.base.x.add(at)).widen() }
    }

    /// `(n, c, hw)`, checking that `ch` is one of the block's channels.
    fn runs_geometry(&self, ch: usize) -> (usize, usize, usize) {
        assert!(self.channels().contains(&ch));
        (self.geo.n, self.geo.c, self.geo.hw)
    }

    /// Shifted sums `[Σ(x − K), Σ(x − K)²]` of NCHW channel `ch` around `pivot`.
    pub(crate) fn sums_one(&self, k: &TypedKernels<E>, ch: usize, pivot: f32) -> [f64; 2] {
        let (n, c, hw) = self.runs_geometry(ch);
        let mut t = [0.0f64; 2];
        let x = self.base.x.wrapping_add(ch * hw);
        // SAFETY: features checked when the table was handed out; run r of channel `ch` is
        // x + r·c·hw + [0, hw), inside the tensor, in this block.
        unsafe { (k.bn_sums_runs)(x, n, hw, c * hw, 1, &pivot, t.as_mut_ptr()) };
        t
    }

    /// Normalizes NCHW channel `ch` with `f`; with `prefetch_next`, prefetches channel
    /// `ch + 1` (if any) into L2 meanwhile.
    pub(crate) fn normalize_one(
        &mut self,
        t: &TypedKernels<E>,
        ch: usize,
        f: Affine,
        relu: bool,
        nt: bool,
        prefetch_next: bool,
    ) {
        let (n, c, hw) = self.runs_geometry(ch);
        assert!(!self.base.y.is_null(), "normalize on a read-only block");
        let pf = if prefetch_next && ch + 1 < c { hw } else { 0 };
        let (x, y) = (
            self.base.x.wrapping_add(ch * hw),
            self.base.y.wrapping_add(ch * hw),
        );
        let r = self.res_at(ch * hw);
        // SAFETY: features checked; run r of channel `ch` is [ch·hw + r·c·hw, +hw) of the
        // tensors (and the residual), owned by this block. Prefetches never fault.
        unsafe { (t.bn_normalize_runs)(x, y, n, hw, c * hw, 1, &f, r, relu, nt, pf) }
    }

    /// Normalizes NCHW channel `ch` with `f` and returns, from the same loop, the shifted sums
    /// of channel `next` around `pivot` — the same bits as [`Block::sums_one`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn normalize_sum_one(
        &mut self,
        k: &TypedKernels<E>,
        ch: usize,
        f: Affine,
        relu: bool,
        nt: bool,
        next: usize,
        pivot: f32,
    ) -> [f64; 2] {
        let (n, c, hw) = self.runs_geometry(ch);
        self.runs_geometry(next);
        assert!(!self.base.y.is_null(), "normalize on a read-only block");
        let (x, y) = (
            self.base.x.wrapping_add(ch * hw),
            self.base.y.wrapping_add(ch * hw),
        );
        let xs = self.base.x.wrapping_add(next * hw);
        let r = self.res_at(ch * hw);
        // SAFETY: features checked; channels `ch` and `next` are both in this block, their
        // run r at [· ·hw + r·c·hw, +hw) inside both tensors.
        unsafe { (k.bn_normalize_sum_runs)(x, y, n, hw, c * hw, f, r, relu, nt, xs, pivot) }
    }

    /// Shifted sums of each channel of the block: `out[i] = [Σ(x − K_i), Σ(x − K_i)²]` for
    /// channel `c0 + i` with pivot `pivots[i]`, the channels read together in address order.
    pub(crate) fn sums(&self, k: &TypedKernels<E>, pivots: &[f32], out: &mut [[f64; 2]]) {
        let w = self.c1 - self.c0;
        assert!(pivots.len() >= w && out.len() >= w && w <= 64);
        let Runs { n, c, hw } = self.geo;
        let mut t = [0.0f64; 128];
        let x = self.base.x.wrapping_add(self.c0 * hw);
        // SAFETY: features checked when the table was handed out; image r's runs of channels
        // c0..c1 are x + r·c·hw + [0, w·hw), inside the tensor (n·c·hw elements); `t` holds
        // 2w f64, `pivots` at least w floats.
        unsafe { (k.bn_sums_runs)(x, n, hw, c * hw, w, pivots.as_ptr(), t.as_mut_ptr()) };
        for (i, o) in out[..w].iter_mut().enumerate() {
            *o = [t[2 * i], t[2 * i + 1]];
        }
    }
}

/// Calls `f(block)` for the blocks of `width` adjacent channels of the NCHW tensor `y` (input
/// `x`, or `y` itself in place), each block also seeing the same channels of `res` (a second
/// input of the same shape, for add+ReLU). Each block goes to exactly one task.
pub(crate) fn for_each_block_res<E: Elem>(
    x: Src<E>,
    res: Option<&[E]>,
    y: &mut [E],
    geo: Runs,
    width: usize,
    par: Par,
    f: impl Fn(Block<'_, E>) + Sync + Send,
) {
    let c = geo.c;
    assert!(width > 0 && geo.numel() == y.len());
    assert!(res.is_none_or(|r| r.len() == y.len()), "residual length");
    if y.is_empty() {
        return;
    }
    let base = Base {
        x: x.ptr(y),
        y: y.as_mut_ptr(),
        r: res.map_or(core::ptr::null(), |r| r.as_ptr()),
    };
    crate::parallel::for_each_index(c.div_ceil(width), par, |bi| {
        let c0 = bi * width;
        f(Block {
            base,
            geo,
            c0,
            c1: (c0 + width).min(c),
            _borrow: PhantomData,
        })
    });
}

/// Calls `f(block, a_chunk, b_chunk)` for the blocks of `width` adjacent channels of the
/// tensor `y` (input `x`, or `y` itself in place; residual `res` for add+ReLU), `a` and `b` being per-channel outputs cut
/// into the same blocks. Each block goes to exactly one task; in parallel when `par`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn for_each_block<E: Elem, A: Send, B: Send>(
    x: Src<E>,
    res: Option<&[E]>,
    y: &mut [E],
    geo: Runs,
    width: usize,
    par: Par,
    a: &mut [A],
    b: &mut [B],
    f: impl Fn(Block<'_, E>, &mut [A], &mut [B]) + Sync + Send,
) {
    let c = geo.c;
    assert!(width > 0 && geo.numel() == y.len() && a.len() == c && b.len() == c);
    assert!(res.is_none_or(|r| r.len() == y.len()), "residual length");
    if y.is_empty() {
        return;
    }
    let base = Base {
        x: x.ptr(y),
        y: y.as_mut_ptr(),
        r: res.map_or(core::ptr::null(), |r| r.as_ptr()),
    };
    spread(base, geo, width, par, a, b, f);
}

/// Hands the blocks of `width` channels over `base` to `f` with the matching chunks of the
/// per-channel outputs `a` and `b`, each block to exactly one task.
fn spread<P: Copy + Send + Sync, A: Send, B: Send>(
    base: P,
    geo: Runs,
    width: usize,
    par: Par,
    a: &mut [A],
    b: &mut [B],
    f: impl Fn(ChannelBlock<'_, P>, &mut [A], &mut [B]) + Sync + Send,
) {
    for_each_chunk2(a, width, b, width, par, |bi, ac, bc| {
        let c0 = bi * width;
        let block = ChannelBlock {
            base,
            geo,
            c0,
            c1: c0 + ac.len(),
            _borrow: PhantomData,
        };
        f(block, ac, bc)
    });
}

/// Like [`for_each_block`] for reading only: blocks of `x`, with one per-channel output `a`.
/// The blocks' normalizing methods must not be called (they assert).
pub(crate) fn for_each_block_read<E: Elem, A: Send>(
    x: &[E],
    geo: Runs,
    width: usize,
    par: Par,
    a: &mut [A],
    f: impl Fn(Block<'_, E>, &mut [A]) + Sync + Send,
) {
    let c = geo.c;
    assert!(width > 0 && geo.numel() == x.len() && a.len() == c);
    if x.is_empty() {
        return;
    }
    let base = Base {
        x: x.as_ptr(),
        y: core::ptr::null_mut(),
        r: core::ptr::null(),
    };
    crate::parallel::for_each_chunk(a, width, par, |bi, ac| {
        let c0 = bi * width;
        let block = Block {
            base,
            geo,
            c0,
            c1: c0 + ac.len(),
            _borrow: PhantomData,
        };
        f(block, ac)
    });
}

/// Pointers of a batch-norm backward over an NCHW tensor of element type `E`.
pub(crate) struct BwdBase<E = f32> {
    inp: BwdIn<E>,
    dx: *mut E,
    dr: *mut E,
}

// Manual impls: a derive would ask `E: Copy`; raw pointers are `Copy` whatever `E`.
impl<E> Clone for BwdBase<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for BwdBase<E> {}

// SAFETY: as for `Base`: borrowed for the whole `for_each_bwd_block` call, and each task
// touches only its own channels of the outputs.
unsafe impl<E> Send for BwdBase<E> {}
// SAFETY: as above.
unsafe impl<E> Sync for BwdBase<E> {}

/// A block of a batch-norm backward (its channels of the outputs).
pub(crate) type BwdBlock<'a, E = f32> = ChannelBlock<'a, BwdBase<E>>;

impl<E: Elem> BwdBlock<'_, E> {
    fn inputs(&self, ch: usize) -> (BwdIn<E>, usize) {
        assert!(self.channels().contains(&ch));
        let at = ch * self.geo.hw;
        let i = self.base.inp;
        let inp = BwdIn {
            x: i.x.wrapping_add(at),
            dy: i.dy.wrapping_add(at),
            y: if i.y.is_null() {
                i.y
            } else {
                i.y.wrapping_add(at)
            },
        };
        (inp, at)
    }

    /// `[Σdy, Σdy·(x − mean)]` of channel `ch` (dy masked by `y > 0` with a fused ReLU).
    pub(crate) fn sums(&self, k: &TypedKernels<E>, ch: usize, mean: f32) -> [f64; 2] {
        let (inp, _) = self.inputs(ch);
        let Runs { n, c, hw } = self.geo;
        // SAFETY: features checked; run r of channel `ch` is at ch·hw + r·c·hw, inside every
        // input (all have the tensor's n·c·hw elements).
        unsafe { (k.bn_bwd_sums_runs)(inp, n, hw, c * hw, mean) }
    }

    /// `dx` (and `dr`) of channel `ch` with constants `f`.
    pub(crate) fn dx(
        &mut self,
        k: &TypedKernels<E>,
        ch: usize,
        f: BwdConsts,
        nt: bool,
        last_first: bool,
    ) {
        assert!(!self.base.dx.is_null(), "dx on a read-only block");
        let (inp, at) = self.inputs(ch);
        let Runs { n, c, hw } = self.geo;
        let dx = self.base.dx.wrapping_add(at);
        let dr = if self.base.dr.is_null() {
            self.base.dr
        } else {
            self.base.dr.wrapping_add(at)
        };
        // SAFETY: features checked; channel `ch`'s runs of the outputs belong to this block;
        // dy may alias dx (in place), which the kernel allows.
        unsafe { (k.bn_bwd_dx_runs)(inp, dx, dr, n, hw, c * hw, f, nt, last_first) }
    }
}

/// Calls `f(block, a_chunk, b_chunk)` for blocks of `width` adjacent channels of an NCHW
/// backward: inputs `x`, `dy` (or `dx` itself, in place) and the forward output `y` (for a
/// fused ReLU), outputs `dx` and `dr` (for add+ReLU), per-channel outputs `a`, `b`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn for_each_bwd_block<E: Elem, A: Send, B: Send>(
    x: &[E],
    dy: Src<E>,
    y: Option<&[E]>,
    dx: &mut [E],
    dr: Option<&mut [E]>,
    geo: Runs,
    width: usize,
    par: Par,
    a: &mut [A],
    b: &mut [B],
    f: impl Fn(BwdBlock<'_, E>, &mut [A], &mut [B]) + Sync + Send,
) {
    let n = geo.numel();
    assert!(width > 0 && x.len() == n && dx.len() == n && a.len() == geo.c && b.len() == geo.c);
    assert!(y.is_none_or(|y| y.len() == n) && dr.as_ref().is_none_or(|d| d.len() == n));
    if n == 0 {
        return;
    }
    let base = BwdBase {
        inp: BwdIn {
            x: x.as_ptr(),
            dy: dy.ptr(dx),
            y: y.map_or(core::ptr::null(), |y| y.as_ptr()),
        },
        dx: dx.as_mut_ptr(),
        dr: dr.map_or(core::ptr::null_mut(), |d| d.as_mut_ptr()),
    };
    spread(base, geo, width, par, a, b, f);
}

/// Like [`for_each_bwd_block`] for reading only (the split-phase backward's sums): blocks of
/// the inputs `x`, `dy`, `y`, with one per-channel output `a`. The blocks' `dx` methods must
/// not be called (they assert).
#[allow(clippy::too_many_arguments)]
pub(crate) fn for_each_bwd_block_read<E: Elem, A: Send>(
    x: &[E],
    dy: &[E],
    y: Option<&[E]>,
    geo: Runs,
    width: usize,
    par: Par,
    a: &mut [A],
    f: impl Fn(BwdBlock<'_, E>, &mut [A]) + Sync + Send,
) {
    let n = geo.numel();
    assert!(width > 0 && x.len() == n && dy.len() == n && a.len() == geo.c);
    assert!(y.is_none_or(|y| y.len() == n));
    if n == 0 {
        return;
    }
    let base = BwdBase {
        inp: BwdIn {
            x: x.as_ptr(),
            dy: dy.as_ptr(),
            y: y.map_or(core::ptr::null(), |y| y.as_ptr()),
        },
        dx: core::ptr::null_mut(),
        dr: core::ptr::null_mut(),
    };
    crate::parallel::for_each_chunk(a, width, par, |bi, ac| {
        let c0 = bi * width;
        let block = ChannelBlock {
            base,
            geo,
            c0,
            c1: c0 + ac.len(),
            _borrow: PhantomData,
        };
        f(block, ac)
    });
}
