//! Hooks for tests, benches and the roofline example: direct access to per-ISA kernels that
//! the public API only reaches through dispatch. Not part of the stable API.

use crate::rng::StreamState;
use crate::simd::Kernels;
use crate::{Error, Isa};

fn kernels(isa: Isa) -> Result<&'static Kernels, Error> {
    Kernels::for_isa(isa).ok_or(Error::IsaUnavailable { isa })
}

/// `draws` draws of the 16 lanes of `st` with `isa`'s xoshiro128++ kernel:
/// `out[16*d + l]` = draw `d` of lane `l`.
pub fn xoshiro_lanes(isa: Isa, st: &StreamState, draws: usize) -> Result<Vec<u32>, Error> {
    let mut out = vec![0u32; 16 * draws];
    kernels(isa)?.random_u32(st, &mut out);
    Ok(out)
}

/// Copies `x` to `y` with `isa`'s streaming copy, with plain (`nt = false`) or non-temporal
/// stores: the roofline's reference bandwidth. Panics if the lengths differ.
pub fn copy(isa: Isa, x: &[f32], y: &mut [f32], nt: bool) -> Result<(), Error> {
    let k = kernels(isa)?;
    k.copy(x, y, nt && k.nt);
    Ok(())
}

/// Whether `isa` has non-temporal stores.
pub fn has_nt(isa: Isa) -> bool {
    Kernels::for_isa(isa).is_some_and(|k| k.nt)
}

/// Output size (bytes) from which the kernels switch to non-temporal stores.
pub const NT_MIN_BYTES: usize = crate::dropout::NT_MIN_BYTES;
