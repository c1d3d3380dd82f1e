//! Dispatch: the kernels instantiated per ISA, the table a call runs with, and the NCHW
//! channel blocks parallel tasks take.
//!
//! [`list`] names every kernel once — its entry-point signature and its generic body in
//! `crate::kernels` — and from that list [`entry`] stamps out each ISA's `#[target_feature]`
//! entry points and its static [`Kernels`] table, and [`table`] declares the table type.
//! A table is chosen once per public call (see `crate::isa`) and captured by the rayon
//! closures, so the choice never changes inside a call. The safe, slice-based wrappers in
//! [`table`] are the boundary of the unsafe layer: each checks its kernel's contract.
//!
//! Adding a kernel: its body in `crate::kernels`, one entry in [`list`], a safe wrapper.

#[macro_use]
mod list;
pub(crate) mod channels;
mod entry;
mod table;

pub(crate) use table::{Kernels, NT_MIN_BYTES, NT_MIN_BYTES_HEAVY, Src};

/// The kernel table of [`crate::active_isa`], the one a public call runs with.
pub(crate) fn active_kernels() -> &'static Kernels {
    // Every path of `active_isa` yields an available ISA, and Portable always is.
    Kernels::for_isa(crate::active_isa()).unwrap_or(&entry::portable::KERNELS)
}
