//! Scalar conversions between `f32` and the 16-bit element types (bit patterns as `u16`):
//! the definition every vector backend reproduces bit for bit, and what they fall back to for
//! partial vectors.
//!
//! Widening is exact (a signalling NaN comes back quiet, its payload kept). Narrowing rounds
//! to nearest, ties to even; a NaN stays a NaN, made quiet, keeping its sign and the top bits
//! of its payload; f16 overflows to ±inf and has subnormals. These are the `half` crate's
//! results (the tests check every 16-bit input and a large sample of f32 inputs).

/// The bits of a bf16 (the top half of an f32) widened to f32.
#[inline(always)]
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    let quiet = if h & 0x7FFF > 0x7F80 { 0x0040 } else { 0 };
    f32::from_bits(((h | quiet) as u32) << 16)
}

/// `v` rounded to bf16 (nearest, ties to even), as bits.
#[inline(always)]
pub(crate) fn f32_to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    if b & 0x7FFF_FFFF > 0x7F80_0000 {
        return ((b >> 16) | 0x0040) as u16;
    }
    // Adding just under half a unit of the kept part, plus its low bit, rounds to nearest with
    // ties to even; a carry into the exponent is the correct rounding up (to ∞ past the max).
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// The bits of an IEEE binary16 widened to f32.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x03FF) as u32;
    let bits = match exp {
        0x1F if man == 0 => 0x7F80_0000,
        0x1F => 0x7FC0_0000 | (man << 13),
        0 => {
            // Subnormal (or zero): man · 2^-24, exact in f32.
            (man as f32 * (1.0 / 16_777_216.0)).to_bits()
        }
        _ => ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(sign | bits)
}

/// `v` rounded to binary16 (nearest, ties to even; ±inf past 65504 + half an ulp), as bits.
#[inline(always)]
pub(crate) fn f32_to_f16(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7FFF_FFFF;
    if a > 0x7F80_0000 {
        return sign | 0x7E00 | ((a >> 13) & 0x03FF) as u16;
    }
    if a >= 0x477F_F000 {
        // 65520 and up (∞ included): beyond the midpoint of 65504 and 2^16, to ∞.
        return sign | 0x7C00;
    }
    if a <= 0x3300_0000 {
        // At most 2^-25, half the smallest subnormal: a tie to the even zero, or less.
        return sign;
    }
    // The kept bits and the rest: for normals the f32 significand shifted by 13 and the
    // exponent rebiased (127 → 15); for subnormals the significand with its implicit one,
    // shifted so that its unit is 2^-24.
    let (kept, rest, half) = if a >= 0x3880_0000 {
        ((a - (112 << 23)) >> 13, a & 0x1FFF, 0x1000)
    } else {
        let m = (a & 0x007F_FFFF) | 0x0080_0000;
        let shift = 126 - (a >> 23);
        (m >> shift, m & ((1 << shift) - 1), 1 << (shift - 1))
    };
    let up = rest > half || (rest == half && kept & 1 == 1);
    sign | (kept + up as u32) as u16
}
