//! The plain C structs and codes of the ABI, and their conversion to the Rust crate's types.
//!
//! Every struct holds only numbers and raw pointers (no `bool`, no Rust enum), so any bits a C
//! caller puts in one are a valid value; codes are plain integers checked on entry. A
//! zero-initialized struct is a meaningful value where one exists (dropout in training mode,
//! the PyTorch momentum convention).

use dropnorm::{ChannelStats, Epilogue, GradSums, Layout, Momentum, Shape};

use crate::status::CError;

/// How a tensor is laid out: one of the `DROPNORM_LAYOUT_*` codes.
pub type DropnormLayout = u32;
/// Fully connected: `n` rows of `c` features (`h = w = 1`).
pub const DROPNORM_LAYOUT_NC: DropnormLayout = 0;
/// Channels first: `n` images of `c` planes of `h×w`.
pub const DROPNORM_LAYOUT_NCHW: DropnormLayout = 1;
/// Channels last: `n·h·w` rows of `c` channels.
pub const DROPNORM_LAYOUT_NHWC: DropnormLayout = 2;

/// What a forward applies to the normalized values: one of the `DROPNORM_EPILOGUE_*` codes.
pub type DropnormEpilogue = u32;
/// `y = bn(x)`.
pub const DROPNORM_EPILOGUE_NONE: DropnormEpilogue = 0;
/// `y = max(bn(x), 0)` (a NaN stays NaN).
pub const DROPNORM_EPILOGUE_RELU: DropnormEpilogue = 1;

/// How running statistics follow the batch: one of the `DROPNORM_MOMENTUM_*` codes.
pub type DropnormMomentum = u32;
/// PyTorch `BatchNorm(momentum = m)` (default 0.1): `running = (1 − m)·running + m·batch`,
/// running variance unbiased.
pub const DROPNORM_MOMENTUM_PYTORCH: DropnormMomentum = 0;
/// PyTorch `momentum = None`: cumulative average, `m = 1/batches` after the increment
/// (`batches` required); otherwise as `DROPNORM_MOMENTUM_PYTORCH`.
pub const DROPNORM_MOMENTUM_PYTORCH_CUMULATIVE: DropnormMomentum = 1;
/// ONNX `BatchNormalization` / MXNet (default 0.9): `running = m·running + (1 − m)·batch`,
/// running variance biased.
pub const DROPNORM_MOMENTUM_ONNX: DropnormMomentum = 2;

/// The logical dimensions of a tensor (use `h = w = 1` for `DROPNORM_LAYOUT_NC`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropnormShape {
    /// Batch size.
    pub n: usize,
    /// Channels (features for NC).
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// Parameters of a dropout call. Zero-initialized plus `p` and `seed` is training-mode
/// dropout of the first elements of the seed's stream.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropnormDropoutParams {
    /// Probability of dropping an element, in `[0, 1]`.
    pub p: f32,
    /// Nonzero: eval mode, the output is a copy of the input (PyTorch's `model.eval()`).
    pub eval: u32,
    /// Seed of the mask stream: the same seed, offset and `p` give the same mask.
    pub seed: u64,
    /// Index in the stream of the call's first element (or plane), so a tensor can be
    /// processed in pieces with the mask of one call.
    pub offset: u64,
}

/// `eps` and the optional affine parameters of a batch-norm call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropnormBnParams {
    /// Added to the variance before the square root; finite and `>= 0` (PyTorch: 1e-5).
    pub eps: f32,
    /// Per-channel scale γ, `c` values, or NULL for 1 (`affine = false`).
    pub gamma: *const f32,
    /// Per-channel shift β, `c` values, or NULL for 0.
    pub beta: *const f32,
}

/// Running statistics read by inference, eval-mode backward and folding (`c` values each).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropnormRunningStats {
    /// Running mean.
    pub mean: *const f32,
    /// Running variance (`>= 0`).
    pub var: *const f32,
}

/// Running statistics a training call updates, with the convention it updates them in.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropnormRunningStatsMut {
    /// Running mean, `c` values.
    pub mean: *mut f32,
    /// Running variance, `c` values.
    pub var: *mut f32,
    /// Batches seen (PyTorch's `num_batches_tracked`), incremented (saturating) by each
    /// update; may be NULL except with `DROPNORM_MOMENTUM_PYTORCH_CUMULATIVE`.
    pub batches: *mut u64,
    /// One of the `DROPNORM_MOMENTUM_*` codes.
    pub momentum_kind: DropnormMomentum,
    /// The momentum (ignored by `DROPNORM_MOMENTUM_PYTORCH_CUMULATIVE`).
    pub momentum: f32,
}

/// Where a training call saves the batch statistics backward needs (`c` values each).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropnormSavedStatsMut {
    /// Batch mean.
    pub mean: *mut f32,
    /// Batch `1/sqrt(var + eps)` (biased variance).
    pub invstd: *mut f32,
}

/// The saved batch statistics a training-mode backward reads (`c` values each).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropnormSavedStats {
    /// Batch mean.
    pub mean: *const f32,
    /// Batch `1/sqrt(var + eps)`.
    pub invstd: *const f32,
}

/// Mergeable statistics of one channel over part of a batch (split-phase training).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DropnormChannelStats {
    /// Number of values.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// `Σ(x − mean)²`.
    pub m2: f64,
}

/// Mergeable backward sums of one channel over part of a batch (split-phase backward).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DropnormGradSums {
    /// Number of values summed.
    pub count: u64,
    /// `Σdy` (masked by `y > 0` with a fused ReLU).
    pub dy: f64,
    /// `Σdy·(x − mean)` around the saved batch mean.
    pub dy_xmu: f64,
}

// The C structs are passed to the Rust crate in place: same size, alignment and field offsets
// as the crate's `#[repr(C)]` structs, or this does not compile.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<DropnormChannelStats>() == size_of::<ChannelStats>());
    assert!(align_of::<DropnormChannelStats>() == align_of::<ChannelStats>());
    assert!(offset_of!(DropnormChannelStats, count) == offset_of!(ChannelStats, count));
    assert!(offset_of!(DropnormChannelStats, mean) == offset_of!(ChannelStats, mean));
    assert!(offset_of!(DropnormChannelStats, m2) == offset_of!(ChannelStats, m2));
    assert!(size_of::<DropnormGradSums>() == size_of::<GradSums>());
    assert!(align_of::<DropnormGradSums>() == align_of::<GradSums>());
    assert!(offset_of!(DropnormGradSums, count) == offset_of!(GradSums, count));
    assert!(offset_of!(DropnormGradSums, dy) == offset_of!(GradSums, dy));
    assert!(offset_of!(DropnormGradSums, dy_xmu) == offset_of!(GradSums, dy_xmu));
};

impl From<DropnormShape> for Shape {
    fn from(s: DropnormShape) -> Shape {
        Shape::nchw(s.n, s.c, s.h, s.w)
    }
}

pub(crate) fn layout(code: DropnormLayout) -> Result<Layout, CError> {
    match code {
        DROPNORM_LAYOUT_NC => Ok(Layout::Nc),
        DROPNORM_LAYOUT_NCHW => Ok(Layout::Nchw),
        DROPNORM_LAYOUT_NHWC => Ok(Layout::Nhwc),
        value => Err(CError::InvalidEnum {
            arg: "layout",
            value,
        }),
    }
}

pub(crate) fn epilogue(code: DropnormEpilogue) -> Result<Epilogue, CError> {
    match code {
        DROPNORM_EPILOGUE_NONE => Ok(Epilogue::None),
        DROPNORM_EPILOGUE_RELU => Ok(Epilogue::Relu),
        value => Err(CError::InvalidEnum {
            arg: "epilogue",
            value,
        }),
    }
}

pub(crate) fn momentum(kind: DropnormMomentum, m: f32) -> Result<Momentum, CError> {
    match kind {
        DROPNORM_MOMENTUM_PYTORCH => Ok(Momentum::PyTorch(m)),
        DROPNORM_MOMENTUM_PYTORCH_CUMULATIVE => Ok(Momentum::PyTorchCumulative),
        DROPNORM_MOMENTUM_ONNX => Ok(Momentum::Onnx(m)),
        value => Err(CError::InvalidEnum {
            arg: "running.momentum_kind",
            value,
        }),
    }
}

impl DropnormDropoutParams {
    pub(crate) fn to_rust(self) -> dropnorm::DropoutParams {
        dropnorm::DropoutParams::new(self.p, self.seed)
            .with_offset(self.offset)
            .with_training(self.eval == 0)
    }
}

/// The pointer of a per-channel stats array, as the Rust crate's type (same layout, above).
pub(crate) fn channel_stats_ptr(p: *const DropnormChannelStats) -> *const ChannelStats {
    p.cast()
}

/// As [`channel_stats_ptr`], for backward sums.
pub(crate) fn grad_sums_ptr(p: *const DropnormGradSums) -> *const GradSums {
    p.cast()
}
