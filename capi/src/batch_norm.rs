//! Batch-norm bodies over any element type; the exports are stamped by `exports.rs`.
//!
//! # Safety (of every function here)
//! Each non-NULL pointer is valid for its length (data buffers: the length passed beside them;
//! per-channel arrays: `shape.c` values; `running.batches`: one value), reads for inputs and
//! writes for outputs, and each struct pointer points to its struct, for the whole call.

use dropnorm::{ChannelStats, Element, GradSums};

use crate::args::{Args, same};
use crate::bn_args::{ParamsArg, RunningArg, RunningMutArg, SavedArg, SavedMutArg};
use crate::config::run;
use crate::status::CError;
use crate::types::{
    DropnormBnParams, DropnormChannelStats, DropnormEpilogue, DropnormGradSums, DropnormLayout,
    DropnormRunningStats, DropnormRunningStatsMut, DropnormSavedStats, DropnormSavedStatsMut,
    DropnormShape, channel_stats_ptr, epilogue, grad_sums_ptr, layout,
};

/// A data tensor's pointer and length, as the C caller passed them.
pub(crate) type Src<E> = (*const E, usize);
/// An output tensor's pointer and length.
pub(crate) type Dst<E> = (*mut E, usize);

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn train<E: Element>(
    x: Src<E>,
    y: Dst<E>,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormBnParams,
    epilogue_code: DropnormEpilogue,
    saved: *mut DropnormSavedStatsMut,
    running: *mut DropnormRunningStatsMut,
) -> Result<(), CError> {
    let (lay, epi, c) = (layout(layout_code)?, epilogue(epilogue_code)?, shape.c);
    let mut a = Args::new();
    let inplace = same(x.0, x.1, y.0, y.1);
    // SAFETY: the contract of this module, for every registered pointer.
    let (xin, yout, p, s, r) = unsafe {
        (
            if inplace {
                None
            } else {
                Some(a.input("x", x.0, x.1)?)
            },
            a.output("y", y.0, y.1)?,
            ParamsArg::new(&mut a, params, c)?,
            SavedMutArg::new(&mut a, saved, c)?,
            RunningMutArg::new(&mut a, running, c)?,
        )
    };
    let ok = a.check()?;
    let mut spare = 0;
    let (yv, p, s) = (yout.get(&ok), p.get(&ok), s.get(&ok));
    let r = r.map(|r| r.get(&ok, &mut spare));
    Ok(match xin {
        None => run(y.1, || {
            dropnorm::batch_norm_train_inplace(yv, shape.into(), lay, &p, epi, s, r)
        }),
        Some(xin) => {
            let xv = xin.get(&ok);
            run(x.1, || {
                dropnorm::batch_norm_train(xv, yv, shape.into(), lay, &p, epi, s, r)
            })
        }
    }?)
}

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn add_relu_train<E: Element>(
    x: Src<E>,
    r: Src<E>,
    y: Dst<E>,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormBnParams,
    saved: *mut DropnormSavedStatsMut,
    running: *mut DropnormRunningStatsMut,
) -> Result<(), CError> {
    let (lay, c) = (layout(layout_code)?, shape.c);
    let mut a = Args::new();
    // SAFETY: the contract of this module, for every registered pointer.
    let (xin, rin, yout, p, s, run_stats) = unsafe {
        (
            a.input("x", x.0, x.1)?,
            a.input("r", r.0, r.1)?,
            a.output("y", y.0, y.1)?,
            ParamsArg::new(&mut a, params, c)?,
            SavedMutArg::new(&mut a, saved, c)?,
            RunningMutArg::new(&mut a, running, c)?,
        )
    };
    let ok = a.check()?;
    let mut spare = 0;
    let (xv, rv, yv) = (xin.get(&ok), rin.get(&ok), yout.get(&ok));
    let (p, s) = (p.get(&ok), s.get(&ok));
    let rs = run_stats.map(|r| r.get(&ok, &mut spare));
    Ok(run(x.1, || {
        dropnorm::batch_norm_add_relu_train(xv, rv, yv, shape.into(), lay, &p, s, rs)
    })?)
}

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn infer<E: Element>(
    x: Src<E>,
    y: Dst<E>,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormBnParams,
    epilogue_code: DropnormEpilogue,
    stats: *const DropnormRunningStats,
) -> Result<(), CError> {
    let (lay, epi, c) = (layout(layout_code)?, epilogue(epilogue_code)?, shape.c);
    let mut a = Args::new();
    let inplace = same(x.0, x.1, y.0, y.1);
    // SAFETY: the contract of this module, for every registered pointer.
    let (xin, yout, p, st) = unsafe {
        (
            if inplace {
                None
            } else {
                Some(a.input("x", x.0, x.1)?)
            },
            a.output("y", y.0, y.1)?,
            ParamsArg::new(&mut a, params, c)?,
            RunningArg::new(&mut a, stats, c)?,
        )
    };
    let ok = a.check()?;
    let (yv, p, st) = (yout.get(&ok), p.get(&ok), st.get(&ok));
    Ok(match xin {
        None => run(y.1, || {
            dropnorm::batch_norm_infer_inplace(yv, shape.into(), lay, &p, epi, &st)
        }),
        Some(xin) => {
            let xv = xin.get(&ok);
            run(x.1, || {
                dropnorm::batch_norm_infer(xv, yv, shape.into(), lay, &p, epi, &st)
            })
        }
    }?)
}

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn add_relu_infer<E: Element>(
    x: Src<E>,
    r: Src<E>,
    y: Dst<E>,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormBnParams,
    stats: *const DropnormRunningStats,
) -> Result<(), CError> {
    let (lay, c) = (layout(layout_code)?, shape.c);
    let mut a = Args::new();
    // SAFETY: the contract of this module, for every registered pointer.
    let (xin, rin, yout, p, st) = unsafe {
        (
            a.input("x", x.0, x.1)?,
            a.input("r", r.0, r.1)?,
            a.output("y", y.0, y.1)?,
            ParamsArg::new(&mut a, params, c)?,
            RunningArg::new(&mut a, stats, c)?,
        )
    };
    let ok = a.check()?;
    let (xv, rv, yv) = (xin.get(&ok), rin.get(&ok), yout.get(&ok));
    let (p, st) = (p.get(&ok), st.get(&ok));
    Ok(run(x.1, || {
        dropnorm::batch_norm_add_relu_infer(xv, rv, yv, shape.into(), lay, &p, &st)
    })?)
}

pub(crate) unsafe fn channel_stats<E: Element>(
    x: Src<E>,
    out: *mut DropnormChannelStats,
    shape: DropnormShape,
    layout_code: DropnormLayout,
) -> Result<(), CError> {
    let lay = layout(layout_code)?;
    let mut a = Args::new();
    // SAFETY: the contract of this module, for every registered pointer.
    let (xin, o) = unsafe {
        (
            a.input("x", x.0, x.1)?,
            a.output("out", channel_stats_ptr(out).cast_mut(), shape.c)?,
        )
    };
    let ok = a.check()?;
    let (xv, o): (&[E], &mut [ChannelStats]) = (xin.get(&ok), o.get(&ok));
    Ok(run(x.1, || {
        dropnorm::channel_stats(xv, o, shape.into(), lay)
    })?)
}

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn apply<E: Element>(
    x: Src<E>,
    y: Dst<E>,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormBnParams,
    epilogue_code: DropnormEpilogue,
    stats: *const DropnormChannelStats,
    saved: *mut DropnormSavedStatsMut,
    running: *mut DropnormRunningStatsMut,
) -> Result<(), CError> {
    let (lay, epi, c) = (layout(layout_code)?, epilogue(epilogue_code)?, shape.c);
    let mut a = Args::new();
    let inplace = same(x.0, x.1, y.0, y.1);
    // SAFETY: the contract of this module, for every registered pointer.
    let (xin, yout, p, st, s, r) = unsafe {
        (
            if inplace {
                None
            } else {
                Some(a.input("x", x.0, x.1)?)
            },
            a.output("y", y.0, y.1)?,
            ParamsArg::new(&mut a, params, c)?,
            a.input("stats", channel_stats_ptr(stats), c)?,
            SavedMutArg::new(&mut a, saved, c)?,
            RunningMutArg::new(&mut a, running, c)?,
        )
    };
    let ok = a.check()?;
    let mut spare = 0;
    let (yv, p, st, s) = (yout.get(&ok), p.get(&ok), st.get(&ok), s.get(&ok));
    let r = r.map(|r| r.get(&ok, &mut spare));
    Ok(match xin {
        None => run(y.1, || {
            dropnorm::batch_norm_apply_inplace(yv, shape.into(), lay, &p, epi, st, s, r)
        }),
        Some(xin) => {
            let xv = xin.get(&ok);
            run(x.1, || {
                dropnorm::batch_norm_apply(xv, yv, shape.into(), lay, &p, epi, st, s, r)
            })
        }
    }?)
}

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn add_relu_apply<E: Element>(
    x: Src<E>,
    r: Src<E>,
    y: Dst<E>,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormBnParams,
    stats: *const DropnormChannelStats,
    saved: *mut DropnormSavedStatsMut,
    running: *mut DropnormRunningStatsMut,
) -> Result<(), CError> {
    let (lay, c) = (layout(layout_code)?, shape.c);
    let mut a = Args::new();
    // SAFETY: the contract of this module, for every registered pointer.
    let (xin, rin, yout, p, st, s, run_stats) = unsafe {
        (
            a.input("x", x.0, x.1)?,
            a.input("r", r.0, r.1)?,
            a.output("y", y.0, y.1)?,
            ParamsArg::new(&mut a, params, c)?,
            a.input("stats", channel_stats_ptr(stats), c)?,
            SavedMutArg::new(&mut a, saved, c)?,
            RunningMutArg::new(&mut a, running, c)?,
        )
    };
    let ok = a.check()?;
    let mut spare = 0;
    let (xv, rv, yv) = (xin.get(&ok), rin.get(&ok), yout.get(&ok));
    let (p, st, s) = (p.get(&ok), st.get(&ok), s.get(&ok));
    let rs = run_stats.map(|r| r.get(&ok, &mut spare));
    Ok(run(x.1, || {
        dropnorm::batch_norm_add_relu_apply(xv, rv, yv, shape.into(), lay, &p, st, s, rs)
    })?)
}

/// What every backward reads: `x`, `dy` and the optional forward output `y` (given when the
/// forward fused a ReLU).
pub(crate) struct BackwardIn<E> {
    pub(crate) x: Src<E>,
    pub(crate) dy: Src<E>,
    pub(crate) y: Src<E>,
}

/// What the plain backward writes: `dx`, and `dgamma`/`dbeta` (`shape.c` values each).
pub(crate) struct BackwardOut<E> {
    pub(crate) dx: Dst<E>,
    pub(crate) dgamma: *mut f32,
    pub(crate) dbeta: *mut f32,
}

/// The statistics a backward differentiates through.
pub(crate) enum BackwardStats {
    Saved(*const DropnormSavedStats),
    Eval(*const DropnormRunningStats),
    Split(*const DropnormSavedStats, *const DropnormGradSums),
}

pub(crate) unsafe fn backward<E: Element>(
    i: BackwardIn<E>,
    o: BackwardOut<E>,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormBnParams,
    stats: BackwardStats,
) -> Result<(), CError> {
    let (lay, c) = (layout(layout_code)?, shape.c);
    let mut a = Args::new();
    // SAFETY: the contract of this module, for every registered pointer.
    let (x, dy, y, dx, dg, db, p) = unsafe {
        (
            a.input("x", i.x.0, i.x.1)?,
            a.input("dy", i.dy.0, i.dy.1)?,
            a.optional_input("y", i.y.0, i.y.1)?,
            a.output("dx", o.dx.0, o.dx.1)?,
            a.output("dgamma", o.dgamma, c)?,
            a.output("dbeta", o.dbeta, c)?,
            ParamsArg::new(&mut a, params, c)?,
        )
    };
    enum St {
        Saved(SavedArg),
        Eval(RunningArg),
        Split(SavedArg, crate::args::In<GradSums>),
    }
    // SAFETY: as above.
    let st = unsafe {
        match stats {
            BackwardStats::Saved(s) => St::Saved(SavedArg::new(&mut a, s, c)?),
            BackwardStats::Eval(s) => St::Eval(RunningArg::new(&mut a, s, c)?),
            BackwardStats::Split(s, sums) => St::Split(
                SavedArg::new(&mut a, s, c)?,
                a.input("sums", grad_sums_ptr(sums), c)?,
            ),
        }
    };
    let ok = a.check()?;
    let (x, dy, y) = (x.get(&ok), dy.get(&ok), y.map(|y| y.get(&ok)));
    let grads = dropnorm::BnGrads {
        dx: dx.get(&ok),
        dgamma: dg.get(&ok),
        dbeta: db.get(&ok),
    };
    let (p, sh) = (p.get(&ok), shape.into());
    Ok(match st {
        St::Saved(s) => {
            let s = s.get(&ok);
            run(i.x.1, || {
                dropnorm::batch_norm_backward(x, dy, y, grads, sh, lay, &p, &s)
            })
        }
        St::Eval(s) => {
            let s = s.get(&ok);
            run(i.x.1, || {
                dropnorm::batch_norm_backward_eval(x, dy, y, grads, sh, lay, &p, &s)
            })
        }
        St::Split(s, sums) => {
            let (s, sums) = (s.get(&ok), sums.get(&ok));
            run(i.x.1, || {
                dropnorm::batch_norm_backward_apply(x, dy, y, grads, sh, lay, &p, &s, sums)
            })
        }
    }?)
}

#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn add_relu_backward<E: Element>(
    i: BackwardIn<E>,
    o: BackwardOut<E>,
    dr: Dst<E>,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormBnParams,
    saved: *const DropnormSavedStats,
) -> Result<(), CError> {
    let (lay, c) = (layout(layout_code)?, shape.c);
    let mut a = Args::new();
    // SAFETY: the contract of this module, for every registered pointer.
    let (x, dy, y, dx, drout, dg, db, p, s) = unsafe {
        (
            a.input("x", i.x.0, i.x.1)?,
            a.input("dy", i.dy.0, i.dy.1)?,
            a.input("y", i.y.0, i.y.1)?,
            a.output("dx", o.dx.0, o.dx.1)?,
            a.output("dr", dr.0, dr.1)?,
            a.output("dgamma", o.dgamma, c)?,
            a.output("dbeta", o.dbeta, c)?,
            ParamsArg::new(&mut a, params, c)?,
            SavedArg::new(&mut a, saved, c)?,
        )
    };
    let ok = a.check()?;
    let (x, dy, y) = (x.get(&ok), dy.get(&ok), y.get(&ok));
    let grads = dropnorm::AddReluGrads {
        dx: dx.get(&ok),
        dr: drout.get(&ok),
        dgamma: dg.get(&ok),
        dbeta: db.get(&ok),
    };
    let (p, s) = (p.get(&ok), s.get(&ok));
    Ok(run(i.x.1, || {
        dropnorm::batch_norm_add_relu_backward(x, dy, y, grads, shape.into(), lay, &p, &s)
    })?)
}

pub(crate) unsafe fn backward_sums<E: Element>(
    i: BackwardIn<E>,
    out: *mut DropnormGradSums,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    saved: *const DropnormSavedStats,
) -> Result<(), CError> {
    let (lay, c) = (layout(layout_code)?, shape.c);
    let mut a = Args::new();
    // SAFETY: the contract of this module, for every registered pointer.
    let (x, dy, y, o, s) = unsafe {
        (
            a.input("x", i.x.0, i.x.1)?,
            a.input("dy", i.dy.0, i.dy.1)?,
            a.optional_input("y", i.y.0, i.y.1)?,
            a.output("out", grad_sums_ptr(out).cast_mut(), c)?,
            SavedArg::new(&mut a, saved, c)?,
        )
    };
    let ok = a.check()?;
    let (x, dy, y) = (x.get(&ok), dy.get(&ok), y.map(|y| y.get(&ok)));
    let (o, s) = (o.get(&ok), s.get(&ok));
    Ok(run(i.x.1, || {
        dropnorm::batch_norm_backward_sums(x, dy, y, o, shape.into(), lay, &s)
    })?)
}
