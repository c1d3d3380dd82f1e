//! Each ISA's `#[target_feature]` entry points and its static table, stamped out from
//! [`super::list`]. An entry point only instantiates its kernel's generic body for the
//! backend, so with every body `#[inline(always)]` the whole kernel is compiled with the ISA's
//! features (`.ci/run` checks that no `dropnorm::kernels::` symbol is left out of line).

use super::Kernels;

/// `item` with the attributes in brackets before it (a macro of its own: the bracketed list
/// repeats apart from the kernels in `entry_points!`).
macro_rules! with_attrs {
    ([$(#[$attr:meta])*] $item:item) => {
        $(#[$attr])*
        $item
    };
}

/// `entry_points! { Backend, [attributes of every entry point], Table, Ctor; list }`: the
/// entry points of one backend and `KERNELS: Table`, its table (`Kernels`, or `TypedKernels<E>`
/// in a module where `E` names the element type).
macro_rules! entry_points {
    ($backend:ty, $attrs:tt, $table:ty, $ctor:ident ;
     $( $(#[$field:meta])* $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?
        => $kernel:path ; )*) => {
        $(
            with_attrs! { $attrs
                #[allow(clippy::too_many_arguments)]
                unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                    // SAFETY: the callers are the safe wrappers of `Kernels`, which hold this
                    // table only where `Kernels::for_isa` found the backend's CPU features,
                    // and which check the kernel's contract before they call.
                    unsafe { $kernel(<$backend>::new(), $($arg),*) }
                }
            }
        )*

        pub(crate) static KERNELS: $table = $ctor {
            nt: <$backend as crate::simd::Simd>::NT,
            $($name),*
        };
    };
}

/// The typed tables of one backend, a module per element type (`f32`, `bf16`, `f16`):
/// adding an element type is a line here and its `Elem` implementation.
macro_rules! typed_tables {
    ($backend:ty, $attrs:tt) => {
        pub(crate) mod f32 {
            use crate::dispatch::table::TypedKernels;
            type E = f32;
            typed_kernel_list!(entry_points $backend, $attrs, TypedKernels<E>, TypedKernels);
        }
        pub(crate) mod bf16 {
            use crate::dispatch::table::TypedKernels;
            type E = half::bf16;
            typed_kernel_list!(entry_points $backend, $attrs, TypedKernels<E>, TypedKernels);
        }
        pub(crate) mod f16 {
            use crate::dispatch::table::TypedKernels;
            type E = half::f16;
            typed_kernel_list!(entry_points $backend, $attrs, TypedKernels<E>, TypedKernels);
        }
    };
}

pub(super) mod portable {
    use super::Kernels;
    kernel_list!(entry_points crate::simd::portable::Portable, [], Kernels, Kernels);
    typed_tables!(crate::simd::portable::Portable, []);
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::Kernels;
    kernel_list!(entry_points crate::simd::x86_avx2::Avx2,
        [#[target_feature(enable = "avx2,fma,f16c")]], Kernels, Kernels);
    typed_tables!(crate::simd::x86_avx2::Avx2, [#[target_feature(enable = "avx2,fma,f16c")]]);
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::Kernels;
    kernel_list!(entry_points crate::simd::x86_avx512::Avx512,
        [#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]],
        Kernels, Kernels);
    typed_tables!(crate::simd::x86_avx512::Avx512,
        [#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]]);
    /// The bf16 table for CPUs that also have AVX-512 BF16: the same kernels, narrowing by
    /// `vcvtneps2bf16` (the same bits: subnormal lanes take the integer route).
    pub(crate) mod bf16_native {
        use crate::dispatch::table::TypedKernels;
        type E = half::bf16;
        typed_kernel_list!(entry_points crate::simd::x86_avx512::Avx512<true>,
            [#[target_feature(
                enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c"
            )]],
            TypedKernels<E>, TypedKernels);
    }
}
