//! The per-channel constants a normalization pass applies, made a channel or a band of
//! channels at a time.

use core::ops::Range;

use crate::kernels::bn::Affine;

/// The constants `(k, a, b)` of `y = (x − k)·a + b`, per channel. A closure
/// `Fn(usize) -> Affine` is one; a source that can make a band of channels faster than one at
/// a time (inference, whose `a` takes an f64 square root and division) says so in
/// [`ChannelConsts::band`].
pub(crate) trait ChannelConsts: Sync {
    /// Channel `ch`'s constants.
    fn at(&self, ch: usize) -> Affine;

    /// The constants of the channels `chans` into `k`, `a` and `b` (each `chans.len()` long);
    /// the same values as [`ChannelConsts::at`].
    fn band(&self, chans: Range<usize>, k: &mut [f32], a: &mut [f32], b: &mut [f32]) {
        for (j, ch) in chans.enumerate() {
            let f = self.at(ch);
            (k[j], a[j], b[j]) = (f.k, f.a, f.b);
        }
    }
}

impl<F: Fn(usize) -> Affine + Sync> ChannelConsts for F {
    fn at(&self, ch: usize) -> Affine {
        self(ch)
    }
}
