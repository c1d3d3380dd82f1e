//! The one error type of the crate.
//!
//! Every public function validates all of its arguments before it touches an output buffer, so
//! an `Err` always means that nothing was written.

use core::fmt;

use crate::Isa;

/// Why a call was refused. The message names the offending argument.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A dropout probability that is NaN or outside `[0, 1]`.
    InvalidProbability {
        /// The value passed.
        p: f32,
    },
    /// Two buffers that must have the same length do not.
    LengthMismatch {
        /// The argument whose length is wrong.
        arg: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        actual: usize,
    },
    /// An output buffer shorter than what the call must write.
    BufferTooSmall {
        /// The argument that is too short.
        arg: &'static str,
        /// The minimum length.
        needed: usize,
        /// The length it has.
        actual: usize,
    },
    /// Shape dimensions whose product does not fit in `usize`.
    ShapeOverflow {
        /// The dimensions `[n, c, h, w]`.
        dims: [usize; 4],
    },
    /// A shape that the layout cannot hold (e.g. `h != 1` for [`Layout::Nc`](crate::Layout::Nc)).
    InvalidShape {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `offset + len` does not fit in `u64`, so the element indices of the dropout stream would wrap.
    OffsetOverflow {
        /// The offset passed.
        offset: u64,
        /// The number of elements (or planes) of the call.
        len: usize,
    },
    /// An `eps` that is negative, NaN or infinite.
    InvalidEps {
        /// The value passed.
        eps: f32,
    },
    /// A momentum outside `[0, 1]` or NaN (or a cumulative average over 0 batches).
    InvalidMomentum {
        /// The momentum passed (for the cumulative average: `1 / batches`).
        momentum: f32,
    },
    /// Training-mode batch norm with fewer than two values per channel (PyTorch: "expected
    /// more than 1 value per channel when training").
    TooFewValuesPerChannel {
        /// Values per channel (`N·H·W`).
        count: usize,
    },
    /// An optional argument that these parameters require (e.g. the forward output `y` for
    /// the backward of a fused ReLU).
    MissingArgument {
        /// The argument.
        arg: &'static str,
    },
    /// An optional argument given where the settings have no use for it (e.g. the forward
    /// output `y` to the backward of a layer without a fused ReLU).
    UnexpectedArgument {
        /// The argument.
        arg: &'static str,
    },
    /// A combination of options this version does not implement.
    Unsupported {
        /// What.
        what: &'static str,
    },
    /// Merged statistics whose value count does not fit in `u64`.
    CountOverflow,
    /// A running variance that is negative or NaN (a corrupt checkpoint): inference would
    /// write NaN.
    InvalidRunningVar {
        /// The argument holding it.
        arg: &'static str,
        /// The channel.
        channel: usize,
        /// The value.
        var: f32,
    },
    /// Batch statistics given to a split-phase call that no batch can have: fewer than two
    /// values, or a negative sum of squared deviations (statistics corrupted in transit?).
    InvalidStats {
        /// The argument holding them.
        arg: &'static str,
        /// The channel.
        channel: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A layer's training-mode backward called before any training-mode forward, so there
    /// are no saved batch statistics to differentiate through.
    BackwardBeforeForward,
    /// An instruction set that this CPU (or this build target) does not have.
    IsaUnavailable {
        /// The instruction set asked for.
        isa: Isa,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidProbability { p } => {
                write!(f, "invalid dropout probability p = {p}: must be in [0, 1]")
            }
            Error::LengthMismatch {
                arg,
                expected,
                actual,
            } => write!(
                f,
                "length mismatch: `{arg}` has {actual} elements, expected {expected}"
            ),
            Error::BufferTooSmall {
                arg,
                needed,
                actual,
            } => write!(
                f,
                "buffer too small: `{arg}` has {actual} elements, needs at least {needed}"
            ),
            Error::ShapeOverflow { dims } => write!(
                f,
                "shape {dims:?}: the product of the dimensions overflows usize"
            ),
            Error::InvalidShape { reason } => write!(f, "invalid shape: {reason}"),
            Error::OffsetOverflow { offset, len } => write!(
                f,
                "`offset` {offset} + {len} elements overflows the u64 element index"
            ),
            Error::InvalidEps { eps } => {
                write!(f, "invalid `eps` = {eps}: must be finite and >= 0")
            }
            Error::InvalidMomentum { momentum } => {
                write!(f, "invalid `momentum` = {momentum}: must be in [0, 1]")
            }
            Error::TooFewValuesPerChannel { count } => write!(
                f,
                "expected more than 1 value per channel when training, got {count}"
            ),
            Error::MissingArgument { arg } => {
                write!(f, "missing argument `{arg}`: required by these parameters")
            }
            Error::UnexpectedArgument { arg } => {
                write!(
                    f,
                    "unexpected argument `{arg}`: these settings do not use it"
                )
            }
            Error::Unsupported { what } => write!(f, "not supported: {what}"),
            Error::CountOverflow => write!(f, "merged value count overflows u64"),
            Error::InvalidRunningVar { arg, channel, var } => write!(
                f,
                "invalid `{arg}`[{channel}] = {var}: a running variance must be >= 0 (corrupt statistics?)"
            ),
            Error::InvalidStats {
                arg,
                channel,
                reason,
            } => write!(f, "invalid `{arg}`[{channel}]: {reason}"),
            Error::BackwardBeforeForward => write!(
                f,
                "training-mode backward before any training-mode forward: no saved batch statistics"
            ),
            Error::IsaUnavailable { isa } => {
                write!(f, "instruction set {isa} is not available on this CPU")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Checks that `actual == expected` for the argument `arg`.
pub(crate) fn check_len(arg: &'static str, expected: usize, actual: usize) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            arg,
            expected,
            actual,
        })
    }
}

/// Checks that `actual >= needed` for the argument `arg`.
pub(crate) fn check_min_len(arg: &'static str, needed: usize, actual: usize) -> Result<(), Error> {
    if actual >= needed {
        Ok(())
    } else {
        Err(Error::BufferTooSmall {
            arg,
            needed,
            actual,
        })
    }
}
