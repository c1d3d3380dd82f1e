//! Kernel bodies, each written once against the [`Simd`](crate::simd::Simd) trait and
//! instantiated per ISA by `dispatch::entry`'s `entry_points!`. Everything here is `#[inline(always)]` so
//! that it compiles inside the `#[target_feature]` entry points.

pub(crate) mod bits;
pub(crate) mod bn;
pub(crate) mod bn_backward;
pub(crate) mod convert;
pub(crate) mod stream;
pub(crate) mod sums;
