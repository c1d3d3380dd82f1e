//! The element types of activation tensors: `f32`, and the 16-bit `half::bf16` and
//! `half::f16`, loaded into and stored from the 16 f32 lanes of a [`Simd`] vector. All
//! arithmetic is f32: a 16-bit tensor is widened on load and narrowed on store (DESIGN §6).

use super::{Simd, convert};

/// An activation element type: 16 of them load as 16 f32 lanes and store back.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// Loads 16 elements from `p`, widened to f32 (exactly).
    ///
    /// # Safety
    /// `p..p+16` must be readable.
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::F;
    /// Stores the 16 lanes of `v` at `p`, narrowed (nearest, ties to even).
    ///
    /// # Safety
    /// `p..p+16` must be writable.
    unsafe fn store<S: Simd>(s: S, p: *mut Self, v: S::F);
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
    unsafe fn store<S: Simd>(s: S, p: *mut half::bf16, v: S::F) {
        // SAFETY: forwarded; bf16 is a transparent u16.
        unsafe { s.store_bf16(p.cast(), v) }
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
    fn widen(self) -> f32 {
        convert::f16_to_f32(self.to_bits())
    }
    #[inline(always)]
    fn narrow(v: f32) -> half::f16 {
        half::f16::from_bits(convert::f32_to_f16(v))
    }
}
