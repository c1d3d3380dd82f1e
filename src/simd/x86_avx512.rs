//! The AVX-512 backend: one `zmm` register per 16 lanes, keep masks in `k` registers.

use core::arch::x86_64::*;

use super::Simd;

/// Token proving the CPU has AVX-512 F/BW/DQ/VL (see [`Isa::Avx512`]), and with
/// `BF16 = true` also AVX-512 BF16, whose `vcvtneps2bf16` then narrows to bf16.
#[derive(Clone, Copy)]
pub(crate) struct Avx512<const BF16: bool = false>(());

impl<const BF16: bool> Avx512<BF16> {
    /// 16 lanes rounded to bf16: by `vcvtneps2bf16` with `BF16`, by integer rounding without.
    ///
    /// # Safety
    /// With `BF16`, the CPU must support AVX-512 BF16 (a token of `Avx512<true>` proves it).
    #[inline(always)]
    unsafe fn narrow_bf16(v: __m512) -> __m256i {
        if BF16 {
            // SAFETY: `BF16` ⇒ the caller has AVX-512 BF16.
            unsafe { narrow_bf16_native(v) }
        } else {
            narrow_bf16(v)
        }
    }

    /// # Safety
    /// The CPU must support `avx512f`, `avx512bw`, `avx512dq` and `avx512vl`, and with
    /// `BF16` also `avx512bf16`.
    #[inline(always)]
    pub(crate) const unsafe fn new() -> Self {
        Avx512(())
    }
}

// Every `unsafe` block below calls AVX-512 intrinsics; a token exists only after runtime
// detection of AVX-512 (`Avx512::new`), which is the precondition of each of them.
impl<const BF16: bool> Simd for Avx512<BF16> {
    type F = __m512;
    type U = __m512i;
    type W = [__m512d; 2];
    const NT: bool = true;
    const INTERLEAVE: usize = 4;

    #[inline(always)]
    unsafe fn loadu(self, p: *const f32) -> __m512 {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 readable floats.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn storeu(self, p: *mut f32, v: __m512) {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 writable floats.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, len: usize) -> __m512 {
        // SAFETY: token ⇒ AVX-512F; masked-off lanes are not accessed (no fault), so only
        // `p..p+len` is read. A masked load avoids the store-forwarding stall of a buffer.
        unsafe { _mm512_maskz_loadu_ps(((1u32 << len) - 1) as u16, p) }
    }
    #[inline(always)]
    unsafe fn load_keep(self, p: *const f32, keep: u16) -> __m512 {
        // SAFETY: token ⇒ AVX-512F; `p` is 64-byte aligned (vmovaps) and masked-off lanes
        // are not accessed, so only the lanes of `keep` are read.
        unsafe { _mm512_maskz_load_ps(keep, p) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, len: usize, v: __m512) {
        // SAFETY: token ⇒ AVX-512F; only the `len` unmasked lanes are written.
        unsafe { _mm512_mask_storeu_ps(p, ((1u32 << len) - 1) as u16, v) }
    }
    #[inline(always)]
    unsafe fn store_nt(self, p: *mut f32, v: __m512) {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 writable floats at a 64-byte
        // aligned `p`, as vmovntps requires.
        unsafe { _mm512_stream_ps(p, v) }
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
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn mul_keep(self, keep: u16, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token ⇒ AVX-512F. Zero-masking writes +0.0 to dropped lanes.
        unsafe { _mm512_maskz_mul_ps(keep, a, b) }
    }

    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn relu(self, v: __m512) -> __m512 {
        // SAFETY: token ⇒ AVX-512F. vmaxps returns its second operand when either is NaN or
        // both are zero, so NaN and -0.0 pass through.
        unsafe { _mm512_max_ps(_mm512_setzero_ps(), v) }
    }
    #[inline(always)]
    fn keep_where_positive(self, y: __m512, v: __m512) -> __m512 {
        // SAFETY: token ⇒ AVX-512F. Ordered compare: NaN is not > 0.
        unsafe {
            let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(y, _mm512_setzero_ps());
            _mm512_maskz_mov_ps(m, v)
        }
    }
    #[inline(always)]
    fn to_array(self, v: __m512) -> [f32; 16] {
        // SAFETY: __m512 and [f32; 16] have the same size and every bit pattern is valid.
        unsafe { core::mem::transmute::<__m512, [f32; 16]>(v) }
    }
    #[inline(always)]
    unsafe fn add_to_f64(self, out: *mut f64, v: __m512) {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 readable and writable f64.
        unsafe {
            let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(v),
            )));
            _mm512_storeu_pd(out, _mm512_add_pd(_mm512_loadu_pd(out), lo));
            _mm512_storeu_pd(out.add(8), _mm512_add_pd(_mm512_loadu_pd(out.add(8)), hi));
        }
    }

    #[inline(always)]
    fn zero_w(self) -> [__m512d; 2] {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { [_mm512_setzero_pd(); 2] }
    }
    #[inline(always)]
    fn add_widened(self, a: [__m512d; 2], v: __m512) -> [__m512d; 2] {
        // SAFETY: token ⇒ AVX-512F.
        unsafe {
            let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(v),
            )));
            [_mm512_add_pd(a[0], lo), _mm512_add_pd(a[1], hi)]
        }
    }
    #[inline(always)]
    fn add_w(self, a: [__m512d; 2], b: [__m512d; 2]) -> [__m512d; 2] {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { [_mm512_add_pd(a[0], b[0]), _mm512_add_pd(a[1], b[1])] }
    }
    #[inline(always)]
    fn select_w(self, keep: u16, a: [__m512d; 2], b: [__m512d; 2]) -> [__m512d; 2] {
        // SAFETY: token ⇒ AVX-512F; bits 0..8 of `keep` pick in the low half, 8..16 in the high.
        unsafe {
            [
                _mm512_mask_mov_pd(b[0], keep as u8, a[0]),
                _mm512_mask_mov_pd(b[1], (keep >> 8) as u8, a[1]),
            ]
        }
    }
    #[inline(always)]
    fn w_to_array(self, w: [__m512d; 2]) -> [f64; 16] {
        // SAFETY: [__m512d; 2] and [f64; 16] have the same size and every bit pattern is valid.
        unsafe { core::mem::transmute::<[__m512d; 2], [f64; 16]>(w) }
    }
    #[inline(always)]
    fn w_from_array(self, a: [f64; 16]) -> [__m512d; 2] {
        // SAFETY: as `w_to_array`, the other way.
        unsafe { core::mem::transmute::<[f64; 16], [__m512d; 2]>(a) }
    }
    #[inline(always)]
    unsafe fn add_w_to(self, out: *mut f64, w: [__m512d; 2]) {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 readable and writable f64.
        unsafe {
            _mm512_storeu_pd(out, _mm512_add_pd(_mm512_loadu_pd(out), w[0]));
            _mm512_storeu_pd(out.add(8), _mm512_add_pd(_mm512_loadu_pd(out.add(8)), w[1]));
        }
    }

    #[inline(always)]
    unsafe fn load_bf16(self, p: *const u16) -> __m512 {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 readable u16 (one 32-byte load).
        unsafe { widen_bf16(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load_bf16_for_arith(self, p: *const u16) -> __m512 {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 readable u16 (one 32-byte load).
        unsafe { widen_bf16_signalling(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load_bf16_partial(self, p: *const u16, len: usize) -> __m512 {
        // SAFETY: token ⇒ AVX-512BW/VL (vmovdqu16 with a mask); masked-off elements are not
        // accessed, so only `p..p+len` is read. A masked load instead of a buffer avoids a
        // store-forwarding stall at every run's head and tail.
        unsafe {
            widen_bf16(_mm256_maskz_loadu_epi16(
                ((1u32 << len) - 1) as u16,
                p.cast(),
            ))
        }
    }
    #[inline(always)]
    unsafe fn store_bf16_partial(self, p: *mut u16, len: usize, v: __m512) {
        // SAFETY: token ⇒ AVX-512BW/VL (and BF16 where `narrow_bf16_native` is reached);
        // only the `len` unmasked elements are written.
        unsafe {
            let r = Self::narrow_bf16(v);
            _mm256_mask_storeu_epi16(p.cast(), ((1u32 << len) - 1) as u16, r)
        }
    }
    #[inline(always)]
    unsafe fn load_f16_partial(self, p: *const u16, len: usize) -> __m512 {
        // SAFETY: as `load_bf16_partial`; vcvtph2ps zmm is AVX-512F.
        unsafe {
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
                ((1u32 << len) - 1) as u16,
                p.cast(),
            ))
        }
    }
    #[inline(always)]
    unsafe fn store_f16_partial(self, p: *mut u16, len: usize, v: __m512) {
        // SAFETY: token ⇒ AVX-512BW/VL; only the `len` unmasked elements are written.
        unsafe { _mm256_mask_storeu_epi16(p.cast(), ((1u32 << len) - 1) as u16, narrow_f16(v)) }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16, v: __m512) {
        // SAFETY: token ⇒ AVX-512F (and BF16 where `narrow_bf16_native` is reached); the
        // caller guarantees 16 writable u16 (one 32-byte store).
        unsafe {
            let r = Self::narrow_bf16(v);
            _mm256_storeu_si256(p.cast(), r)
        }
    }
    #[inline(always)]
    unsafe fn store_bf16_x4(self, p: *mut u16, v: [__m512; 4]) {
        // SAFETY: token ⇒ AVX-512F/DQ (and BF16 where the native narrowing is reached); the
        // caller guarantees 64 writable u16 (four 32-byte stores).
        unsafe {
            if BF16 && !any_subnormal_x4(v) {
                for (u, vu) in v.into_iter().enumerate() {
                    let r = core::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(vu));
                    _mm256_storeu_si256(p.add(16 * u).cast(), r);
                }
            } else {
                for (u, vu) in v.into_iter().enumerate() {
                    _mm256_storeu_si256(p.add(16 * u).cast(), Self::narrow_bf16(vu));
                }
            }
        }
    }
    #[inline(always)]
    unsafe fn store_bf16_nt(self, p: *mut u16, v: __m512) {
        // SAFETY: as `store_bf16`; `p` is 32-byte aligned (vmovntdq).
        unsafe {
            let r = Self::narrow_bf16(v);
            _mm256_stream_si256(p.cast(), r)
        }
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> __m512 {
        // SAFETY: token ⇒ AVX-512F (vcvtph2ps zmm); 16 readable u16.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16, v: __m512) {
        // SAFETY: token ⇒ AVX-512F (vcvtps2ph zmm); 16 writable u16.
        unsafe { _mm256_storeu_si256(p.cast(), narrow_f16(v)) }
    }
    #[inline(always)]
    unsafe fn store_f16_nt(self, p: *mut u16, v: __m512) {
        // SAFETY: token ⇒ AVX-512F; 16 writable u16 at a 32-byte aligned `p` (vmovntdq).
        unsafe { _mm256_stream_si256(p.cast(), narrow_f16(v)) }
    }

    #[inline(always)]
    unsafe fn loadu_u(self, p: *const u32) -> __m512i {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 readable u32.
        unsafe { _mm512_loadu_si512(p.cast()) }
    }
    #[inline(always)]
    unsafe fn storeu_u(self, p: *mut u32, v: __m512i) {
        // SAFETY: token ⇒ AVX-512F; the caller guarantees 16 writable u32.
        unsafe { _mm512_storeu_si512(p.cast(), v) }
    }
    #[inline(always)]
    fn splat_u(self, x: u32) -> __m512i {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_set1_epi32(x as i32) }
    }
    #[inline(always)]
    fn add_u(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_add_epi32(a, b) }
    }
    #[inline(always)]
    fn xor_u(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_xor_si512(a, b) }
    }
    #[inline(always)]
    fn xor3_u(self, a: __m512i, b: __m512i, c: __m512i) -> __m512i {
        // SAFETY: token ⇒ AVX-512F. 0x96 is the truth table of a ^ b ^ c.
        unsafe { _mm512_ternarylogic_epi32::<0x96>(a, b, c) }
    }
    #[inline(always)]
    fn shl_u<const K: i32>(self, a: __m512i) -> __m512i {
        // SAFETY: token ⇒ AVX-512F. A splat shift count folds to the immediate form.
        unsafe { _mm512_sllv_epi32(a, _mm512_set1_epi32(K)) }
    }
    #[inline(always)]
    fn rotl_u<const K: i32>(self, a: __m512i) -> __m512i {
        // SAFETY: token ⇒ AVX-512F (vprold).
        unsafe { _mm512_rol_epi32::<K>(a) }
    }
    #[inline(always)]
    fn ge_bits(self, a: __m512i, b: __m512i) -> u16 {
        // SAFETY: token ⇒ AVX-512F.
        unsafe { _mm512_cmpge_epu32_mask(a, b) }
    }
    #[inline(always)]
    fn window_u(self, lo: __m512i, hi: __m512i, idx: __m512i) -> __m512i {
        // SAFETY: token ⇒ AVX-512F. Index bit 4 picks `hi`, bits 0–3 the lane.
        unsafe { _mm512_permutex2var_epi32(lo, idx, hi) }
    }
}

/// 16 bf16 bit patterns widened to f32, as `convert::bf16_to_f32`.
#[inline(always)]
fn widen_bf16(raw: __m256i) -> __m512 {
    // SAFETY: only reached from `Avx512` methods, whose token proves AVX-512F.
    unsafe {
        let v = widen_bf16_signalling(raw);
        // A signalling NaN comes back quiet with its payload, as the scalar definition:
        // vfixupimmps with response 2 (QNaN of the source) for the SNaN class and 1 (the
        // source) for the seven others — one instruction where testing for NaN and setting
        // the bit took three, and one the compiler cannot fold away (as it does x + −0).
        let table = _mm512_set1_epi32(0x1111_1121);
        _mm512_fixupimm_ps::<0>(v, v, table)
    }
}

/// 16 bf16 bit patterns widened to f32 by the shift alone: a signalling NaN stays
/// signalling (for `load_bf16_for_arith`).
#[inline(always)]
fn widen_bf16_signalling(raw: __m256i) -> __m512 {
    // SAFETY: only reached from `Avx512` methods, whose token proves AVX-512F.
    unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(raw))) }
}

/// 16 lanes rounded to bf16 (nearest, ties to even; NaN made quiet). Integer rounding rather
/// than vcvtneps2bf16, which treats subnormal inputs as zero (measured here: 0x007FFFFF →
/// 0x0000 where nearest-even gives 0x0080) and so cannot give the other ISAs' bits.
#[inline(always)]
fn narrow_bf16(v: __m512) -> __m256i {
    // SAFETY: only reached from `Avx512` methods, whose token proves AVX-512F.
    unsafe {
        let b = _mm512_castps_si512(v);
        let hi = _mm512_srli_epi32::<16>(b);
        let lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
        let r = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
        let r = _mm512_srli_epi32::<16>(r);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        let r = _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
        _mm512_cvtepi32_epi16(r)
    }
}

/// [`narrow_bf16`] by `vcvtneps2bf16` (one instruction for the rounding, the quieting of NaNs
/// and the packing, where the integer route takes eight), except that a vector with a
/// subnormal lane — which the instruction would flush to ±0 — takes the integer route.
/// Subnormal activations are rare, so the branch is almost never taken and predicts well.
///
/// # Safety
/// The CPU must support AVX-512 F and BF16 (the callers are `Avx512<true>` methods).
#[inline(always)]
unsafe fn narrow_bf16_native(v: __m512) -> __m256i {
    // SAFETY: the caller guarantees AVX-512 F and BF16.
    unsafe {
        // Class 0x20: denormal.
        if _mm512_fpclass_ps_mask::<0x20>(v) != 0 {
            return narrow_bf16(v);
        }
        core::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v))
    }
}

/// Whether any lane of four vectors is subnormal (the class `vcvtneps2bf16` flushes): one
/// branch per four vectors where `narrow_bf16_native` takes one per vector. (Paired
/// roofline, AMD EPYC, bf16 dropout in cache: with the quiet-free load ×1.06–1.27 over
/// neither; the load alone measured ×1.04–1.05.)
#[inline(always)]
fn any_subnormal_x4(v: [__m512; 4]) -> bool {
    // SAFETY: only reached from `Avx512` methods, whose token proves AVX-512DQ (vfpclassps).
    unsafe {
        let k = _mm512_fpclass_ps_mask::<0x20>(v[0])
            | _mm512_fpclass_ps_mask::<0x20>(v[1])
            | _mm512_fpclass_ps_mask::<0x20>(v[2])
            | _mm512_fpclass_ps_mask::<0x20>(v[3]);
        k != 0
    }
}

/// 16 lanes rounded to binary16 by vcvtps2ph (the immediate rounds to nearest even whatever
/// MXCSR says).
#[inline(always)]
fn narrow_f16(v: __m512) -> __m256i {
    // SAFETY: only reached from `Avx512` methods, whose token proves AVX-512F.
    unsafe { _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
}
