//! The typed exports: every kernel of `dropout.rs` and `batch_norm.rs`, stamped once per
//! element type by `typed_exports!` (`_f32`, `_bf16`, `_f16`). 16-bit elements cross the ABI
//! as their bit patterns (`uint16_t`), which `half::bf16`/`half::f16` are (`repr(transparent)`).

use crate::batch_norm::{self as bn, BackwardIn, BackwardOut, BackwardStats};
use crate::dropout as dr;
use crate::status::{DropnormStatus, guard};
use crate::types::{
    DropnormBnParams, DropnormChannelStats, DropnormDropoutParams, DropnormEpilogue,
    DropnormGradSums, DropnormLayout, DropnormRunningStats, DropnormRunningStatsMut,
    DropnormSavedStats, DropnormSavedStatsMut, DropnormShape,
};

/// A bfloat16 value's bits (sign, 8 exponent bits, 7 mantissa bits): the upper half of an f32.
pub type DropnormBf16 = u16;
/// An IEEE 754 binary16 value's bits.
pub type DropnormF16 = u16;

// The bit-pattern types must be the elements' own layout for the casts below.
const _: () = {
    assert!(size_of::<dropnorm::bf16>() == size_of::<u16>());
    assert!(align_of::<dropnorm::bf16>() == align_of::<u16>());
    assert!(size_of::<dropnorm::f16>() == size_of::<u16>());
    assert!(align_of::<dropnorm::f16>() == align_of::<u16>());
};

macro_rules! typed_exports {
    (
        $t:ty, $e:ty, $name:literal;
        $dropout:ident, $dropout_with_mask:ident, $dropout_backward:ident,
        $dropout_backward_with_mask:ident, $dropout_channels:ident,
        $dropout_channels_backward:ident;
        $train:ident, $add_relu_train:ident, $infer:ident, $add_relu_infer:ident,
        $channel_stats:ident, $apply:ident, $add_relu_apply:ident;
        $backward:ident, $add_relu_backward:ident, $backward_eval:ident,
        $backward_sums:ident, $backward_apply:ident
    ) => {
        #[doc = concat!("Inverted dropout over ", $name, ": `y[i] = keep(i) ? x[i]·scale : +0.0` \
            with `scale = 1/(1 − p)` (f32), P(drop) = `round(p·2^32)/2^32`, the mask a pure \
            function of `(seed, offset + i, p)` — the same on every ISA and thread count and \
            the same for f32, bf16 and f16. A dropped inf or NaN gives +0.0. Eval mode or \
            `p = 0` is a bit-exact copy, `p = 1` writes +0.0 everywhere.\n\n\
            `y_len` must equal `x_len`. `y == x` (same length) runs in place; any other \
            overlap is `DROPNORM_ERR_ALIASED`. On any error nothing is written.")]
        ///
        /// # Safety
        /// `x` is valid for reads of `x_len` values and `y` for writes of `y_len` values
        /// (either may be NULL when its length is 0); `params` points to a
        /// `DropnormDropoutParams`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $dropout(
            x: *const $t,
            x_len: usize,
            y: *mut $t,
            y_len: usize,
            params: *const DropnormDropoutParams,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe { dr::dropout::<$e>(x.cast(), x_len, y.cast(), y_len, params) })
        }

        #[doc = concat!("As `dropnorm_dropout_", $name, "`, also writing the mask: bit `i` \
            (1 = kept) in byte `i / 8` at bit `i % 8` (numpy's `packbits(…, \
            bitorder=\"little\")`); `mask_len >= (x_len + 7) / 8` (`dropnorm_mask_len`), \
            padding bits written as 0.")]
        ///
        /// # Safety
        /// As `dropnorm_dropout_f32`, and `mask` is valid for writes of `mask_len` bytes.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $dropout_with_mask(
            x: *const $t,
            x_len: usize,
            y: *mut $t,
            y_len: usize,
            mask: *mut u8,
            mask_len: usize,
            params: *const DropnormDropoutParams,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                dr::dropout_with_mask::<$e>(
                    x.cast(), x_len, y.cast(), y_len, mask, mask_len, params,
                )
            })
        }

        #[doc = concat!("Backward of `dropnorm_dropout_", $name, "` with the same `params`: \
            `dx[i] = keep(i) ? dy[i]·scale : +0.0`, the mask regenerated from the seed (no \
            mask stored). `dx == dy` (same length) runs in place.")]
        ///
        /// # Safety
        /// `dy` valid for reads of `dy_len` values, `dx` for writes of `dx_len` values,
        /// `params` points to a `DropnormDropoutParams`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $dropout_backward(
            dy: *const $t,
            dy_len: usize,
            dx: *mut $t,
            dx_len: usize,
            params: *const DropnormDropoutParams,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                dr::dropout_backward::<$e>(dy.cast(), dy_len, dx.cast(), dx_len, params)
            })
        }

        #[doc = concat!("Backward of `dropnorm_dropout_with_mask_", $name, "` from the stored \
            mask (`mask_len >= (dy_len + 7) / 8`); `params` gives the scale (and eval mode).")]
        ///
        /// # Safety
        /// As `dropnorm_dropout_backward_f32`, and `mask` is valid for reads of `mask_len`
        /// bytes.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $dropout_backward_with_mask(
            dy: *const $t,
            dy_len: usize,
            mask: *const u8,
            mask_len: usize,
            dx: *mut $t,
            dx_len: usize,
            params: *const DropnormDropoutParams,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                dr::dropout_backward_with_mask::<$e>(
                    dy.cast(), dy_len, mask, mask_len, dx.cast(), dx_len, params,
                )
            })
        }

        #[doc = concat!("Channel-wise (\"spatial\", PyTorch `Dropout2d`) dropout over ", $name,
            ": each `(n, c)` plane of `h·w` values is kept (scaled) or zeroed as a whole, the \
            keep decision of plane `n·c + ch` drawn as element `offset + n·c + ch` of the \
            stream. `x_len = y_len = n·c·h·w`; `y == x` runs in place.")]
        ///
        /// # Safety
        /// As `dropnorm_dropout_f32`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $dropout_channels(
            x: *const $t,
            x_len: usize,
            y: *mut $t,
            y_len: usize,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormDropoutParams,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                dr::dropout_channels::<$e>(x.cast(), x_len, y.cast(), y_len, shape, layout, params)
            })
        }

        #[doc = concat!("Backward of `dropnorm_dropout_channels_", $name, "` with the same \
            shape, layout and `params`.")]
        ///
        /// # Safety
        /// As `dropnorm_dropout_backward_f32`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $dropout_channels_backward(
            dy: *const $t,
            dy_len: usize,
            dx: *mut $t,
            dx_len: usize,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormDropoutParams,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                dr::dropout_channels_backward::<$e>(
                    dy.cast(), dy_len, dx.cast(), dx_len, shape, layout, params,
                )
            })
        }

        #[doc = concat!("Training-mode batch norm over ", $name, " (PyTorch \
            `BatchNorm1d/2d` in `train()`): per channel, the batch mean and biased variance \
            of its `n·h·w` values, `y = γ·(x − mean)/sqrt(var + eps) + β` (computed in f32 \
            from f64 statistics, in centered form), then the epilogue. Writes the batch mean \
            and `1/sqrt(var + eps)` to `saved` (for backward) and, if `running` is not NULL, \
            updates the running statistics in its momentum convention. At least two values \
            per channel. `x_len = y_len = n·c·h·w`; `y == x` runs in place. The same bits for \
            any thread count.")]
        ///
        /// # Safety
        /// `x`/`y` valid for `x_len`/`y_len` values; `params`, `saved` point to their
        /// structs and `running` to its struct or is NULL; every non-NULL per-channel array
        /// in them holds `shape.c` values (`running->batches` one).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $train(
            x: *const $t,
            x_len: usize,
            y: *mut $t,
            y_len: usize,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            epilogue: DropnormEpilogue,
            saved: *mut DropnormSavedStatsMut,
            running: *mut DropnormRunningStatsMut,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::train::<$e>(
                    (x.cast(), x_len), (y.cast(), y_len), shape, layout, params, epilogue,
                    saved, running,
                )
            })
        }

        #[doc = concat!("As `dropnorm_batch_norm_train_", $name, "`, fused with a residual \
            add and ReLU: `y = max(bn(x) + r, 0)` in one pass (ResNet's block tail). \
            `r_len = x_len`.")]
        ///
        /// # Safety
        /// As `dropnorm_batch_norm_train_f32`, and `r` valid for reads of `r_len` values.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $add_relu_train(
            x: *const $t,
            x_len: usize,
            r: *const $t,
            r_len: usize,
            y: *mut $t,
            y_len: usize,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            saved: *mut DropnormSavedStatsMut,
            running: *mut DropnormRunningStatsMut,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::add_relu_train::<$e>(
                    (x.cast(), x_len), (r.cast(), r_len), (y.cast(), y_len), shape, layout,
                    params, saved, running,
                )
            })
        }

        #[doc = concat!("Inference-mode batch norm over ", $name, ": `y = γ·(x − mean)/sqrt(var \
            + eps) + β` with the running statistics, then the epilogue; one pass. A negative \
            or NaN running variance is `DROPNORM_ERR_INVALID_RUNNING_VAR`. `y == x` runs in \
            place.")]
        ///
        /// # Safety
        /// `x`/`y` valid for `x_len`/`y_len` values; `params` and `stats` point to their
        /// structs, whose non-NULL arrays hold `shape.c` values.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $infer(
            x: *const $t,
            x_len: usize,
            y: *mut $t,
            y_len: usize,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            epilogue: DropnormEpilogue,
            stats: *const DropnormRunningStats,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::infer::<$e>(
                    (x.cast(), x_len), (y.cast(), y_len), shape, layout, params, epilogue, stats,
                )
            })
        }

        #[doc = concat!("Inference-mode batch norm fused with a residual add and ReLU over ",
            $name, ": `y = max(bn(x) + r, 0)`, one pass (three reads/writes fewer than three \
            kernels). `r_len = y_len = x_len`.")]
        ///
        /// # Safety
        /// As `dropnorm_batch_norm_infer_f32`, and `r` valid for reads of `r_len` values.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $add_relu_infer(
            x: *const $t,
            x_len: usize,
            r: *const $t,
            r_len: usize,
            y: *mut $t,
            y_len: usize,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            stats: *const DropnormRunningStats,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::add_relu_infer::<$e>(
                    (x.cast(), x_len), (r.cast(), r_len), (y.cast(), y_len), shape, layout,
                    params, stats,
                )
            })
        }

        #[doc = concat!("Split-phase training, phase 1, over ", $name, ": the mergeable \
            statistics of each channel of this part of a batch into `out` (`shape.c` \
            structs). Merge parts with `dropnorm_channel_stats_merge` (e.g. after an \
            all-reduce), then normalize with `dropnorm_batch_norm_apply_", $name, "`.")]
        ///
        /// # Safety
        /// `x` valid for reads of `x_len` values, `out` for writes of `shape.c` structs.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $channel_stats(
            x: *const $t,
            x_len: usize,
            out: *mut DropnormChannelStats,
            shape: DropnormShape,
            layout: DropnormLayout,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe { bn::channel_stats::<$e>((x.cast(), x_len), out, shape, layout) })
        }

        #[doc = concat!("Split-phase training, phase 2, over ", $name, ": normalizes `x` with \
            the merged statistics `stats` (`shape.c` structs), writes `saved` and updates \
            `running` (if not NULL), in one pass. On a whole batch the two phases give \
            `dropnorm_batch_norm_train_", $name, "`'s bits. `y == x` runs in place.")]
        ///
        /// # Safety
        /// As `dropnorm_batch_norm_train_f32`, and `stats` valid for reads of `shape.c`
        /// structs.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $apply(
            x: *const $t,
            x_len: usize,
            y: *mut $t,
            y_len: usize,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            epilogue: DropnormEpilogue,
            stats: *const DropnormChannelStats,
            saved: *mut DropnormSavedStatsMut,
            running: *mut DropnormRunningStatsMut,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::apply::<$e>(
                    (x.cast(), x_len), (y.cast(), y_len), shape, layout, params, epilogue,
                    stats, saved, running,
                )
            })
        }

        #[doc = concat!("As `dropnorm_batch_norm_apply_", $name, "`, fused with a residual \
            add and ReLU: `y = max(bn(x) + r, 0)`.")]
        ///
        /// # Safety
        /// As `dropnorm_batch_norm_apply_f32`, and `r` valid for reads of `r_len` values.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $add_relu_apply(
            x: *const $t,
            x_len: usize,
            r: *const $t,
            r_len: usize,
            y: *mut $t,
            y_len: usize,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            stats: *const DropnormChannelStats,
            saved: *mut DropnormSavedStatsMut,
            running: *mut DropnormRunningStatsMut,
        ) -> DropnormStatus {
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::add_relu_apply::<$e>(
                    (x.cast(), x_len), (r.cast(), r_len), (y.cast(), y_len), shape, layout,
                    params, stats, saved, running,
                )
            })
        }

        #[doc = concat!("Training-mode batch-norm backward over ", $name, " (PyTorch's \
            gradient through the batch statistics): `dx`, and `dgamma`/`dbeta` \
            (`shape.c` floats, overwritten). `saved` is what the forward saved. `y` is the \
            forward output when the forward fused a ReLU (the gradient is masked by \
            `y > 0`), else NULL with `y_len = 0`. All data lengths equal `n·c·h·w`.")]
        ///
        /// # Safety
        /// `x`, `dy`, `y` valid for reads and `dx` for writes of their lengths; `dgamma`,
        /// `dbeta` for writes of `shape.c` floats; `params` and `saved` point to their
        /// structs, whose non-NULL arrays hold `shape.c` floats.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $backward(
            x: *const $t,
            x_len: usize,
            dy: *const $t,
            dy_len: usize,
            y: *const $t,
            y_len: usize,
            dx: *mut $t,
            dx_len: usize,
            dgamma: *mut f32,
            dbeta: *mut f32,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            saved: *const DropnormSavedStats,
        ) -> DropnormStatus {
            let i = BackwardIn { x: (x.cast(), x_len), dy: (dy.cast(), dy_len), y: (y.cast(), y_len) };
            let o = BackwardOut { dx: (dx.cast(), dx_len), dgamma, dbeta };
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::backward::<$e>(i, o, shape, layout, params, BackwardStats::Saved(saved))
            })
        }

        #[doc = concat!("Backward of `dropnorm_batch_norm_add_relu_train_", $name, "`: `dx`, \
            `dr` (the residual's gradient, `dy` masked by `y > 0`) and `dgamma`/`dbeta`. \
            `y` (the forward output) is required.")]
        ///
        /// # Safety
        /// As `dropnorm_batch_norm_backward_f32`, and `dr` valid for writes of `dr_len`
        /// values.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $add_relu_backward(
            x: *const $t,
            x_len: usize,
            dy: *const $t,
            dy_len: usize,
            y: *const $t,
            y_len: usize,
            dx: *mut $t,
            dx_len: usize,
            dr: *mut $t,
            dr_len: usize,
            dgamma: *mut f32,
            dbeta: *mut f32,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            saved: *const DropnormSavedStats,
        ) -> DropnormStatus {
            let i = BackwardIn { x: (x.cast(), x_len), dy: (dy.cast(), dy_len), y: (y.cast(), y_len) };
            let o = BackwardOut { dx: (dx.cast(), dx_len), dgamma, dbeta };
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::add_relu_backward::<$e>(
                    i, o, (dr.cast(), dr_len), shape, layout, params, saved,
                )
            })
        }

        #[doc = concat!("Eval-mode batch-norm backward over ", $name, " (PyTorch's gradient \
            in `eval()`: the running statistics are constants): `dx = dy·γ/sqrt(var + eps)` \
            (masked by `y > 0` if `y` is given), `dgamma`, `dbeta`.")]
        ///
        /// # Safety
        /// As `dropnorm_batch_norm_backward_f32`, with `stats` for `saved`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $backward_eval(
            x: *const $t,
            x_len: usize,
            dy: *const $t,
            dy_len: usize,
            y: *const $t,
            y_len: usize,
            dx: *mut $t,
            dx_len: usize,
            dgamma: *mut f32,
            dbeta: *mut f32,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            stats: *const DropnormRunningStats,
        ) -> DropnormStatus {
            let i = BackwardIn { x: (x.cast(), x_len), dy: (dy.cast(), dy_len), y: (y.cast(), y_len) };
            let o = BackwardOut { dx: (dx.cast(), dx_len), dgamma, dbeta };
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::backward::<$e>(i, o, shape, layout, params, BackwardStats::Eval(stats))
            })
        }

        #[doc = concat!("Split-phase backward, phase 1, over ", $name, ": per channel \
            `Σdy` and `Σdy·(x − mean)` of this part into `out` (`shape.c` structs); merge \
            with `dropnorm_grad_sums_merge`, then `dropnorm_batch_norm_backward_apply_",
            $name, "`. `y` as for `dropnorm_batch_norm_backward_", $name, "`.")]
        ///
        /// # Safety
        /// `x`, `dy`, `y` valid for reads of their lengths, `out` for writes of `shape.c`
        /// structs, `saved` points to its struct (arrays of `shape.c` floats).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $backward_sums(
            x: *const $t,
            x_len: usize,
            dy: *const $t,
            dy_len: usize,
            y: *const $t,
            y_len: usize,
            out: *mut DropnormGradSums,
            shape: DropnormShape,
            layout: DropnormLayout,
            saved: *const DropnormSavedStats,
        ) -> DropnormStatus {
            let i = BackwardIn { x: (x.cast(), x_len), dy: (dy.cast(), dy_len), y: (y.cast(), y_len) };
            // SAFETY: this function's contract.
            guard(|| unsafe { bn::backward_sums::<$e>(i, out, shape, layout, saved) })
        }

        #[doc = concat!("Split-phase backward, phase 2, over ", $name, ": `dx`, `dgamma`, \
            `dbeta` from the merged sums `sums` (`shape.c` structs) in one pass; on a whole \
            batch the bits of `dropnorm_batch_norm_backward_", $name, "`.")]
        ///
        /// # Safety
        /// As `dropnorm_batch_norm_backward_f32`, and `sums` valid for reads of `shape.c`
        /// structs.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $backward_apply(
            x: *const $t,
            x_len: usize,
            dy: *const $t,
            dy_len: usize,
            y: *const $t,
            y_len: usize,
            dx: *mut $t,
            dx_len: usize,
            dgamma: *mut f32,
            dbeta: *mut f32,
            shape: DropnormShape,
            layout: DropnormLayout,
            params: *const DropnormBnParams,
            saved: *const DropnormSavedStats,
            sums: *const DropnormGradSums,
        ) -> DropnormStatus {
            let i = BackwardIn { x: (x.cast(), x_len), dy: (dy.cast(), dy_len), y: (y.cast(), y_len) };
            let o = BackwardOut { dx: (dx.cast(), dx_len), dgamma, dbeta };
            // SAFETY: this function's contract.
            guard(|| unsafe {
                bn::backward::<$e>(i, o, shape, layout, params, BackwardStats::Split(saved, sums))
            })
        }
    };
}

typed_exports! {
    f32, f32, "f32";
    dropnorm_dropout_f32, dropnorm_dropout_with_mask_f32, dropnorm_dropout_backward_f32,
    dropnorm_dropout_backward_with_mask_f32, dropnorm_dropout_channels_f32,
    dropnorm_dropout_channels_backward_f32;
    dropnorm_batch_norm_train_f32, dropnorm_batch_norm_add_relu_train_f32,
    dropnorm_batch_norm_infer_f32, dropnorm_batch_norm_add_relu_infer_f32,
    dropnorm_channel_stats_f32, dropnorm_batch_norm_apply_f32,
    dropnorm_batch_norm_add_relu_apply_f32;
    dropnorm_batch_norm_backward_f32, dropnorm_batch_norm_add_relu_backward_f32,
    dropnorm_batch_norm_backward_eval_f32, dropnorm_batch_norm_backward_sums_f32,
    dropnorm_batch_norm_backward_apply_f32
}

typed_exports! {
    DropnormBf16, dropnorm::bf16, "bf16";
    dropnorm_dropout_bf16, dropnorm_dropout_with_mask_bf16, dropnorm_dropout_backward_bf16,
    dropnorm_dropout_backward_with_mask_bf16, dropnorm_dropout_channels_bf16,
    dropnorm_dropout_channels_backward_bf16;
    dropnorm_batch_norm_train_bf16, dropnorm_batch_norm_add_relu_train_bf16,
    dropnorm_batch_norm_infer_bf16, dropnorm_batch_norm_add_relu_infer_bf16,
    dropnorm_channel_stats_bf16, dropnorm_batch_norm_apply_bf16,
    dropnorm_batch_norm_add_relu_apply_bf16;
    dropnorm_batch_norm_backward_bf16, dropnorm_batch_norm_add_relu_backward_bf16,
    dropnorm_batch_norm_backward_eval_bf16, dropnorm_batch_norm_backward_sums_bf16,
    dropnorm_batch_norm_backward_apply_bf16
}

typed_exports! {
    DropnormF16, dropnorm::f16, "f16";
    dropnorm_dropout_f16, dropnorm_dropout_with_mask_f16, dropnorm_dropout_backward_f16,
    dropnorm_dropout_backward_with_mask_f16, dropnorm_dropout_channels_f16,
    dropnorm_dropout_channels_backward_f16;
    dropnorm_batch_norm_train_f16, dropnorm_batch_norm_add_relu_train_f16,
    dropnorm_batch_norm_infer_f16, dropnorm_batch_norm_add_relu_infer_f16,
    dropnorm_channel_stats_f16, dropnorm_batch_norm_apply_f16,
    dropnorm_batch_norm_add_relu_apply_f16;
    dropnorm_batch_norm_backward_f16, dropnorm_batch_norm_add_relu_backward_f16,
    dropnorm_batch_norm_backward_eval_f16, dropnorm_batch_norm_backward_sums_f16,
    dropnorm_batch_norm_backward_apply_f16
}
