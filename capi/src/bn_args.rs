//! The per-channel argument groups of the batch-norm exports (parameters, running and saved
//! statistics), registered with [`Args`] like any buffer and turned into the Rust crate's
//! structs once every overlap check passed.

use dropnorm::{BnParams, Momentum, RunningStats, RunningStatsMut, SavedStats, SavedStatsMut};

use crate::args::{Args, Checked, In, Out, read, read_optional};
use crate::status::CError;
use crate::types::{
    DROPNORM_MOMENTUM_PYTORCH_CUMULATIVE, DropnormBnParams, DropnormRunningStats,
    DropnormRunningStatsMut, DropnormSavedStats, DropnormSavedStatsMut, momentum,
};

pub(crate) struct ParamsArg {
    eps: f32,
    gamma: Option<In<f32>>,
    beta: Option<In<f32>>,
}

impl ParamsArg {
    /// # Safety
    /// `p` points to a `DropnormBnParams` whose non-NULL arrays hold `c` values.
    pub(crate) unsafe fn new(
        a: &mut Args,
        p: *const DropnormBnParams,
        c: usize,
    ) -> Result<Self, CError> {
        // SAFETY: this function's contract.
        unsafe {
            let p = read("params", p)?;
            Ok(ParamsArg {
                eps: p.eps,
                gamma: a.maybe_input("params.gamma", p.gamma, c)?,
                beta: a.maybe_input("params.beta", p.beta, c)?,
            })
        }
    }

    pub(crate) fn get<'a>(self, ok: &Checked) -> BnParams<'a> {
        BnParams {
            eps: self.eps,
            gamma: self.gamma.map(|g| g.get(ok)),
            beta: self.beta.map(|b| b.get(ok)),
        }
    }
}

pub(crate) struct RunningArg {
    mean: In<f32>,
    var: In<f32>,
}

impl RunningArg {
    /// # Safety
    /// `p` points to a `DropnormRunningStats` whose arrays hold `c` values.
    pub(crate) unsafe fn new(
        a: &mut Args,
        p: *const DropnormRunningStats,
        c: usize,
    ) -> Result<Self, CError> {
        // SAFETY: this function's contract.
        unsafe {
            let p = read("stats", p)?;
            Ok(RunningArg {
                mean: a.input("stats.mean", p.mean, c)?,
                var: a.input("stats.var", p.var, c)?,
            })
        }
    }

    pub(crate) fn get<'a>(self, ok: &Checked) -> RunningStats<'a> {
        RunningStats {
            mean: self.mean.get(ok),
            var: self.var.get(ok),
        }
    }
}

pub(crate) struct SavedArg {
    mean: In<f32>,
    invstd: In<f32>,
}

impl SavedArg {
    /// # Safety
    /// `p` points to a `DropnormSavedStats` whose arrays hold `c` values.
    pub(crate) unsafe fn new(
        a: &mut Args,
        p: *const DropnormSavedStats,
        c: usize,
    ) -> Result<Self, CError> {
        // SAFETY: this function's contract.
        unsafe {
            let p = read("saved", p)?;
            Ok(SavedArg {
                mean: a.input("saved.mean", p.mean, c)?,
                invstd: a.input("saved.invstd", p.invstd, c)?,
            })
        }
    }

    pub(crate) fn get<'a>(self, ok: &Checked) -> SavedStats<'a> {
        SavedStats {
            mean: self.mean.get(ok),
            invstd: self.invstd.get(ok),
        }
    }
}

pub(crate) struct SavedMutArg {
    mean: Out<f32>,
    invstd: Out<f32>,
}

impl SavedMutArg {
    /// # Safety
    /// `p` points to a `DropnormSavedStatsMut` whose arrays hold `c` values.
    pub(crate) unsafe fn new(
        a: &mut Args,
        p: *const DropnormSavedStatsMut,
        c: usize,
    ) -> Result<Self, CError> {
        // SAFETY: this function's contract.
        unsafe {
            let p = read("saved", p)?;
            Ok(SavedMutArg {
                mean: a.output("saved.mean", p.mean, c)?,
                invstd: a.output("saved.invstd", p.invstd, c)?,
            })
        }
    }

    pub(crate) fn get<'a>(self, ok: &Checked) -> SavedStatsMut<'a> {
        SavedStatsMut {
            mean: self.mean.get(ok),
            invstd: self.invstd.get(ok),
        }
    }
}

/// The optional running-statistics update of a training call.
pub(crate) struct RunningMutArg {
    mean: Out<f32>,
    var: Out<f32>,
    batches: Option<Out<u64>>,
    momentum: Momentum,
}

impl RunningMutArg {
    /// NULL `p`: no update.
    ///
    /// # Safety
    /// A non-NULL `p` points to a `DropnormRunningStatsMut` whose arrays hold `c` values.
    pub(crate) unsafe fn new(
        a: &mut Args,
        p: *const DropnormRunningStatsMut,
        c: usize,
    ) -> Result<Option<Self>, CError> {
        // SAFETY: this function's contract.
        let Some(p) = (unsafe { read_optional("running", p)? }) else {
            return Ok(None);
        };
        let momentum = momentum(p.momentum_kind, p.momentum)?;
        if p.batches.is_null() && p.momentum_kind == DROPNORM_MOMENTUM_PYTORCH_CUMULATIVE {
            return Err(CError::Null("running.batches"));
        }
        // SAFETY: this function's contract.
        unsafe {
            Ok(Some(RunningMutArg {
                mean: a.output("running.mean", p.mean, c)?,
                var: a.output("running.var", p.var, c)?,
                batches: if p.batches.is_null() {
                    None
                } else {
                    Some(a.output("running.batches", p.batches, 1)?)
                },
                momentum,
            }))
        }
    }

    /// `spare` counts the batches when the caller keeps no count.
    pub(crate) fn get<'a>(
        self,
        ok: &Checked,
        spare: &'a mut u64,
    ) -> (RunningStatsMut<'a>, Momentum) {
        let batches = match self.batches {
            Some(b) => b.get_one(ok),
            None => spare,
        };
        (
            RunningStatsMut {
                mean: self.mean.get(ok),
                var: self.var.get(ok),
                batches,
            },
            self.momentum,
        )
    }
}
