//! The AVX2+FMA backend: each 16-lane vector is a pair of `ymm` registers.

use core::arch::x86_64::*;

use super::Simd;

/// Token proving the CPU has AVX2, FMA and F16C (see [`Isa::Avx2`]).
#[derive(Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// # Safety
    /// The CPU must support `avx2`, `fma` and `f16c`.
    #[inline(always)]
    pub(crate) const unsafe fn new() -> Self {
        Avx2(())
    }
}

/// Bit `i` of a 16-bit keep word, for lanes 0..8 and 8..16.
const LANE_BITS: [[i32; 8]; 2] = [
    [1, 2, 4, 8, 16, 32, 64, 128],
    [256, 512, 1024, 2048, 4096, 8192, 16384, 32768],
];

// Every `unsafe` block below calls AVX2 (or F16C) intrinsics; a token exists only after
// runtime detection of AVX2+FMA+F16C (`Avx2::new`), which is the precondition of each of them.
impl Simd for Avx2 {
    type F = [__m256; 2];
    type U = [__m256i; 2];
    type W = [__m256d; 4];
    const NT: bool = true;
    // One stream's state is 8 ymm; two (16 ymm) left no room for temporaries and spilled.
    const INTERLEAVE: usize = 1;

    #[inline(always)]
    unsafe fn loadu(self, p: *const f32) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX; the caller guarantees 16 readable floats.
        unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
    }
    #[inline(always)]
    unsafe fn storeu(self, p: *mut f32, v: [__m256; 2]) {
        // SAFETY: token ⇒ AVX; the caller guarantees 16 writable floats.
        unsafe {
            _mm256_storeu_ps(p, v[0]);
            _mm256_storeu_ps(p.add(8), v[1]);
        }
    }
    #[inline(always)]
    unsafe fn store_nt(self, p: *mut f32, v: [__m256; 2]) {
        // SAFETY: token ⇒ AVX; `p` is 64-byte aligned, so both halves are 32-byte aligned as
        // vmovntps requires.
        unsafe {
            _mm256_stream_ps(p, v[0]);
            _mm256_stream_ps(p.add(8), v[1]);
        }
    }
    #[inline(always)]
    fn fence(self) {
        // SAFETY: sfence is SSE, present on every x86_64.
        unsafe { _mm_sfence() }
    }
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        // SAFETY: prefetcht0 is SSE, present on every x86_64; it never faults, whatever `p`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }

    #[inline(always)]
    fn prefetch_l2(self, p: *const f32) {
        // SAFETY: prefetcht1 is SSE, present on every x86_64; it never faults, whatever `p`.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }
    #[inline(always)]
    fn prefetch_w(self, p: *const f32) {
        // SAFETY: a prefetch hint never faults, whatever `p`. (Without the `prfchw` target
        // feature, unstable in Rust 1.95, LLVM emits prefetcht0 for it — an SSE read
        // prefetch. It gives the measured gain: a line nobody else holds arrives exclusive,
        // and a real prefetchw through inline asm measured the same.)
        unsafe { _mm_prefetch::<_MM_HINT_ET0>(p.cast()) }
    }

    #[inline(always)]
    fn splat(self, x: f32) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX.
        let v = unsafe { _mm256_set1_ps(x) };
        [v, v]
    }
    #[inline(always)]
    fn mul(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX.
        unsafe { [_mm256_mul_ps(a[0], b[0]), _mm256_mul_ps(a[1], b[1])] }
    }
    #[inline(always)]
    fn mul_keep(self, keep: u16, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        let p = self.mul(a, b);
        // SAFETY: token ⇒ AVX2.
        unsafe {
            let k = _mm256_set1_epi32(keep as i32);
            [keep_half(k, 0, p[0]), keep_half(k, 1, p[1])]
        }
    }

    #[inline(always)]
    fn add(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX.
        unsafe { [_mm256_add_ps(a[0], b[0]), _mm256_add_ps(a[1], b[1])] }
    }
    #[inline(always)]
    fn sub(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX.
        unsafe { [_mm256_sub_ps(a[0], b[0]), _mm256_sub_ps(a[1], b[1])] }
    }
    #[inline(always)]
    fn mul_add(self, a: [__m256; 2], b: [__m256; 2], c: [__m256; 2]) -> [__m256; 2] {
        // SAFETY: token ⇒ FMA.
        unsafe {
            [
                _mm256_fmadd_ps(a[0], b[0], c[0]),
                _mm256_fmadd_ps(a[1], b[1], c[1]),
            ]
        }
    }
    #[inline(always)]
    fn relu(self, v: [__m256; 2]) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX. vmaxps returns its second operand when either is NaN or both
        // are zero, so NaN and -0.0 pass through.
        unsafe {
            let z = _mm256_setzero_ps();
            [_mm256_max_ps(z, v[0]), _mm256_max_ps(z, v[1])]
        }
    }
    #[inline(always)]
    fn keep_where_positive(self, y: [__m256; 2], v: [__m256; 2]) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX. Ordered compare: NaN is not > 0; the AND zeroes the rest.
        unsafe {
            let z = _mm256_setzero_ps();
            [
                _mm256_and_ps(v[0], _mm256_cmp_ps::<_CMP_GT_OQ>(y[0], z)),
                _mm256_and_ps(v[1], _mm256_cmp_ps::<_CMP_GT_OQ>(y[1], z)),
            ]
        }
    }
    #[inline(always)]
    fn to_array(self, v: [__m256; 2]) -> [f32; 16] {
        // SAFETY: [__m256; 2] and [f32; 16] have the same size and every bit pattern is valid.
        unsafe { core::mem::transmute::<[__m256; 2], [f32; 16]>(v) }
    }
    #[inline(always)]
    unsafe fn add_to_f64(self, out: *mut f64, v: [__m256; 2]) {
        // SAFETY: token ⇒ AVX; the caller guarantees 16 readable and writable f64.
        unsafe {
            for (h, half) in v.into_iter().enumerate() {
                let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(half));
                let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(half));
                let o = out.add(8 * h);
                _mm256_storeu_pd(o, _mm256_add_pd(_mm256_loadu_pd(o), lo));
                _mm256_storeu_pd(o.add(4), _mm256_add_pd(_mm256_loadu_pd(o.add(4)), hi));
            }
        }
    }

    #[inline(always)]
    fn zero_w(self) -> [__m256d; 4] {
        // SAFETY: token ⇒ AVX.
        unsafe { [_mm256_setzero_pd(); 4] }
    }
    #[inline(always)]
    fn add_widened(self, a: [__m256d; 4], v: [__m256; 2]) -> [__m256d; 4] {
        // SAFETY: token ⇒ AVX.
        unsafe {
            [
                _mm256_add_pd(a[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v[0]))),
                _mm256_add_pd(a[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v[0]))),
                _mm256_add_pd(a[2], _mm256_cvtps_pd(_mm256_castps256_ps128(v[1]))),
                _mm256_add_pd(a[3], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v[1]))),
            ]
        }
    }
    #[inline(always)]
    fn add_w(self, a: [__m256d; 4], b: [__m256d; 4]) -> [__m256d; 4] {
        // SAFETY: token ⇒ AVX.
        unsafe {
            [
                _mm256_add_pd(a[0], b[0]),
                _mm256_add_pd(a[1], b[1]),
                _mm256_add_pd(a[2], b[2]),
                _mm256_add_pd(a[3], b[3]),
            ]
        }
    }
    #[inline(always)]
    fn w_to_array(self, w: [__m256d; 4]) -> [f64; 16] {
        // SAFETY: [__m256d; 4] and [f64; 16] have the same size and every bit pattern is valid.
        unsafe { core::mem::transmute::<[__m256d; 4], [f64; 16]>(w) }
    }
    #[inline(always)]
    fn w_from_array(self, a: [f64; 16]) -> [__m256d; 4] {
        // SAFETY: as `w_to_array`, the other way.
        unsafe { core::mem::transmute::<[f64; 16], [__m256d; 4]>(a) }
    }
    #[inline(always)]
    unsafe fn add_w_to(self, out: *mut f64, w: [__m256d; 4]) {
        // SAFETY: token ⇒ AVX; the caller guarantees 16 readable and writable f64.
        unsafe {
            for (i, wi) in w.into_iter().enumerate() {
                let p = out.add(4 * i);
                _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), wi));
            }
        }
    }

    #[inline(always)]
    unsafe fn load_bf16(self, p: *const u16) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX2; the caller guarantees 16 readable u16 (two 16-byte loads).
        unsafe {
            [
                widen_bf16_half(_mm_loadu_si128(p.cast())),
                widen_bf16_half(_mm_loadu_si128(p.add(8).cast())),
            ]
        }
    }
    #[inline(always)]
    unsafe fn load_bf16_for_arith(self, p: *const u16) -> [__m256; 2] {
        // SAFETY: token ⇒ AVX2; the caller guarantees 16 readable u16 (two 16-byte loads).
        unsafe {
            [
                widen_bf16_half_signalling(_mm_loadu_si128(p.cast())),
                widen_bf16_half_signalling(_mm_loadu_si128(p.add(8).cast())),
            ]
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16, v: [__m256; 2]) {
        // SAFETY: token ⇒ AVX2; the caller guarantees 16 writable u16 (one 32-byte store).
        unsafe { _mm256_storeu_si256(p.cast(), narrow_bf16(v)) }
    }
    #[inline(always)]
    unsafe fn store_bf16_nt(self, p: *mut u16, v: [__m256; 2]) {
        // SAFETY: token ⇒ AVX2; 16 writable u16 at a 32-byte aligned `p` (vmovntdq).
        unsafe { _mm256_stream_si256(p.cast(), narrow_bf16(v)) }
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> [__m256; 2] {
        // SAFETY: token ⇒ F16C (detected with AVX2); 16 readable u16 (two 16-byte loads).
        unsafe {
            [
                _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(8).cast())),
            ]
        }
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16, v: [__m256; 2]) {
        // SAFETY: token ⇒ F16C; 16 writable u16.
        unsafe { _mm256_storeu_si256(p.cast(), narrow_f16(v)) }
    }
    #[inline(always)]
    unsafe fn store_f16_nt(self, p: *mut u16, v: [__m256; 2]) {
        // SAFETY: token ⇒ F16C; 16 writable u16 at a 32-byte aligned `p` (vmovntdq).
        unsafe { _mm256_stream_si256(p.cast(), narrow_f16(v)) }
    }

    #[inline(always)]
    unsafe fn loadu_u(self, p: *const u32) -> [__m256i; 2] {
        // SAFETY: token ⇒ AVX; the caller guarantees 16 readable u32.
        unsafe {
            [
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.add(8).cast()),
            ]
        }
    }
    #[inline(always)]
    unsafe fn storeu_u(self, p: *mut u32, v: [__m256i; 2]) {
        // SAFETY: token ⇒ AVX; the caller guarantees 16 writable u32.
        unsafe {
            _mm256_storeu_si256(p.cast(), v[0]);
            _mm256_storeu_si256(p.add(8).cast(), v[1]);
        }
    }
    #[inline(always)]
    fn splat_u(self, x: u32) -> [__m256i; 2] {
        // SAFETY: token ⇒ AVX.
        let v = unsafe { _mm256_set1_epi32(x as i32) };
        [v, v]
    }
    #[inline(always)]
    fn add_u(self, a: [__m256i; 2], b: [__m256i; 2]) -> [__m256i; 2] {
        // SAFETY: token ⇒ AVX2.
        unsafe { [_mm256_add_epi32(a[0], b[0]), _mm256_add_epi32(a[1], b[1])] }
    }
    #[inline(always)]
    fn xor_u(self, a: [__m256i; 2], b: [__m256i; 2]) -> [__m256i; 2] {
        // SAFETY: token ⇒ AVX2.
        unsafe { [_mm256_xor_si256(a[0], b[0]), _mm256_xor_si256(a[1], b[1])] }
    }
    #[inline(always)]
    fn shl_u<const K: i32>(self, a: [__m256i; 2]) -> [__m256i; 2] {
        // SAFETY: token ⇒ AVX2.
        unsafe { [_mm256_slli_epi32::<K>(a[0]), _mm256_slli_epi32::<K>(a[1])] }
    }
    #[inline(always)]
    fn rotl_u<const K: i32>(self, a: [__m256i; 2]) -> [__m256i; 2] {
        // SAFETY: token ⇒ AVX2. `32 - K` cannot be a const argument on stable, so the right
        // shift takes a splat count, which LLVM folds back to the immediate form.
        unsafe {
            let kc = _mm256_set1_epi32(32 - K);
            [
                _mm256_or_si256(_mm256_slli_epi32::<K>(a[0]), _mm256_srlv_epi32(a[0], kc)),
                _mm256_or_si256(_mm256_slli_epi32::<K>(a[1]), _mm256_srlv_epi32(a[1], kc)),
            ]
        }
    }
    #[inline(always)]
    fn ge_bits(self, a: [__m256i; 2], b: [__m256i; 2]) -> u16 {
        // SAFETY: token ⇒ AVX2.
        unsafe { ge_half(a[0], b[0]) | (ge_half(a[1], b[1]) << 8) }
    }
}

/// `v` where the lane's bit of `keep` (bits `8h .. 8h+8`, broadcast in `k`) is set, +0.0
/// elsewhere. A plain `#[inline(always)]` fn, not a closure, so it is inlined into the
/// `#[target_feature]` entry point with its intrinsics.
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn keep_half(k: __m256i, h: usize, v: __m256) -> __m256 {
    // SAFETY: forwarded. Lane i is all-ones iff its bit is set; the AND then writes +0.0 to
    // dropped lanes whatever `v` holds.
    unsafe {
        let lb = _mm256_loadu_si256(LANE_BITS[h].as_ptr().cast());
        let m = _mm256_cmpeq_epi32(_mm256_and_si256(k, lb), lb);
        _mm256_and_ps(v, _mm256_castsi256_ps(m))
    }
}

/// Bit i set iff `a[i] >= b[i]` unsigned, for 8 lanes.
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn ge_half(a: __m256i, b: __m256i) -> u16 {
    // SAFETY: forwarded. Unsigned a >= b  ⇔  max(a, b) == a.
    unsafe {
        let ge = _mm256_cmpeq_epi32(_mm256_max_epu32(a, b), a);
        _mm256_movemask_ps(_mm256_castsi256_ps(ge)) as u16
    }
}

/// 16 lanes rounded to bf16 (nearest, ties to even; NaN made quiet), in order.
#[inline(always)]
fn narrow_bf16(v: [__m256; 2]) -> __m256i {
    // SAFETY: only reached from `Avx2` methods, whose token proves AVX2.
    unsafe {
        // Values fit 16 bits: the unsigned saturating pack is exact; it interleaves the
        // 128-bit halves, which the permute puts back in order.
        let packed = _mm256_packus_epi32(round_bf16(v[0]), round_bf16(v[1]));
        _mm256_permute4x64_epi64::<0b11_01_10_00>(packed)
    }
}

/// 8 bf16 bit patterns widened to f32, as `convert::bf16_to_f32`.
///
/// Functions, not closures, here and in [`round_bf16`]: closures carry no inline attribute
/// on stable, and these two stayed out of line, every intrinsic in them a call compiled
/// without AVX2 — bf16 dropout ran at 0.6 GB/s on AVX2 (`.ci/run`'s inlining check now
/// looks for closures and intrinsics left in the library).
#[inline(always)]
fn widen_bf16_half(raw: __m128i) -> __m256 {
    // SAFETY: only reached from `Avx2` methods, whose token proves AVX2.
    unsafe {
        let w = _mm256_cvtepu16_epi32(raw);
        // A NaN (magnitude above 0x7F80) comes back quiet, as the scalar definition.
        let nan = _mm256_cmpgt_epi32(
            _mm256_and_si256(w, _mm256_set1_epi32(0x7FFF)),
            _mm256_set1_epi32(0x7F80),
        );
        let w = _mm256_or_si256(w, _mm256_and_si256(nan, _mm256_set1_epi32(0x40)));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
    }
}

/// 8 bf16 bit patterns widened to f32 by the shift alone: a signalling NaN stays
/// signalling (for `load_bf16_for_arith`).
#[inline(always)]
fn widen_bf16_half_signalling(raw: __m128i) -> __m256 {
    // SAFETY: only reached from `Avx2` methods, whose token proves AVX2.
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw))) }
}

/// 8 lanes rounded to bf16 in the low half of each 32-bit lane (nearest, ties to even; NaN
/// made quiet).
#[inline(always)]
fn round_bf16(x: __m256) -> __m256i {
    // SAFETY: only reached from `Avx2` methods, whose token proves AVX2.
    unsafe {
        let b = _mm256_castps_si256(x);
        let hi = _mm256_srli_epi32::<16>(b);
        let lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
        let r = _mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
        let r = _mm256_srli_epi32::<16>(r);
        let q = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
        _mm256_blendv_epi8(r, q, nan)
    }
}

/// 16 lanes rounded to binary16 by F16C (the immediate rounds to nearest even whatever
/// MXCSR says), in order.
#[inline(always)]
fn narrow_f16(v: [__m256; 2]) -> __m256i {
    // SAFETY: only reached from `Avx2` methods, whose token proves F16C.
    unsafe {
        let lo = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v[0]);
        let hi = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v[1]);
        _mm256_set_m128i(hi, lo)
    }
}
