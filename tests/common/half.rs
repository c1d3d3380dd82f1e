//! What the tests need of a 16-bit element type beyond the library's trait: the `half`
//! crate's own conversions, which are the reference, and the type's constants.

use dropnorm::{Element, bf16, f16};

pub trait Half: Element + Copy + PartialEq + core::fmt::Debug {
    const NAME: &'static str;
    /// A signalling NaN (exponent all ones, quiet bit clear, payload 1).
    const SNAN: u16;
    /// Half an ulp, relative, of a normal value.
    const HALF_ULP: f64;
    /// The smallest positive (subnormal) value.
    const TINY: f64;
    fn of(v: f32) -> Self;
    fn wide(self) -> f32;
    fn raw(self) -> u16;
    fn from_raw(b: u16) -> Self;
}

macro_rules! half_impl {
    ($t:ty, $name:literal, $snan:literal, $half_ulp:expr, $tiny:literal) => {
        impl Half for $t {
            const NAME: &'static str = $name;
            const SNAN: u16 = $snan;
            const HALF_ULP: f64 = $half_ulp;
            const TINY: f64 = $tiny;
            fn of(v: f32) -> Self {
                <$t>::from_f32(v)
            }
            fn wide(self) -> f32 {
                self.to_f32()
            }
            fn raw(self) -> u16 {
                self.to_bits()
            }
            fn from_raw(b: u16) -> Self {
                <$t>::from_bits(b)
            }
        }
    };
}

half_impl!(bf16, "bf16", 0x7F81, 1.0 / 256.0, 9.2e-41);
half_impl!(f16, "f16", 0x7C01, 1.0 / 2048.0, 6.0e-8);
