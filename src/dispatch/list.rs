//! Every kernel, once: `name(entry-point arguments) -> result => body`, where the body is a
//! function in `crate::kernels`, generic over the backend, taking the backend token and then
//! the entry point's arguments in order. `kernel_list!(m extra..)` calls `m! { extra..; list }`:
//! [`super::table`] makes the [`super::Kernels`] fields of it, [`super::entry`] the entry
//! points and a table per ISA. Attributes before an entry apply to its table field.

macro_rules! kernel_list {
    ($then:ident $($extra:tt)*) => {
        $then! { $($extra)* ;
            block_streams(
                seed: u64,
                block: u64,
                out: *mut [crate::rng::StreamState; crate::rng::STREAMS],
            ) => crate::kernels::bits::block_streams;

            keep_bits(
                st: &[crate::rng::StreamState; crate::rng::STREAMS],
                first: usize,
                groups: usize,
                thresh: u32,
                out: *mut u16,
            ) => crate::kernels::bits::keep_bits;

            bn_scale_consts(var: *const f32, gamma: *const f32, eps: f32, out: *mut f32, n: usize)
                => crate::kernels::bn::scale_consts;

            bn_train_consts(
                mean: *const f64,
                var: *const f64,
                count: usize,
                gamma: *const f32,
                beta: *const f32,
                eps: f32,
                out: *mut f32,
                n: usize,
            ) => crate::kernels::bn::train_consts;

            bn_row_moments(
                sums: *mut f64,
                pivots: *mut f32,
                c: usize,
                count: usize,
                refine: bool,
            ) -> bool => crate::kernels::bn::row_moments;

            bn_bwd_row_consts(
                sums: *const f64,
                c: usize,
                count: usize,
                gamma: *const f32,
                mean: *const f32,
                invstd: *const f32,
                batch: bool,
                out: *mut f32,
                dgamma: *mut f32,
                dbeta: *mut f32,
            ) => crate::kernels::bn_backward::row_consts;

            // The raw lanes, for the stream-layout tests only (`testing::xoshiro_lanes`).
            #[cfg_attr(not(feature = "testing"), allow(dead_code))]
            random_u32(st: &crate::rng::StreamState, draws: usize, out: *mut u32)
                => crate::kernels::bits::random_u32;

            // The element conversions, for the conversion tests only (`testing::widen` and
            // `testing::narrow`); the typed kernels make them on every load and store.
            #[cfg_attr(not(feature = "testing"), allow(dead_code))]
            widen_bf16(x: *const half::bf16, y: *mut f32, n: usize)
                => crate::kernels::convert::widen;
            #[cfg_attr(not(feature = "testing"), allow(dead_code))]
            widen_f16(x: *const half::f16, y: *mut f32, n: usize)
                => crate::kernels::convert::widen;
            // This table's bf16 narrowing is the integer route on every ISA; the typed
            // tables' `narrow` is the one the kernels use (on AVX-512 with BF16,
            // `vcvtneps2bf16`).
            #[cfg_attr(not(feature = "testing"), allow(dead_code))]
            narrow_bf16(x: *const f32, y: *mut half::bf16, n: usize)
                => crate::kernels::convert::narrow;

        }
    };
}

/// The kernels over activation tensors of any element type `E` (f32, bf16, f16): the same
/// syntax, with `E` in the signatures. `typed_kernel_list!(m extra..)` calls
/// `m! { extra..; list }`; [`super::entry`] stamps the entry points out once per ISA and
/// element type, in a module where `E` names the type, and [`super::table`] makes the
/// generic table type `TypedKernels<E>` of it.
macro_rules! typed_kernel_list {
    ($then:ident $($extra:tt)*) => {
        $then! { $($extra)* ;
            apply_mask(x: *const E, y: *mut E, n: usize, bits: *const u16, scale: f32, nt: bool)
                => crate::kernels::stream::apply_mask;

            dropout_segment(
                st: &[crate::rng::StreamState; crate::rng::STREAMS],
                j0: usize,
                x: *const E,
                y: *mut E,
                n: usize,
                bits: *mut u16,
                store_bits: bool,
                thresh: u32,
                scale: f32,
                nt: bool,
            ) => crate::kernels::stream::dropout_segment;

            scale_planes(
                x: *const E,
                y: *mut E,
                planes: usize,
                len: usize,
                bits: *const u16,
                s: f32,
                nt: bool,
            ) => crate::kernels::stream::scale_planes;

            bn_normalize_runs(
                x: *const E,
                y: *mut E,
                runs: usize,
                len: usize,
                stride: usize,
                g: usize,
                aff: *const crate::kernels::bn::Affine,
                res: *const E,
                relu: bool,
                nt: bool,
                prefetch: usize,
            ) => crate::kernels::bn::normalize_runs;

            bn_normalize_tiled(
                x: *const E,
                y: *mut E,
                n: usize,
                aff: *const f32,
                l: usize,
                res: *const E,
                relu: bool,
                nt: bool,
            ) => crate::kernels::bn::normalize_tiled;

            bn_sums_runs(
                x: *const E,
                runs: usize,
                len: usize,
                stride: usize,
                g: usize,
                pivots: *const f32,
                out: *mut f64,
            ) => crate::kernels::bn::sums_runs;

            bn_normalize_sum_runs(
                x: *const E,
                y: *mut E,
                runs: usize,
                len: usize,
                stride: usize,
                f: crate::kernels::bn::Affine,
                res: *const E,
                relu: bool,
                nt: bool,
                xs: *const E,
                pivot: f32,
            ) -> [f64; 2] => crate::kernels::bn::normalize_sum_runs_relu;

            bn_sums_rows(
                x: *const E,
                rows: usize,
                stride: usize,
                w: usize,
                pivots: *const f32,
                out: *mut f64,
            ) => crate::kernels::bn::sums_rows;

            bn_bwd_sums_runs(
                inp: crate::kernels::bn_backward::BwdIn<E>,
                runs: usize,
                len: usize,
                stride: usize,
                mean: f32,
            ) -> [f64; 2] => crate::kernels::bn_backward::sums_runs;

            bn_bwd_dx_runs(
                inp: crate::kernels::bn_backward::BwdIn<E>,
                dx: *mut E,
                dr: *mut E,
                runs: usize,
                len: usize,
                stride: usize,
                c: crate::kernels::bn_backward::BwdConsts,
                nt: bool,
                last_first: bool,
            ) => crate::kernels::bn_backward::dx_runs;

            bn_bwd_sums_rows(
                inp: crate::kernels::bn_backward::BwdIn<E>,
                rows: usize,
                stride: usize,
                w: usize,
                mean: *const f32,
                out: *mut f64,
            ) => crate::kernels::bn_backward::sums_rows;

            bn_bwd_dx_tiled(
                inp: crate::kernels::bn_backward::BwdIn<E>,
                dx: *mut E,
                dr: *mut E,
                n: usize,
                aff: *const f32,
                l: usize,
                nt: bool,
            ) => crate::kernels::bn_backward::dx_tiled;

            copy(x: *const E, y: *mut E, n: usize, nt: bool) => crate::kernels::stream::copy;

            fill(y: *mut E, n: usize, v: f32, nt: bool) => crate::kernels::stream::fill;

            // The narrowing of this table's stores, for the conversion tests only.
            #[cfg_attr(not(feature = "testing"), allow(dead_code))]
            narrow(x: *const f32, y: *mut E, n: usize) => crate::kernels::convert::narrow;
        }
    };
}
