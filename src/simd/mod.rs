//! The vector layer, a leaf: one small trait over 16 logical `f32`/`u32` lanes and three
//! implementations (portable via `wide`, AVX2+FMA, AVX-512). It imports nothing of the crate
//! above it: the algorithms are written once over [`Simd`] one layer up.
//!
//! The lane count is 16 on every ISA, which is what makes the dropout stream layout — and so
//! every dropout mask — identical on every ISA.

pub(crate) mod convert;
pub(crate) mod elem;
pub(crate) mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512;

/// Logical lanes of every vector type, on every ISA.
pub(crate) const LANES: usize = 16;

/// 16 lanes of `f32` and `u32`, and the handful of operations the kernels need.
///
/// Implementations are zero-sized tokens that can only be created once the CPU is known to
/// support their instructions (their `new` is `unsafe`), so the methods themselves are safe to
/// call. All methods are `#[inline(always)]` and carry no `#[target_feature]` (that combination
/// is rejected by rustc and would block inlining); they are meant to be inlined into the
/// `#[target_feature]` entry points, where the intrinsics compile to single instructions.
/// (`pub` only so the sealed element traits can name it; the module is private.)
pub trait Simd: Copy + Send + Sync {
    /// 16 × f32.
    type F: Copy;
    /// 16 × u32.
    type U: Copy;
    /// 16 × f64: the accumulators of first moments, whose f32 rounding would show in a mean.
    type W: Copy;
    /// Whether [`Simd::store_nt`] really bypasses the caches (otherwise it is a plain store).
    const NT: bool;
    /// How many 16-lane RNG streams to step at once: enough independent dependency chains to
    /// fill the vector units, few enough that the state stays in registers. Below 4, fused
    /// dropout generates a segment's keep bits first, stream by stream, then applies them.
    const INTERLEAVE: usize;

    /// Loads 16 floats from `p` (no alignment needed).
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    unsafe fn loadu(self, p: *const f32) -> Self::F;
    /// Stores 16 floats to `p` (no alignment needed).
    ///
    /// # Safety
    /// `p..p+16` must be writable.
    unsafe fn storeu(self, p: *mut f32, v: Self::F);
    /// Loads the first `len < 16` floats at `p`, zeros in the other lanes.
    ///
    /// # Safety
    /// `p..p+len` must be readable.
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, len: usize) -> Self::F {
        let mut buf = [0.0f32; LANES];
        // SAFETY: `len` floats are read from `p` into a 16-float buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), len);
            self.loadu(buf.as_ptr())
        }
    }
    /// The lanes of `keep` loaded from `p`, zeros in the others, which are not read.
    ///
    /// # Safety
    /// `p + l` readable for every lane `l` of `keep`; `p` 64-byte aligned.
    #[inline(always)]
    unsafe fn load_keep(self, p: *const f32, keep: u16) -> Self::F {
        let mut buf = [0.0f32; LANES];
        for (l, b) in buf.iter_mut().enumerate() {
            if keep & (1 << l) != 0 {
                // SAFETY: lane l is in `keep`, readable by the caller's guarantee.
                *b = unsafe { *p.add(l) };
            }
        }
        // SAFETY: a 16-float local array.
        unsafe { self.loadu(buf.as_ptr()) }
    }
    /// Stores the first `len < 16` lanes of `v` at `p`.
    ///
    /// # Safety
    /// `p..p+len` must be writable.
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, len: usize, v: Self::F) {
        let mut buf = [0.0f32; LANES];
        // SAFETY: the buffer holds 16 floats; `len` are copied out to `p`.
        unsafe {
            self.storeu(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, len);
        }
    }
    /// Non-temporal store of 16 floats.
    ///
    /// # Safety
    /// `p..p+16` must be writable and `p` 64-byte aligned.
    unsafe fn store_nt(self, p: *mut f32, v: Self::F);
    /// Orders earlier non-temporal stores before anything that follows.
    fn fence(self);
    /// Hints that the cache line at `p` will be read soon (into L1). Never faults.
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        let _ = p;
    }
    /// Hints that the cache line at `p` will be read later (into L2). Never faults.
    #[inline(always)]
    fn prefetch_l2(self, p: *const f32) {
        let _ = p;
    }
    /// Hints that the cache line at `p` will be written soon, so that it is in L1 (and owned)
    /// before the store reaches it. Never faults.
    #[inline(always)]
    fn prefetch_w(self, p: *const f32) {
        let _ = p;
    }

    /// All lanes `x`.
    fn splat(self, x: f32) -> Self::F;
    /// `a * b`.
    fn mul(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b` in lanes whose bit of `keep` is set, `+0.0` elsewhere (whatever `a` holds).
    fn mul_keep(self, keep: u16, a: Self::F, b: Self::F) -> Self::F;
    /// `a + b`.
    fn add(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a - b`.
    fn sub(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`: fused on AVX2/AVX-512, two roundings on the portable backend (which is
    /// why batch-norm results may differ across ISAs by FMA rounding).
    fn mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// ReLU: `+0.0` where `v < 0`, `v` elsewhere (NaN and `-0.0` pass through).
    fn relu(self, v: Self::F) -> Self::F;
    /// `v` where `y > 0`, `+0.0` elsewhere (the ReLU backward mask; NaN `y` counts as not > 0).
    fn keep_where_positive(self, y: Self::F, v: Self::F) -> Self::F;
    /// The 16 lanes.
    fn to_array(self, v: Self::F) -> [f32; 16];
    /// `out[l] += v[l] as f64` for the 16 lanes: each lane converted exactly and added in f64,
    /// so every backend gives the bits of the scalar loop.
    ///
    /// # Safety
    /// `out..out+16` must be readable and writable.
    #[inline(always)]
    unsafe fn add_to_f64(self, out: *mut f64, v: Self::F) {
        for (l, x) in self.to_array(v).into_iter().enumerate() {
            // SAFETY: l < 16, within the caller's guarantee.
            unsafe { *out.add(l) += x as f64 };
        }
    }

    /// All 16 f64 lanes `+0.0`.
    fn zero_w(self) -> Self::W;
    /// `acc[l] + v[l] as f64` for the 16 lanes (the conversion is exact).
    fn add_widened(self, acc: Self::W, v: Self::F) -> Self::W;
    /// `a + b` in f64.
    fn add_w(self, a: Self::W, b: Self::W) -> Self::W;
    /// The 16 f64 lanes.
    fn w_to_array(self, w: Self::W) -> [f64; 16];
    /// `a[l]` in lanes whose bit of `keep` is set, `b[l]` elsewhere.
    #[inline(always)]
    fn select_w(self, keep: u16, a: Self::W, b: Self::W) -> Self::W {
        let (mut a, b) = (self.w_to_array(a), self.w_to_array(b));
        for (l, x) in a.iter_mut().enumerate() {
            if keep & (1 << l) == 0 {
                *x = b[l];
            }
        }
        self.w_from_array(a)
    }
    /// 16 f64 lanes from an array.
    fn w_from_array(self, a: [f64; 16]) -> Self::W;
    /// `out[l] += w[l]` for the 16 lanes.
    ///
    /// # Safety
    /// `out..out+16` must be readable and writable.
    #[inline(always)]
    unsafe fn add_w_to(self, out: *mut f64, w: Self::W) {
        for (l, x) in self.w_to_array(w).into_iter().enumerate() {
            // SAFETY: l < 16, within the caller's guarantee.
            unsafe { *out.add(l) += x };
        }
    }

    /// 16 bf16 (bit patterns) at `p` widened to f32, as [`convert::bf16_to_f32`].
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    #[inline(always)]
    unsafe fn load_bf16(self, p: *const u16) -> Self::F {
        let mut buf = [0.0f32; LANES];
        for (l, b) in buf.iter_mut().enumerate() {
            // SAFETY: l < 16, readable by the caller's guarantee.
            *b = convert::bf16_to_f32(unsafe { *p.add(l) });
        }
        // SAFETY: a 16-float local array.
        unsafe { self.loadu(buf.as_ptr()) }
    }
    /// [`Simd::load_bf16`] for lanes whose only use is as operands of f32 arithmetic (see
    /// [`Elem::load_for_arith`](super::Elem::load_for_arith)): a signalling NaN may stay
    /// signalling.
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    #[inline(always)]
    unsafe fn load_bf16_for_arith(self, p: *const u16) -> Self::F {
        // SAFETY: forwarded.
        unsafe { self.load_bf16(p) }
    }
    /// The 16 lanes of `v` narrowed to bf16 at `p`, as [`convert::f32_to_bf16`].
    ///
    /// # Safety
    /// `p..p+16` must be writable.
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16, v: Self::F) {
        for (l, x) in self.to_array(v).into_iter().enumerate() {
            // SAFETY: l < 16, writable by the caller's guarantee.
            unsafe { *p.add(l) = convert::f32_to_bf16(x) };
        }
    }
    /// Four vectors narrowed to bf16 at `p`, `p + 16`, `p + 32`, `p + 48`: the bits of four
    /// [`Simd::store_bf16`], for backends that test the four together for the rare lane
    /// their fast narrowing cannot take.
    ///
    /// # Safety
    /// `p..p+64` must be writable.
    #[inline(always)]
    unsafe fn store_bf16_x4(self, p: *mut u16, v: [Self::F; 4]) {
        for (u, vu) in v.into_iter().enumerate() {
            // SAFETY: forwarded: vector u covers p + 16u .. p + 16u + 16 <= p + 64.
            unsafe { self.store_bf16(p.add(LANES * u), vu) };
        }
    }
    /// The first `len < 16` bf16 at `p` widened (zeros in the other lanes).
    ///
    /// # Safety
    /// `p..p+len` must be readable.
    #[inline(always)]
    unsafe fn load_bf16_partial(self, p: *const u16, len: usize) -> Self::F {
        let mut buf = [0u16; LANES];
        // SAFETY: `len < 16` elements read from `p` into a 16-element buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), len);
            self.load_bf16(buf.as_ptr())
        }
    }
    /// The first `len < 16` lanes of `v` narrowed to bf16 at `p`.
    ///
    /// # Safety
    /// `p..p+len` must be writable.
    #[inline(always)]
    unsafe fn store_bf16_partial(self, p: *mut u16, len: usize, v: Self::F) {
        let mut buf = [0u16; LANES];
        // SAFETY: the buffer holds 16 elements; `len` are copied out to `p`.
        unsafe {
            self.store_bf16(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, len);
        }
    }
    /// The first `len < 16` binary16 at `p` widened (zeros in the other lanes).
    ///
    /// # Safety
    /// `p..p+len` must be readable.
    #[inline(always)]
    unsafe fn load_f16_partial(self, p: *const u16, len: usize) -> Self::F {
        let mut buf = [0u16; LANES];
        // SAFETY: `len < 16` elements read from `p` into a 16-element buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), len);
            self.load_f16(buf.as_ptr())
        }
    }
    /// The first `len < 16` lanes of `v` narrowed to binary16 at `p`.
    ///
    /// # Safety
    /// `p..p+len` must be writable.
    #[inline(always)]
    unsafe fn store_f16_partial(self, p: *mut u16, len: usize, v: Self::F) {
        let mut buf = [0u16; LANES];
        // SAFETY: the buffer holds 16 elements; `len` are copied out to `p`.
        unsafe {
            self.store_f16(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, len);
        }
    }
    /// [`Simd::store_bf16`] with a non-temporal store.
    ///
    /// # Safety
    /// `p..p+16` must be writable and `p` 32-byte aligned.
    #[inline(always)]
    unsafe fn store_bf16_nt(self, p: *mut u16, v: Self::F) {
        // SAFETY: forwarded (a plain store needs less).
        unsafe { self.store_bf16(p, v) }
    }
    /// [`Simd::store_f16`] with a non-temporal store.
    ///
    /// # Safety
    /// `p..p+16` must be writable and `p` 32-byte aligned.
    #[inline(always)]
    unsafe fn store_f16_nt(self, p: *mut u16, v: Self::F) {
        // SAFETY: forwarded (a plain store needs less).
        unsafe { self.store_f16(p, v) }
    }
    /// 16 binary16 (bit patterns) at `p` widened to f32, as [`convert::f16_to_f32`].
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> Self::F {
        let mut buf = [0.0f32; LANES];
        for (l, b) in buf.iter_mut().enumerate() {
            // SAFETY: l < 16, readable by the caller's guarantee.
            *b = convert::f16_to_f32(unsafe { *p.add(l) });
        }
        // SAFETY: a 16-float local array.
        unsafe { self.loadu(buf.as_ptr()) }
    }
    /// The 16 lanes of `v` narrowed to binary16 at `p`, as [`convert::f32_to_f16`].
    ///
    /// # Safety
    /// `p..p+16` must be writable.
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16, v: Self::F) {
        for (l, x) in self.to_array(v).into_iter().enumerate() {
            // SAFETY: l < 16, writable by the caller's guarantee.
            unsafe { *p.add(l) = convert::f32_to_f16(x) };
        }
    }

    /// Loads 16 `u32`.
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    unsafe fn loadu_u(self, p: *const u32) -> Self::U;
    /// Stores 16 `u32`.
    ///
    /// # Safety
    /// `p..p+16` must be writable.
    unsafe fn storeu_u(self, p: *mut u32, v: Self::U);
    /// All lanes `x`.
    fn splat_u(self, x: u32) -> Self::U;
    /// Wrapping `a + b`.
    fn add_u(self, a: Self::U, b: Self::U) -> Self::U;
    /// `a ^ b`.
    fn xor_u(self, a: Self::U, b: Self::U) -> Self::U;
    /// `a ^ b ^ c` (one `vpternlogd` on AVX-512, two XORs elsewhere).
    #[inline(always)]
    fn xor3_u(self, a: Self::U, b: Self::U, c: Self::U) -> Self::U {
        self.xor_u(self.xor_u(a, b), c)
    }
    /// `a << K`, `0 < K < 32`.
    fn shl_u<const K: i32>(self, a: Self::U) -> Self::U;
    /// `a.rotate_left(K)`, `0 < K < 32`.
    fn rotl_u<const K: i32>(self, a: Self::U) -> Self::U;
    /// Bit `l` set iff `a[l] >= b[l]` as unsigned integers.
    fn ge_bits(self, a: Self::U, b: Self::U) -> u16;
    /// The 16 lanes starting at lane `m` (`0 < m < 16`) of `lo` followed by `hi`:
    /// `lo[m..16]` then `hi[0..m]`. `idx` is [`Simd::window_index`]`(m)`, made once per loop.
    ///
    /// One `vpermt2d` on AVX-512; a round trip through memory elsewhere, where fused dropout
    /// (its only user in a hot loop) does not take the path that calls it.
    #[inline(always)]
    fn window_u(self, lo: Self::U, hi: Self::U, idx: Self::U) -> Self::U {
        let mut buf = [0u32; 2 * LANES];
        let mut m = [0u32; LANES];
        // SAFETY: a 32-word local buffer takes both vectors; `m` takes 16 words.
        unsafe {
            self.storeu_u(buf.as_mut_ptr(), lo);
            self.storeu_u(buf.as_mut_ptr().add(LANES), hi);
            self.storeu_u(m.as_mut_ptr(), idx);
            // idx[0] = m < 16 and the window's 16 words end by word 31.
            self.loadu_u(buf.as_ptr().add(m[0] as usize % LANES))
        }
    }
    /// The index vector of [`Simd::window_u`] for a window starting at lane `m`: lane `l`
    /// holds `m + l`.
    #[inline(always)]
    fn window_index(self, m: usize) -> Self::U {
        let mut v = [0u32; LANES];
        for (l, w) in v.iter_mut().enumerate() {
            *w = (m % LANES + l) as u32;
        }
        // SAFETY: a 16-word local array.
        unsafe { self.loadu_u(v.as_ptr()) }
    }
}
