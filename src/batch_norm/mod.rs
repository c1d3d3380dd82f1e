//! Batch normalization over the channels of NC, NCHW and NHWC tensors.
//!
//! Semantics and numerics are documented in the crate docs (`src/lib.rs`).

mod apply;
mod backward;
mod backward_split;
mod consts;
mod infer;
mod moments;
mod rows;
mod scratch;
mod stats;
mod train;

pub use apply::{batch_norm_add_relu_apply, batch_norm_apply, batch_norm_apply_inplace};
pub use backward::{
    AddReluGrads, BnGrads, SavedStats, batch_norm_add_relu_backward, batch_norm_backward,
    batch_norm_backward_eval,
};
pub use backward_split::{GradSums, batch_norm_backward_apply, batch_norm_backward_sums};
pub use infer::{
    RunningStats, batch_norm_add_relu_infer, batch_norm_infer, batch_norm_infer_inplace, fold,
    fold_into,
};
pub use stats::{ChannelStats, channel_stats};

pub use train::{batch_norm_add_relu_train, batch_norm_train, batch_norm_train_inplace};

/// Parameters of a batch-norm call: `eps` and the optional affine parameters. (A fused ReLU
/// is an [`Epilogue`], taken only by the functions that apply one.)
///
/// ```
/// use dropnorm::BnParams;
/// let gamma = [1.0f32, 2.0];
/// let beta = [0.0f32, 0.5];
/// let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
/// assert_eq!(params.eps, 1e-5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnParams<'a> {
    /// Added to the variance before the square root; finite and `>= 0`.
    pub eps: f32,
    /// Per-channel scale γ (`None`: 1, i.e. `affine = false`).
    pub gamma: Option<&'a [f32]>,
    /// Per-channel shift β (`None`: 0).
    pub beta: Option<&'a [f32]>,
}

/// What a forward applies to the normalized values in the same pass. Taken by the training
/// forward and inference (one call and in place); the add+ReLU functions always apply theirs,
/// and a backward learns of a fused ReLU from the forward output it is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Epilogue {
    /// `y = bn(x)`.
    #[default]
    None,
    /// `y = max(bn(x), 0)` (a NaN stays NaN).
    Relu,
}

impl Epilogue {
    pub(crate) fn relu(self) -> bool {
        self == Epilogue::Relu
    }
}

impl Default for BnParams<'_> {
    /// PyTorch's defaults: eps 1e-5; no affine parameters.
    ///
    /// ```
    /// use dropnorm::BnParams;
    /// assert_eq!(BnParams::default(), BnParams::new(1e-5));
    /// ```
    fn default() -> Self {
        BnParams::new(1e-5)
    }
}

impl<'a> BnParams<'a> {
    /// No affine parameters.
    ///
    /// ```
    /// use dropnorm::BnParams;
    /// let p = BnParams::new(1e-5);
    /// assert!(p.gamma.is_none() && p.beta.is_none());
    /// ```
    pub fn new(eps: f32) -> Self {
        BnParams {
            eps,
            gamma: None,
            beta: None,
        }
    }

    /// With γ and β (one value per channel each).
    ///
    /// ```
    /// use dropnorm::BnParams;
    /// let (gamma, beta) = ([2.0f32], [1.0f32]);
    /// assert_eq!(BnParams::new(0.0).with_affine(&gamma, &beta).gamma, Some(&gamma[..]));
    /// ```
    pub fn with_affine(self, gamma: &'a [f32], beta: &'a [f32]) -> Self {
        BnParams {
            gamma: Some(gamma),
            beta: Some(beta),
            ..self
        }
    }
}

/// How running statistics follow the batch statistics — one enum for the functions and the
/// [`BatchNorm`](crate::BatchNorm) layer. The conventions differ in which term the momentum
/// weights and in the variance they keep; normalization always uses the biased batch variance.
/// A training call takes it beside the buffers it updates ([`RunningStatsMut`]), never inside
/// them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Momentum {
    /// PyTorch `BatchNorm(momentum = m)` (default 0.1):
    /// `running = (1 − m)·running + m·batch`, running variance **unbiased** (`Σ(x − mean)²/(n − 1)`).
    PyTorch(f32),
    /// PyTorch `momentum = None`: cumulative moving average, `m = 1/batches` where `batches` is
    /// [`RunningStatsMut::batches`] after this call's increment (PyTorch's
    /// `num_batches_tracked`); otherwise as [`Momentum::PyTorch`].
    PyTorchCumulative,
    /// ONNX `BatchNormalization` / MXNet / the d2l text (default 0.9):
    /// `running = m·running + (1 − m)·batch`, running variance **biased**.
    Onnx(f32),
}

impl Default for Momentum {
    /// PyTorch's default, `momentum = 0.1`.
    ///
    /// ```
    /// assert_eq!(dropnorm::Momentum::default(), dropnorm::Momentum::PyTorch(0.1));
    /// ```
    fn default() -> Self {
        Momentum::PyTorch(0.1)
    }
}

impl Momentum {
    /// `(weight of the running value, weight of the batch value, unbiased variance?)` for the
    /// update that makes `batches` batches seen (this one included).
    pub(crate) fn weights(&self, batches: u64) -> Result<(f64, f64, bool), crate::Error> {
        let (m, onnx) = match *self {
            Momentum::PyTorch(m) => (m as f64, false),
            Momentum::PyTorchCumulative => (1.0 / batches as f64, false),
            Momentum::Onnx(m) => (m as f64, true),
        };
        if !(0.0..=1.0).contains(&m) {
            return Err(crate::Error::InvalidMomentum { momentum: m as f32 });
        }
        Ok(if onnx {
            (m, 1.0 - m, false)
        } else {
            (1.0 - m, m, true)
        })
    }
}

/// The running statistics a training-mode call updates: PyTorch's three buffers.
#[derive(Debug)]
pub struct RunningStatsMut<'a> {
    /// Running mean, one per channel.
    pub mean: &'a mut [f32],
    /// Running variance, one per channel.
    pub var: &'a mut [f32],
    /// Batches seen (PyTorch's `num_batches_tracked`): every successful update adds one
    /// (saturating), and [`Momentum::PyTorchCumulative`] weights by it.
    pub batches: &'a mut u64,
}

/// Where a training-mode call saves the batch statistics that backward needs.
#[derive(Debug)]
pub struct SavedStatsMut<'a> {
    /// Batch mean, one per channel.
    pub mean: &'a mut [f32],
    /// Batch `1/sqrt(var + eps)` (biased variance), one per channel.
    pub invstd: &'a mut [f32],
}

pub(crate) use crate::kernels::bn::inv_std;

pub(crate) fn check_eps(eps: f32) -> Result<(), crate::Error> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(crate::Error::InvalidEps { eps })
    }
}
