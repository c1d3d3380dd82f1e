//! The table type of kernel entry points and its safe, slice-based wrappers.
//!
//! The wrappers are the boundary of the unsafe layer: they check every length the entry point
//! relies on (an internal invariant — public functions have validated their arguments already,
//! so these asserts never fire on user input) and then call through the function pointer.

use crate::Isa;
use crate::kernels::bn_backward::BwdIn;
use crate::rng::{BLOCK, STREAMS, StreamState};

/// `kernel_list!(kernel_table)`: the table type, a function pointer per kernel.
macro_rules! kernel_table {
    (; $( $(#[$field:meta])* $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?
        => $kernel:path ; )*) => {
        /// Function pointers to one ISA's instantiation of every kernel. `Copy + Send + Sync`,
        /// so a rayon closure can capture it.
        #[derive(Clone, Copy)]
        pub(crate) struct Kernels {
            /// Whether this ISA has real non-temporal stores (its kernels write none: the
            /// streaming ones are in the typed tables; set by the shared `entry_points!`).
            #[allow(dead_code)]
            pub nt: bool,
            $(
                $(#[$field])*
                #[allow(clippy::type_complexity)]
                pub(super) $name: unsafe fn($($ty),*) $(-> $ret)?,
            )*
        }
    };
}
kernel_list!(kernel_table);

/// `typed_kernel_list!(typed_kernel_table)`: the table type of the kernels over element type
/// `E`, a function pointer per kernel.
macro_rules! typed_kernel_table {
    (; $( $(#[$field:meta])* $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?
        => $kernel:path ; )*) => {
        /// Function pointers to one ISA's instantiation of every kernel over element type `E`.
        /// `pub` only to be named by the sealed element trait; the module is private.
        pub struct TypedKernels<E: 'static> {
            /// Whether this ISA has real non-temporal stores.
            pub(crate) nt: bool,
            $(
                $(#[$field])*
                #[allow(clippy::type_complexity)]
                pub(super) $name: unsafe fn($($ty),*) $(-> $ret)?,
            )*
        }
    };
}
typed_kernel_list!(typed_kernel_table);

// Manual impls: a derive would ask `E: Clone`, which every element type is anyway.
impl<E> Clone for TypedKernels<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for TypedKernels<E> {}

/// Where an elementwise kernel reads its input: another slice, or the output itself.
pub(crate) enum Src<'a, E = f32> {
    /// Read from this slice (same length as the output).
    Slice(&'a [E]),
    /// Read from the output slice (in-place).
    InPlace,
}

// Manual impls: a derive would ask `E: Copy`; a shared slice is `Copy` whatever `E`.
impl<E> Clone for Src<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Src<'_, E> {}

impl<'a, E> Src<'a, E> {
    /// The part of the source that feeds `range` of the output.
    pub(crate) fn sub(self, range: core::ops::Range<usize>) -> Src<'a, E> {
        match self {
            Src::Slice(x) => Src::Slice(&x[range]),
            Src::InPlace => Src::InPlace,
        }
    }

    pub(super) fn ptr(self, y: &mut [E]) -> *const E {
        match self {
            Src::Slice(x) => {
                assert_eq!(x.len(), y.len(), "kernel source/output length");
                x.as_ptr()
            }
            Src::InPlace => y.as_ptr(),
        }
    }
}

/// Outputs at least this large (bytes) are written with non-temporal stores, which skip the
/// read-for-ownership of the destination: about 1.3× faster for outputs far larger than the
/// caches, about 3× slower for outputs that fit in them.
pub(crate) const NT_MIN_BYTES: usize = 32 << 20;

/// The threshold for kernels that read more than one input stream per output: the NC/NHWC
/// batch-norm passes (which read their input twice: plain stores of the output evict it
/// before its second read), and the kernels with two inputs (residual add + ReLU, backward's
/// `x` and `dy`), where the read-for-ownership is a fourth stream competing for one core's
/// memory parallelism. Streaming stores pay off from a smaller size there (measured: NC
/// (4096,1024) training 0.49 → 0.6 × copy; NCHW (32,64,56,56) backward 0.60 → 0.72,
/// add+ReLU 0.90 → 1.04; the training forward and inference, one input, gain nothing at
/// that size).
pub(crate) const NT_MIN_BYTES_HEAVY: usize = 8 << 20;

impl Kernels {
    /// The table for `isa`, or `None` if this CPU lacks it.
    pub(crate) fn for_isa(isa: Isa) -> Option<&'static Kernels> {
        if !isa.is_available() {
            return None;
        }
        match isa {
            Isa::Portable => Some(&super::entry::portable::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(&super::entry::avx2::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(&super::entry::avx512::KERNELS),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The four xoshiro128++ streams of RNG block `block` of the stream seeded `seed`.
    pub(crate) fn block_streams(&self, seed: u64, block: u64) -> [StreamState; STREAMS] {
        let mut out = core::mem::MaybeUninit::uninit();
        // SAFETY: `for_isa` handed out this table only if the CPU has its features; the
        // kernel writes `out` whole, so it is initialized after the call.
        unsafe {
            (self.block_streams)(seed, block, out.as_mut_ptr());
            out.assume_init()
        }
    }

    /// `out[i] = γ[i]·inv_std(var[i], eps)` in f64, rounded once (γ = 1 without `gamma`).
    pub(crate) fn bn_scale_consts(
        &self,
        var: &[f32],
        gamma: Option<&[f32]>,
        eps: f32,
        out: &mut [f32],
    ) {
        assert!(var.len() == out.len() && gamma.is_none_or(|g| g.len() == out.len()));
        let g = gamma.map_or(core::ptr::null(), |g| g.as_ptr());
        // SAFETY: features checked by `for_isa`; `var`, `gamma` (when given) and `out` hold
        // `out.len()` floats.
        unsafe { (self.bn_scale_consts)(var.as_ptr(), g, eps, out.as_mut_ptr(), out.len()) }
    }

    /// The training forward's constants of `mean.len()` channels from their batch mean and
    /// biased variance: `out` = rows `[k; a; b; var; invstd]` of `mean.len()` floats.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bn_train_consts(
        &self,
        mean: &[f64],
        var: &[f64],
        count: usize,
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        eps: f32,
        out: &mut [f32],
    ) {
        let n = mean.len();
        assert!(var.len() == n && out.len() == 5 * n);
        assert!(gamma.is_none_or(|g| g.len() == n) && beta.is_none_or(|b| b.len() == n));
        let g = gamma.map_or(core::ptr::null(), |g| g.as_ptr());
        let b = beta.map_or(core::ptr::null(), |b| b.as_ptr());
        // SAFETY: features checked by `for_isa`; every input holds n values (gamma and beta
        // when given) and `out` 5n.
        unsafe {
            (self.bn_train_consts)(
                mean.as_ptr(),
                var.as_ptr(),
                count,
                g,
                b,
                eps,
                out.as_mut_ptr(),
                n,
            )
        }
    }

    /// Each column's `[mean; biased var]` from its row sums `[Σx; Σ(x − K)²]` over `count`
    /// rows, in place in `sums` (the row kernels' layout, `2·pivots.len()`); with `refine`,
    /// pivots more than 4σ from their mean become the mean, and the result says whether any
    /// did (see `kernels::bn::row_moments`).
    pub(crate) fn bn_row_moments(
        &self,
        sums: &mut [f64],
        pivots: &mut [f32],
        count: usize,
        refine: bool,
    ) -> bool {
        let c = pivots.len();
        assert!(sums.len() == 2 * c);
        // SAFETY: features checked by `for_isa`; `sums` holds 2c values and `pivots` c.
        unsafe { (self.bn_row_moments)(sums.as_mut_ptr(), pivots.as_mut_ptr(), c, count, refine) }
    }

    /// The backward's `dx` constants of `mean.len()` NC/NHWC columns from their row sums
    /// (the row kernels' layout) over `count` values: rows `[m; a; c1; c0]` into `out`, and
    /// `dγ`, `dβ` (see `kernels::bn_backward::row_consts`; `batch` false: eval mode).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bn_bwd_row_consts(
        &self,
        sums: &[f64],
        count: usize,
        gamma: Option<&[f32]>,
        mean: &[f32],
        invstd: &[f32],
        batch: bool,
        out: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let c = mean.len();
        assert!(sums.len() >= 2 * c && invstd.len() == c && out.len() == 4 * c);
        assert!(dgamma.len() == c && dbeta.len() == c && gamma.is_none_or(|g| g.len() == c));
        let g = gamma.map_or(core::ptr::null(), |g| g.as_ptr());
        // SAFETY: features checked by `for_isa`; the lengths are as the kernel needs (above).
        unsafe {
            (self.bn_bwd_row_consts)(
                sums.as_ptr(),
                c,
                count,
                g,
                mean.as_ptr(),
                invstd.as_ptr(),
                batch,
                out.as_mut_ptr(),
                dgamma.as_mut_ptr(),
                dbeta.as_mut_ptr(),
            )
        }
    }

    /// Keep bits of `groups` consecutive 64-element groups of one RNG block, starting at group
    /// `first`, into `out[4*g + s]` (stream `s`, bit `l` = lane `l`). Drop iff `r < thresh`.
    pub(crate) fn keep_bits(
        &self,
        st: &[StreamState; STREAMS],
        first: usize,
        groups: usize,
        thresh: u32,
        out: &mut [u16],
    ) {
        assert!(out.len() >= 4 * groups, "keep_bits output");
        // SAFETY: `for_isa` handed out this table only if the CPU has its features; `out` has
        // room for the `4 * groups` u16 written.
        unsafe { (self.keep_bits)(st, first, groups, thresh, out.as_mut_ptr()) }
    }

    /// `out.len() / 16` draws of the 16 lanes of `st`: `out[16*d + l]` = draw `d` of lane `l`.
    #[cfg(feature = "testing")]
    pub(crate) fn random_u32(&self, st: &StreamState, out: &mut [u32]) {
        // SAFETY: features checked by `for_isa`; exactly `out.len() / 16 * 16` values written.
        unsafe { (self.random_u32)(st, out.len() / 16, out.as_mut_ptr()) }
    }

    /// `y[i] = x[i]` widened to f32 (bf16).
    #[cfg(feature = "testing")]
    pub(crate) fn widen_bf16(&self, x: &[half::bf16], y: &mut [f32]) {
        assert_eq!(x.len(), y.len(), "widen length");
        // SAFETY: features checked by `for_isa`; both slices hold `y.len()` elements.
        unsafe { (self.widen_bf16)(x.as_ptr(), y.as_mut_ptr(), y.len()) }
    }

    /// `y[i] = x[i]` widened to f32 (f16).
    #[cfg(feature = "testing")]
    pub(crate) fn widen_f16(&self, x: &[half::f16], y: &mut [f32]) {
        assert_eq!(x.len(), y.len(), "widen length");
        // SAFETY: features checked by `for_isa`; both slices hold `y.len()` elements.
        unsafe { (self.widen_f16)(x.as_ptr(), y.as_mut_ptr(), y.len()) }
    }

    /// `y[i] = x[i]` narrowed to bf16 by integer rounding.
    #[cfg(feature = "testing")]
    pub(crate) fn narrow_bf16(&self, x: &[f32], y: &mut [half::bf16]) {
        assert_eq!(x.len(), y.len(), "narrow length");
        // SAFETY: features checked by `for_isa`; both slices hold `y.len()` elements.
        unsafe { (self.narrow_bf16)(x.as_ptr(), y.as_mut_ptr(), y.len()) }
    }
}

impl<E: crate::simd::elem::Elem> TypedKernels<E> {
    /// Whether a call writing `out_elems` elements should use non-temporal stores.
    pub(crate) fn use_nt(&self, out_elems: usize) -> bool {
        self.use_nt_from(out_elems, NT_MIN_BYTES)
    }

    /// Whether to use non-temporal stores for `out_elems` elements with threshold
    /// `min_bytes` (of output).
    pub(crate) fn use_nt_from(&self, out_elems: usize, min_bytes: usize) -> bool {
        self.nt && out_elems.saturating_mul(size_of::<E>()) >= min_bytes
    }

    /// `y[i] = bit(bits, i) ? x[i] * scale : +0.0`. `bits` holds bit `i` at `bits[i/16] >> (i%16)`
    /// and is padded: at least `y.len() / 16 + 2` entries.
    pub(crate) fn apply_mask(&self, x: Src<E>, y: &mut [E], bits: &[u16], scale: f32, nt: bool) {
        let x = x.ptr(y);
        assert!(bits.len() >= y.len() / 16 + 2, "apply_mask bits padding");
        // SAFETY: features checked by `for_isa`; `x` and `y` hold `y.len()` floats (same
        // pointer when in place, which the kernel allows); `bits` is long enough for every
        // 16-bit window the kernel reads.
        unsafe { (self.apply_mask)(x, y.as_mut_ptr(), y.len(), bits.as_ptr(), scale, nt) }
    }

    /// Fused dropout of `y.len()` elements at block positions `j0 ..` of the block with streams
    /// `st`; with `store_bits` the block-indexed keep bits are left in `bits` (`BLOCK / 16 + 2`
    /// words), otherwise it is scratch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dropout_segment(
        &self,
        st: &[StreamState; STREAMS],
        j0: usize,
        x: Src<E>,
        y: &mut [E],
        bits: &mut [u16; BLOCK / 16 + 2],
        store_bits: bool,
        thresh: u32,
        scale: f32,
        nt: bool,
    ) {
        let x = x.ptr(y);
        assert!(j0 + y.len() <= BLOCK, "dropout_segment crosses a block");
        // SAFETY: features checked by `for_isa`; `x`, `y` hold `y.len()` floats; the segment
        // lies inside one block and `bits` has the padded block size the kernel needs.
        unsafe {
            (self.dropout_segment)(
                st,
                j0,
                x,
                y.as_mut_ptr(),
                y.len(),
                bits.as_mut_ptr(),
                store_bits,
                thresh,
                scale,
                nt,
            )
        }
    }

    /// Channel-wise dropout of the planes of `y` (`len` elements each): plane `j` is
    /// `x`'s scaled by `s` where bit `j` of `bits` is set, `+0.0` elsewhere.
    pub(crate) fn scale_planes(
        &self,
        x: Src<E>,
        y: &mut [E],
        len: usize,
        bits: &[u16],
        s: f32,
        nt: bool,
    ) {
        assert!(len > 0 && y.len().is_multiple_of(len), "plane length");
        let planes = y.len() / len;
        assert!(bits.len() >= planes.div_ceil(16), "keep bits");
        let x = x.ptr(y);
        // SAFETY: features checked by `for_isa`; `x` and `y` hold planes·len floats, `bits`
        // ceil(planes/16) words.
        unsafe { (self.scale_planes)(x, y.as_mut_ptr(), planes, len, bits.as_ptr(), s, nt) }
    }

    /// `y = x`, bit for bit.
    pub(crate) fn copy(&self, x: &[E], y: &mut [E], nt: bool) {
        assert_eq!(x.len(), y.len(), "copy length");
        // SAFETY: features checked by `for_isa`; both slices hold `y.len()` floats and cannot
        // overlap (one is shared, one exclusive).
        unsafe { (self.copy)(x.as_ptr(), y.as_mut_ptr(), y.len(), nt) }
    }

    /// `y[i] = v`.
    pub(crate) fn fill(&self, y: &mut [E], v: f32, nt: bool) {
        // SAFETY: features checked by `for_isa`; `y` holds `y.len()` floats.
        unsafe { (self.fill)(y.as_mut_ptr(), y.len(), v, nt) }
    }

    /// `y[i] = x[i]` narrowed, as this table's kernels store.
    #[cfg(feature = "testing")]
    pub(crate) fn narrow(&self, x: &[f32], y: &mut [E]) {
        assert_eq!(x.len(), y.len(), "narrow length");
        // SAFETY: features checked by `for_isa`; both slices hold `y.len()` elements.
        unsafe { (self.narrow)(x.as_ptr(), y.as_mut_ptr(), y.len()) }
    }

    /// `y[i] = (x[i] − k[i mod l])·a[i mod l] + b[i mod l]`, with `aff = [k; a; b]` rows of
    /// `l + 16` (the last 16 repeating the first), `l` a multiple of 16.
    /// With `res`, `y = relu(normalized + res)` (`res` as long as `y`, or `Src::InPlace` for
    /// `y` itself).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bn_normalize_tiled(
        &self,
        x: Src<E>,
        y: &mut [E],
        aff: &[f32],
        l: usize,
        res: Option<Src<E>>,
        relu: bool,
        nt: bool,
    ) {
        let x = x.ptr(y);
        let res = res.map_or(core::ptr::null(), |r| r.ptr(y));
        assert!(l >= 16 && l.is_multiple_of(16) && aff.len() >= 3 * (l + 16));
        // SAFETY: features checked; `x`, `y` (and `res`) hold y.len() floats, `aff` the
        // padded rows.
        unsafe {
            (self.bn_normalize_tiled)(x, y.as_mut_ptr(), y.len(), aff.as_ptr(), l, res, relu, nt)
        }
    }

    /// Per-column shifted sums of columns `c0 .. c0 + w` of the `rows` rows of `x` (row
    /// stride `stride`), around `pivots[0..w]`, added to `out[0..w]` and `out[w..2w]`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bn_sums_rows(
        &self,
        x: &[E],
        rows: usize,
        stride: usize,
        c0: usize,
        w: usize,
        pivots: &[f32],
        out: &mut [f64],
    ) {
        assert!(w > 0 && w <= crate::kernels::sums::ROW_SEGMENT && c0 + w <= stride);
        assert!(pivots.len() >= w && out.len() >= 2 * w && rows * stride <= x.len());
        if rows == 0 {
            return;
        }
        // SAFETY: features checked by `for_isa`; row r's columns are
        // x[r·stride + c0 .. + w], inside `x` since rows·stride <= x.len() and c0 + w <= stride.
        unsafe {
            (self.bn_sums_rows)(
                x.as_ptr().add(c0),
                rows,
                stride,
                w,
                pivots.as_ptr(),
                out.as_mut_ptr(),
            )
        }
    }

    /// Backward sums `[Σdy; Σdy·(x − mean)]` (added to `out`, `w` each) of columns
    /// `c0 .. c0 + w` (`w <= 64`) of the rows of `x`/`dy`/`y` (row stride `stride`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bn_bwd_sums_rows(
        &self,
        x: &[E],
        dy: &[E],
        y: Option<&[E]>,
        stride: usize,
        c0: usize,
        w: usize,
        mean: &[f32],
        out: &mut [f64],
    ) {
        let rows = x.len() / stride;
        assert!(w > 0 && w <= 64 && c0 + w <= stride && x.len() == rows * stride);
        assert!(dy.len() == x.len() && y.is_none_or(|y| y.len() == x.len()));
        assert!(mean.len() >= w && out.len() >= 2 * w);
        let inp = BwdIn {
            x: x.as_ptr().wrapping_add(c0),
            dy: dy.as_ptr().wrapping_add(c0),
            y: y.map_or(core::ptr::null(), |y| y.as_ptr().wrapping_add(c0)),
        };
        // SAFETY: features checked; row r's columns c0..c0+w lie inside all three inputs.
        unsafe { (self.bn_bwd_sums_rows)(inp, rows, stride, w, mean.as_ptr(), out.as_mut_ptr()) }
    }

    /// Backward `dx` (and `dr`) over contiguous values with constants of period `l` in `aff`
    /// (`[m; a; c1; c0]`, rows of `l + 16`). `dy` may be `dx` itself (`Src::InPlace`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bn_bwd_dx_tiled(
        &self,
        x: &[E],
        dy: Src<E>,
        y: Option<&[E]>,
        dx: &mut [E],
        dr: Option<&mut [E]>,
        aff: &[f32],
        l: usize,
        nt: bool,
    ) {
        let n = dx.len();
        assert!(x.len() == n && y.is_none_or(|y| y.len() == n));
        assert!(dr.as_ref().is_none_or(|d| d.len() == n) && aff.len() >= 4 * (l + 16));
        let inp = BwdIn {
            x: x.as_ptr(),
            dy: dy.ptr(dx),
            y: y.map_or(core::ptr::null(), |y| y.as_ptr()),
        };
        let dr = dr.map_or(core::ptr::null_mut(), |d| d.as_mut_ptr());
        // SAFETY: features checked; every input and output holds n values (dy may alias dx,
        // which the kernel allows: each value is read before it is written); `aff` the
        // padded rows.
        unsafe { (self.bn_bwd_dx_tiled)(inp, dx.as_mut_ptr(), dr, n, aff.as_ptr(), l, nt) }
    }
}
