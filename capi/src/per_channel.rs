//! The exports on per-channel arrays only: folding, and merging split-phase statistics.

use dropnorm::{ChannelStats, Error, GradSums};

use crate::args::Args;
use crate::bn_args::{ParamsArg, RunningArg};
use crate::status::{CError, DropnormStatus, guard};
use crate::types::{
    DropnormBnParams, DropnormChannelStats, DropnormGradSums, DropnormRunningStats,
    channel_stats_ptr, grad_sums_ptr,
};

/// Folds inference-mode batch norm into one affine map per channel, `y = a·x + b`
/// (`channels` values each in `a` and `b`), for an engine that applies it itself.
///
/// # Safety
/// `a` and `b` are valid for writes of `channels` floats; `params` and `stats` point to their
/// structs, whose non-NULL arrays hold `channels` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dropnorm_fold(
    a: *mut f32,
    b: *mut f32,
    channels: usize,
    params: *const DropnormBnParams,
    stats: *const DropnormRunningStats,
) -> DropnormStatus {
    guard(|| {
        let mut args = Args::new();
        // SAFETY: this function's contract, for every registered pointer.
        let (ao, bo, p, st) = unsafe {
            (
                args.output("a", a, channels)?,
                args.output("b", b, channels)?,
                ParamsArg::new(&mut args, params, channels)?,
                RunningArg::new(&mut args, stats, channels)?,
            )
        };
        let ok = args.check()?;
        let (p, st) = (p.get(&ok), st.get(&ok));
        Ok(dropnorm::fold(ao.get(&ok), bo.get(&ok), &p, &st)?)
    })
}

/// Folds inference-mode batch norm into the layer before it, at load time: `weights` holds
/// `weights_len = channels·k` values laid out output-channel-major (a convolution's `OIHW`, a
/// linear layer's `[out][in]`), `bias` `channels` values (zeros for a layer without bias);
/// afterwards `W'[o][..] = W[o][..]·a[o]`, `bias'[o] = bias[o]·a[o] + b[o]` and the
/// batch-norm node can be deleted.
///
/// # Safety
/// `weights` is valid for `weights_len` floats and `bias` for `channels` floats (reads and
/// writes); `params` and `stats` as for `dropnorm_fold`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dropnorm_fold_into(
    weights: *mut f32,
    weights_len: usize,
    bias: *mut f32,
    channels: usize,
    params: *const DropnormBnParams,
    stats: *const DropnormRunningStats,
) -> DropnormStatus {
    guard(|| {
        let mut args = Args::new();
        // SAFETY: this function's contract, for every registered pointer.
        let (w, bo, p, st) = unsafe {
            (
                args.output("weights", weights, weights_len)?,
                args.output("bias", bias, channels)?,
                ParamsArg::new(&mut args, params, channels)?,
                RunningArg::new(&mut args, stats, channels)?,
            )
        };
        let ok = args.check()?;
        let (p, st) = (p.get(&ok), st.get(&ok));
        Ok(dropnorm::fold_into(w.get(&ok), bo.get(&ok), &p, &st)?)
    })
}

trait Merge: Copy {
    fn merge(&self, other: &Self) -> Result<Self, Error>;
}

impl Merge for ChannelStats {
    fn merge(&self, other: &Self) -> Result<Self, Error> {
        ChannelStats::merge(self, other)
    }
}

impl Merge for GradSums {
    fn merge(&self, other: &Self) -> Result<Self, Error> {
        GradSums::merge(self, other)
    }
}

/// `out[i] = merge(a[i], b[i])` for `channels` values; `out` may be `a` or `b` itself (an
/// accumulator), other overlaps are refused. Every merge is checked before the first write.
///
/// # Safety
/// `a`, `b` valid for reads and `out` for writes of `channels` values.
unsafe fn merge_all<T: Merge>(
    a: *const T,
    b: *const T,
    out: *mut T,
    channels: usize,
) -> Result<(), CError> {
    let mut args = Args::new();
    // SAFETY: this function's contract. An input that is `out` itself is not registered (it
    // would be an overlap): it is read through `out`'s checked region, element by element,
    // each read before the write of the same element.
    let o = unsafe {
        if a != out.cast_const() {
            args.input("a", a, channels)?;
        }
        if b != out.cast_const() {
            args.input("b", b, channels)?;
        }
        args.output("out", out, channels)?
    };
    args.check()?;
    let _ = o;
    // Every merge first (a count overflow writes nothing), then again to write.
    for i in 0..channels {
        // SAFETY: `i < channels`, within both arrays (checked non-NULL, aligned, sized).
        let (ai, bi) = unsafe { (a.add(i).read(), b.add(i).read()) };
        ai.merge(&bi)?;
    }
    for i in 0..channels {
        // SAFETY: as above; `out` overlaps `a` or `b` only exactly, and element `i` is read
        // here before it is written below, so no read sees a value this call wrote.
        let (ai, bi) = unsafe { (a.add(i).read(), b.add(i).read()) };
        let m = ai.merge(&bi)?;
        // SAFETY: `i < channels`, within `out` (checked).
        unsafe { out.add(i).write(m) };
    }
    Ok(())
}

/// Merges two parts' statistics of `channels` channels, channel by channel, into `out`
/// (which may be `a` or `b`: accumulate with `merge(acc, part, acc)`). Merge in a fixed
/// order (e.g. by device rank) for the same bits on every run.
/// `DROPNORM_ERR_COUNT_OVERFLOW` if a count overflows; nothing is written then.
///
/// # Safety
/// `a` and `b` are valid for reads and `out` for writes of `channels` structs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dropnorm_channel_stats_merge(
    a: *const DropnormChannelStats,
    b: *const DropnormChannelStats,
    out: *mut DropnormChannelStats,
    channels: usize,
) -> DropnormStatus {
    // SAFETY: this function's contract; the struct layouts are the crate's (types.rs).
    guard(|| unsafe {
        merge_all(
            channel_stats_ptr(a),
            channel_stats_ptr(b),
            channel_stats_ptr(out).cast_mut(),
            channels,
        )
    })
}

/// As `dropnorm_channel_stats_merge`, for the backward sums of split-phase backward.
///
/// # Safety
/// `a` and `b` are valid for reads and `out` for writes of `channels` structs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dropnorm_grad_sums_merge(
    a: *const DropnormGradSums,
    b: *const DropnormGradSums,
    out: *mut DropnormGradSums,
    channels: usize,
) -> DropnormStatus {
    // SAFETY: this function's contract; the struct layouts are the crate's (types.rs).
    guard(|| unsafe {
        merge_all(
            grad_sums_ptr(a),
            grad_sums_ptr(b),
            grad_sums_ptr(out).cast_mut(),
            channels,
        )
    })
}
