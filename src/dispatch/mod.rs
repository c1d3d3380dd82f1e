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

pub(crate) use table::{Kernels, NT_MIN_BYTES, NT_MIN_BYTES_HEAVY, Src, TypedKernels};

/// The kernel table of [`crate::active_isa`], the one a public call runs with.
pub(crate) fn active_kernels() -> &'static Kernels {
    // Every path of `active_isa` yields an available ISA, and Portable always is.
    Kernels::for_isa(crate::active_isa()).unwrap_or(&entry::portable::KERNELS)
}

/// An element type's typed tables (sealed: implemented here for f32, bf16 and f16 only).
/// `pub` only so the public `Element` trait can name it; the module is private.
pub trait Tables: crate::simd::elem::Elem {
    /// The table of `isa` for this element type, or `None` if this CPU lacks it.
    fn table(isa: crate::Isa) -> Option<&'static TypedKernels<Self>>;
}

/// `tables!(type => module, …)`; a type whose AVX-512 table has a variant for CPUs with an
/// extension names it: `type => module (extension => variant module)`.
macro_rules! tables {
    ($($t:ty => $m:ident $(($feature:tt => $variant:ident))?),*) => {
        $(
            impl Tables for $t {
                fn table(isa: crate::Isa) -> Option<&'static TypedKernels<Self>> {
                    use crate::Isa;
                    if !isa.is_available() {
                        return None;
                    }
                    match isa {
                        Isa::Portable => Some(&entry::portable::$m::KERNELS),
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx2 => Some(&entry::avx2::$m::KERNELS),
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx512 => {
                            $(
                                if std::is_x86_feature_detected!($feature) {
                                    return Some(&entry::avx512::$variant::KERNELS);
                                }
                            )?
                            Some(&entry::avx512::$m::KERNELS)
                        }
                        #[cfg(not(target_arch = "x86_64"))]
                        _ => None,
                    }
                }
            }
        )*
    };
}
tables!(
    f32 => f32,
    half::bf16 => bf16 ("avx512bf16" => bf16_native),
    half::f16 => f16
);

/// The typed table of [`crate::active_isa`] for element type `E`.
pub(crate) fn active_typed<E: Tables>() -> &'static TypedKernels<E> {
    // Every path of `active_isa` yields an available ISA, and Portable always is.
    E::table(crate::active_isa())
        .or_else(|| E::table(crate::Isa::Portable))
        .expect("the portable backend is always available")
}
