//! The element types of activation tensors: `f32`, and the 16-bit `half::bf16` and
//! `half::f16`, loaded into and stored from the 16 f32 lanes of a [`Simd`] vector. All
//! arithmetic is f32: a 16-bit tensor is widened on load and narrowed on store (DESIGN §6).

use super::{LANES, Simd, convert};

/// An activation element type: 16 of them load as 16 f32 lanes and store back.
/// `pub` only so the public `Element` trait can build on it; the module is private.
pub trait Elem: Copy + Send + Sync + 'static {
    /// Loads 16 elements from `p`, widened to f32 (exactly).
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::F;
    /// [`Elem::load`] for lanes whose only use is as operands of f32 arithmetic (multiply,
    /// add, FMA): a signalling NaN may come back signalling, because each of those
    /// instructions returns it quiet with its payload — the bits `load` would have given.
    /// (Which NaN operand an instruction returns does not depend on quietness.) bf16 saves
    /// its quieting step: one `vfixupimmps` per vector on AVX-512, four integer operations
    /// per half on AVX2.
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    #[inline(always)]
    unsafe fn load_for_arith<S: Simd>(s: S, p: *const Self) -> S::F {
        // SAFETY: forwarded.
        unsafe { Self::load(s, p) }
    }
    /// Stores the 16 lanes of `v` at `p`, narrowed (nearest, ties to even).
    ///
    /// # Safety
    /// `p..p+16` must be writable.
    unsafe fn store<S: Simd>(s: S, p: *mut Self, v: S::F);
    /// Four [`Elem::store`]s of consecutive vectors at `p`, `p + 16`, `p + 32`, `p + 48`
    /// (one test of the four for bf16's rare slow lanes instead of four).
    ///
    /// # Safety
    /// `p..p+64` must be writable.
    #[inline(always)]
    unsafe fn store_x4<S: Simd>(s: S, p: *mut Self, v: [S::F; 4]) {
        for (u, vu) in v.into_iter().enumerate() {
            // SAFETY: forwarded: vector u covers p + 16u .. p + 16u + 16 <= p + 64.
            unsafe { Self::store(s, p.add(LANES * u), vu) };
        }
    }
    /// [`Elem::store`] with a non-temporal store.
    ///
    /// # Safety
    /// `p..p+16` must be writable and `p` aligned to the 16 elements' bytes (64 for f32, 32
    /// for a 16-bit type).
    unsafe fn store_nt<S: Simd>(s: S, p: *mut Self, v: S::F);
    /// Loads the first `len < 16` elements at `p`, zeros in the other lanes.
    ///
    /// # Safety
    /// `p..p+len` must be readable.
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const Self, len: usize) -> S::F {
        let mut buf = [Self::narrow(0.0); LANES];
        // SAFETY: `len < 16` elements read from `p` into a 16-element buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), len);
            Self::load(s, buf.as_ptr())
        }
    }
    /// Stores the first `len < 16` lanes of `v` at `p`.
    ///
    /// # Safety
    /// `p..p+len` must be writable.
    #[inline(always)]
    unsafe fn store_partial<S: Simd>(s: S, p: *mut Self, len: usize, v: S::F) {
        let mut buf = [Self::narrow(0.0); LANES];
        // SAFETY: the buffer holds 16 elements; `len` are copied out to `p`.
        unsafe {
            Self::store(s, buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, len);
        }
    }
    /// One element widened: the bits of [`Elem::load`]'s lanes.
    fn widen(self) -> f32;
    /// One value narrowed: the bits of [`Elem::store`]'s lanes.
    fn narrow(v: f32) -> Self;
}

impl Elem for f32 {
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const f32) -> S::F {
        // SAFETY: forwarded.
        unsafe { s.loadu(p) }
    }
    #[inline(always)]
    unsafe fn store<S: Simd>(s: S, p: *mut f32, v: S::F) {
        // SAFETY: forwarded.
        unsafe { s.storeu(p, v) }
    }
    #[inline(always)]
    unsafe fn store_nt<S: Simd>(s: S, p: *mut f32, v: S::F) {
        // SAFETY: forwarded.
        unsafe { s.store_nt(p, v) }
    }
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const f32, len: usize) -> S::F {
        // SAFETY: forwarded (the backend's masked load where it has one).
        unsafe { s.load_partial(p, len) }
    }
    #[inline(always)]
    unsafe fn store_partial<S: Simd>(s: S, p: *mut f32, len: usize, v: S::F) {
        // SAFETY: forwarded (the backend's masked store where it has one).
        unsafe { s.store_partial(p, len, v) }
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[inline(always)]
    fn narrow(v: f32) -> f32 {
        v
    }
}

impl Elem for half::bf16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const half::bf16) -> S::F {
        // SAFETY: forwarded; bf16 is a transparent u16.
        unsafe { s.load_bf16(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_for_arith<S: Simd>(s: S, p: *const half::bf16) -> S::F {
        // SAFETY: forwarded; bf16 is a transparent u16.
        unsafe { s.load_bf16_for_arith(p.cast()) }
    }
    #[inline(always)]
    unsafe fn store<S: Simd>(s: S, p: *mut half::bf16, v: S::F) {
        // SAFETY: forwarded; bf16 is a transparent u16.
        unsafe { s.store_bf16(p.cast(), v) }
    }
    #[inline(always)]
    unsafe fn store_x4<S: Simd>(s: S, p: *mut half::bf16, v: [S::F; 4]) {
        // SAFETY: forwarded; bf16 is a transparent u16.
        unsafe { s.store_bf16_x4(p.cast(), v) }
    }
    #[inline(always)]
    unsafe fn store_nt<S: Simd>(s: S, p: *mut half::bf16, v: S::F) {
        // SAFETY: forwarded: 32-byte aligned, as the 16-bit store needs.
        unsafe { s.store_bf16_nt(p.cast(), v) }
    }
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const half::bf16, len: usize) -> S::F {
        // SAFETY: forwarded (the backend's masked load where it has one).
        unsafe { s.load_bf16_partial(p.cast(), len) }
    }
    #[inline(always)]
    unsafe fn store_partial<S: Simd>(s: S, p: *mut half::bf16, len: usize, v: S::F) {
        // SAFETY: forwarded (the backend's masked store where it has one).
        unsafe { s.store_bf16_partial(p.cast(), len, v) }
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        convert::bf16_to_f32(self.to_bits())
    }
    #[inline(always)]
    fn narrow(v: f32) -> half::bf16 {
        half::bf16::from_bits(convert::f32_to_bf16(v))
    }
}

impl Elem for half::f16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const half::f16) -> S::F {
        // SAFETY: forwarded; f16 is a transparent u16.
        unsafe { s.load_f16(p.cast()) }
    }
    #[inline(always)]
    unsafe fn store<S: Simd>(s: S, p: *mut half::f16, v: S::F) {
        // SAFETY: forwarded; f16 is a transparent u16.
        unsafe { s.store_f16(p.cast(), v) }
    }
    #[inline(always)]
    unsafe fn store_nt<S: Simd>(s: S, p: *mut half::f16, v: S::F) {
        // SAFETY: forwarded: 32-byte aligned, as the 16-bit store needs.
        unsafe { s.store_f16_nt(p.cast(), v) }
    }
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const half::f16, len: usize) -> S::F {
        // SAFETY: forwarded (the backend's masked load where it has one).
        unsafe { s.load_f16_partial(p.cast(), len) }
    }
    #[inline(always)]
    unsafe fn store_partial<S: Simd>(s: S, p: *mut half::f16, len: usize, v: S::F) {
        // SAFETY: forwarded (the backend's masked store where it has one).
        unsafe { s.store_f16_partial(p.cast(), len, v) }
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        convert::f16_to_f32(self.to_bits())
    }
    #[inline(always)]
    fn narrow(v: f32) -> half::f16 {
        half::f16::from_bits(convert::f32_to_f16(v))
    }
}
