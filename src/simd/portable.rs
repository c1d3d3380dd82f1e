//! The portable backend on `wide`: SSE2 on a default x86_64 build, NEON on aarch64, scalar
//! elsewhere. `wide` picks its implementation at compile time only, so this is also what runs
//! on x86 CPUs without AVX2.

use wide::{f32x16, u32x16};

use super::Simd;

/// Token for the portable backend. Always available.
#[derive(Clone, Copy)]
pub(crate) struct Portable(());

impl Portable {
    /// # Safety
    /// None: `unsafe` only for symmetry with the x86 tokens, so the entry-point macro is uniform.
    #[inline(always)]
    pub(crate) const unsafe fn new() -> Self {
        Portable(())
    }
}

const LANE_BITS: u32x16 = u32x16::new([
    1 << 0,
    1 << 1,
    1 << 2,
    1 << 3,
    1 << 4,
    1 << 5,
    1 << 6,
    1 << 7,
    1 << 8,
    1 << 9,
    1 << 10,
    1 << 11,
    1 << 12,
    1 << 13,
    1 << 14,
    1 << 15,
]);

impl Simd for Portable {
    type F = f32x16;
    type U = u32x16;
    type W = [f64; 16];
    const NT: bool = false;
    const INTERLEAVE: usize = 1;

    #[inline(always)]
    unsafe fn loadu(self, p: *const f32) -> f32x16 {
        // SAFETY: the caller guarantees 16 readable floats; read_unaligned needs no alignment.
        f32x16::new(unsafe { p.cast::<[f32; 16]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn storeu(self, p: *mut f32, v: f32x16) {
        // SAFETY: the caller guarantees 16 writable floats.
        unsafe { p.cast::<[f32; 16]>().write_unaligned(v.to_array()) }
    }
    #[inline(always)]
    unsafe fn store_nt(self, p: *mut f32, v: f32x16) {
        // SAFETY: as `storeu`; this backend has no non-temporal store.
        unsafe { self.storeu(p, v) }
    }
    #[inline(always)]
    fn fence(self) {}

    #[inline(always)]
    fn splat(self, x: f32) -> f32x16 {
        f32x16::splat(x)
    }
    #[inline(always)]
    fn mul(self, a: f32x16, b: f32x16) -> f32x16 {
        a * b
    }
    #[inline(always)]
    fn mul_keep(self, keep: u16, a: f32x16, b: f32x16) -> f32x16 {
        let m = (u32x16::splat(keep as u32) & LANE_BITS).simd_eq(LANE_BITS);
        // A bitwise AND with the all-ones/all-zeros lane mask: dropped lanes become +0.0
        // whatever the product holds (NaN, inf).
        (a * b) & wide::bytemuck::cast::<u32x16, f32x16>(m)
    }

    #[inline(always)]
    fn add(self, a: f32x16, b: f32x16) -> f32x16 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32x16, b: f32x16) -> f32x16 {
        a - b
    }
    #[inline(always)]
    fn mul_add(self, a: f32x16, b: f32x16, c: f32x16) -> f32x16 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn relu(self, v: f32x16) -> f32x16 {
        // A select, not `max`: wide's max drops NaN, and NaN must pass through as on x86.
        let zero = f32x16::splat(0.0);
        v.simd_lt(zero).bitselect(zero, v)
    }
    #[inline(always)]
    fn keep_where_positive(self, y: f32x16, v: f32x16) -> f32x16 {
        // NaN > 0 is false, as on x86.
        v & y.simd_gt(f32x16::splat(0.0))
    }
    #[inline(always)]
    fn to_array(self, v: f32x16) -> [f32; 16] {
        v.to_array()
    }

    #[inline(always)]
    fn zero_w(self) -> [f64; 16] {
        [0.0; 16]
    }
    #[inline(always)]
    fn add_widened(self, mut acc: [f64; 16], v: f32x16) -> [f64; 16] {
        for (a, x) in acc.iter_mut().zip(v.to_array()) {
            *a += x as f64;
        }
        acc
    }
    #[inline(always)]
    fn add_w(self, mut a: [f64; 16], b: [f64; 16]) -> [f64; 16] {
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
        a
    }
    #[inline(always)]
    fn w_to_array(self, w: [f64; 16]) -> [f64; 16] {
        w
    }
    #[inline(always)]
    fn w_from_array(self, a: [f64; 16]) -> [f64; 16] {
        a
    }

    #[inline(always)]
    unsafe fn loadu_u(self, p: *const u32) -> u32x16 {
        // SAFETY: the caller guarantees 16 readable u32.
        u32x16::new(unsafe { p.cast::<[u32; 16]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn storeu_u(self, p: *mut u32, v: u32x16) {
        // SAFETY: the caller guarantees 16 writable u32.
        unsafe { p.cast::<[u32; 16]>().write_unaligned(v.to_array()) }
    }
    #[inline(always)]
    fn splat_u(self, x: u32) -> u32x16 {
        u32x16::splat(x)
    }
    #[inline(always)]
    fn add_u(self, a: u32x16, b: u32x16) -> u32x16 {
        a + b
    }
    #[inline(always)]
    fn xor_u(self, a: u32x16, b: u32x16) -> u32x16 {
        a ^ b
    }
    #[inline(always)]
    fn shl_u<const K: i32>(self, a: u32x16) -> u32x16 {
        a << K as u32
    }
    #[inline(always)]
    fn rotl_u<const K: i32>(self, a: u32x16) -> u32x16 {
        (a << K as u32) | (a >> (32 - K) as u32)
    }
    #[inline(always)]
    fn ge_bits(self, a: u32x16, b: u32x16) -> u16 {
        a.simd_ge(b).to_bitmask() as u16
    }
}
