//! Layers in the style of the d2l text's `BatchNorm` block: state plus forward and backward,
//! built on the kernels.
//!
//! Buffers: a layer owns its parameters (γ, β), running statistics, the batch statistics saved
//! for backward, and the parameter gradients; the caller owns the activations (`x`, `y`,
//! `dy`, `dx`), in any [`Element`] type — `f32`, `bf16` or `f16`, as the free functions take
//! them; parameters, statistics and their gradients are f32. Gradients are **overwritten** by
//! each backward, not accumulated.

use crate::batch_norm::{
    BnGrads, BnParams, Epilogue, Momentum, RunningStats, RunningStatsMut, SavedStats,
    SavedStatsMut, batch_norm_backward, batch_norm_backward_eval, batch_norm_infer,
    batch_norm_train,
};
use crate::{DropoutParams, Element, Error, Layout, Shape, dropout, dropout_backward};

/// A batch-normalization layer over `channels` channels of tensors in `layout`.
///
/// ```
/// use dropnorm::{BatchNorm, Layout, Shape};
/// let mut bn = BatchNorm::new(2, Layout::Nc);
/// let x = [1.0f32, 10.0, 3.0, 30.0];
/// let mut y = [0.0f32; 4];
/// bn.forward(&x, &mut y, Shape::nc(2, 2))?; // training mode
/// assert!((y[0] + 1.0).abs() < 1e-3 && (y[3] - 1.0).abs() < 1e-3);
/// bn.eval();
/// bn.forward(&x, &mut y, Shape::nc(2, 2))?; // running statistics now
/// # Ok::<(), dropnorm::Error>(())
/// ```
///
/// The same layer takes `bf16` or `f16` activations (its state stays f32):
///
/// ```
/// use dropnorm::{BatchNorm, Layout, Shape, bf16};
/// let mut bn = BatchNorm::new(1, Layout::Nc);
/// let x = [bf16::from_f32(1.0), bf16::from_f32(3.0)];
/// let mut y = [bf16::ZERO; 2];
/// bn.forward(&x, &mut y, Shape::nc(2, 1))?;
/// assert_eq!(y, [bf16::from_f32(-1.0), bf16::from_f32(1.0)]);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale γ (initialized to 1).
    pub gamma: Vec<f32>,
    /// Shift β (initialized to 0).
    pub beta: Vec<f32>,
    /// Running mean (initialized to 0).
    pub running_mean: Vec<f32>,
    /// Running variance (initialized to 1).
    pub running_var: Vec<f32>,
    /// Gradient of γ from the last backward.
    pub dgamma: Vec<f32>,
    /// Gradient of β from the last backward.
    pub dbeta: Vec<f32>,
    /// Added to the variance (1e-5 by default).
    pub eps: f32,
    /// How the running statistics follow the batches (PyTorch, momentum 0.1, by default).
    pub momentum: Momentum,
    /// What the forward applies after the normalization (nothing by default); with
    /// [`Epilogue::Relu`], backward needs the forward's output.
    pub epilogue: Epilogue,
    layout: Layout,
    training: bool,
    batches: u64,
    saved_mean: Vec<f32>,
    saved_invstd: Vec<f32>,
    /// Whether a training-mode forward has filled `saved_*`.
    saved_valid: bool,
}

impl BatchNorm {
    /// A layer in training mode with PyTorch's defaults (eps 1e-5, momentum 0.1).
    ///
    /// ```
    /// use dropnorm::{BatchNorm, Epilogue, Layout, Momentum};
    /// let mut bn = BatchNorm::new(64, Layout::Nchw);
    /// bn.momentum = Momentum::Onnx(0.9); // ONNX/MXNet running statistics instead
    /// bn.epilogue = Epilogue::Relu;
    /// assert_eq!((bn.gamma.len(), bn.eps), (64, 1e-5));
    /// ```
    pub fn new(channels: usize, layout: Layout) -> Self {
        BatchNorm {
            gamma: vec![1.0; channels],
            beta: vec![0.0; channels],
            running_mean: vec![0.0; channels],
            running_var: vec![1.0; channels],
            dgamma: vec![0.0; channels],
            dbeta: vec![0.0; channels],
            eps: 1e-5,
            momentum: Momentum::PyTorch(0.1),
            epilogue: Epilogue::None,
            layout,
            training: true,
            batches: 0,
            saved_mean: vec![0.0; channels],
            saved_invstd: vec![0.0; channels],
            saved_valid: false,
        }
    }

    /// Switches to training mode (batch statistics, running statistics updated).
    ///
    /// ```
    /// use dropnorm::{BatchNorm, Layout};
    /// let mut bn = BatchNorm::new(4, Layout::Nc);
    /// bn.eval();
    /// bn.train();
    /// assert!(bn.is_training());
    /// ```
    pub fn train(&mut self) {
        self.training = true;
    }

    /// Switches to eval mode (running statistics).
    ///
    /// ```
    /// use dropnorm::{BatchNorm, Layout};
    /// let mut bn = BatchNorm::new(4, Layout::Nc);
    /// bn.eval();
    /// assert!(!bn.is_training());
    /// ```
    pub fn eval(&mut self) {
        self.training = false;
    }

    /// Whether the layer is in training mode.
    ///
    /// ```
    /// use dropnorm::{BatchNorm, Layout};
    /// assert!(BatchNorm::new(4, Layout::Nc).is_training()); // layers start in training mode
    /// ```
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Batches seen in training mode.
    ///
    /// ```
    /// use dropnorm::{BatchNorm, Layout, Shape};
    /// let mut bn = BatchNorm::new(1, Layout::Nc);
    /// let mut y = [0.0f32; 2];
    /// bn.forward(&[1.0, 2.0], &mut y, Shape::nc(2, 1))?;
    /// bn.forward(&[3.0, 5.0], &mut y, Shape::nc(2, 1))?;
    /// assert_eq!(bn.batches_tracked(), 2);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn batches_tracked(&self) -> u64 {
        self.batches
    }

    fn params(&self) -> BnParams<'_> {
        BnParams::new(self.eps).with_affine(&self.gamma, &self.beta)
    }

    /// `y = bn(x)`: batch statistics (and a running-statistics update) in training mode,
    /// running statistics in eval mode.
    ///
    /// ```
    /// use dropnorm::{BatchNorm, Layout, Shape};
    /// let mut bn = BatchNorm::new(1, Layout::Nc);
    /// let mut y = [0.0f32; 2];
    /// bn.forward(&[1.0, 3.0], &mut y, Shape::nc(2, 1))?; // batch mean 2, var 1 (unbiased 2)
    /// assert!((y[0] + 1.0).abs() < 1e-4 && (y[1] - 1.0).abs() < 1e-4);
    /// assert_eq!(bn.running_mean, [0.2]); // 0.9·0 + 0.1·2
    /// assert!((bn.running_var[0] - 1.1).abs() < 1e-6); // 0.9·1 + 0.1·2
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn forward<E: Element>(&mut self, x: &[E], y: &mut [E], shape: Shape) -> Result<(), Error> {
        if !self.training {
            let stats = RunningStats {
                mean: &self.running_mean,
                var: &self.running_var,
            };
            let params = self.params();
            return batch_norm_infer(x, y, shape, self.layout, &params, self.epilogue, &stats);
        }
        let params = BnParams::new(self.eps).with_affine(&self.gamma, &self.beta);
        let saved = SavedStatsMut {
            mean: &mut self.saved_mean,
            invstd: &mut self.saved_invstd,
        };
        let running = RunningStatsMut {
            mean: &mut self.running_mean,
            var: &mut self.running_var,
            batches: &mut self.batches,
        };
        let running = Some((running, self.momentum));
        batch_norm_train(
            x,
            y,
            shape,
            self.layout,
            &params,
            self.epilogue,
            saved,
            running,
        )?;
        self.saved_valid = true;
        Ok(())
    }

    /// Backward of the last forward: writes `dx` and the layer's `dgamma`/`dbeta`. `x` is that
    /// forward's input, and `y` its output: `Some` exactly when [`BatchNorm::epilogue`] is
    /// [`Epilogue::Relu`] (otherwise an error).
    ///
    /// In training mode this differentiates through the batch statistics of the last
    /// training-mode forward ([`Error::BackwardBeforeForward`] if there was none). In eval
    /// mode it follows PyTorch for a module in `eval()` whose parameters require gradients:
    /// the running statistics are constants, `dγ = Σdy·(x − running_mean)·invstd_running`,
    /// `dβ = Σdy`, `dx = dy·γ·invstd_running` (see [`batch_norm_backward_eval`]). On error
    /// nothing is written, neither `dx` nor the parameter gradients.
    ///
    /// ```
    /// use dropnorm::{BatchNorm, Layout, Shape};
    /// let mut bn = BatchNorm::new(1, Layout::Nc);
    /// let (x, shape) = ([1.0f32, 3.0], Shape::nc(2, 1));
    /// let mut y = [0.0f32; 2];
    /// bn.forward(&x, &mut y, shape)?;
    /// let dy = [1.0f32, 0.0];
    /// let mut dx = [0.0f32; 2];
    /// bn.backward(&x, &dy, None, &mut dx, shape)?; // y: only with Epilogue::Relu
    /// assert_eq!(bn.dbeta, [1.0]); // Σdy
    /// assert!((bn.dgamma[0] + 1.0).abs() < 1e-4); // Σdy·x̂ = 1·(−1)
    /// assert!(dx[0].abs() < 1e-4 && dx[1].abs() < 1e-4);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn backward<E: Element>(
        &mut self,
        x: &[E],
        dy: &[E],
        y: Option<&[E]>,
        dx: &mut [E],
        shape: Shape,
    ) -> Result<(), Error> {
        let params = BnParams::new(self.eps).with_affine(&self.gamma, &self.beta);
        match (self.epilogue, y) {
            (Epilogue::Relu, None) => return Err(Error::MissingArgument { arg: "y" }),
            (Epilogue::None, Some(_)) => return Err(Error::UnexpectedArgument { arg: "y" }),
            _ => {}
        }
        let grads = BnGrads {
            dx,
            dgamma: &mut self.dgamma,
            dbeta: &mut self.dbeta,
        };
        if !self.training {
            let stats = RunningStats {
                mean: &self.running_mean,
                var: &self.running_var,
            };
            return batch_norm_backward_eval(x, dy, y, grads, shape, self.layout, &params, &stats);
        }
        if !self.saved_valid {
            return Err(Error::BackwardBeforeForward);
        }
        let saved = SavedStats {
            mean: &self.saved_mean,
            invstd: &self.saved_invstd,
        };
        batch_norm_backward(x, dy, y, grads, shape, self.layout, &params, &saved)
    }
}

/// A dropout layer: each training-mode forward draws a fresh mask (step `t` uses the stream
/// seeded by [`Dropout::step_seed`]`(seed, t)`), and backward regenerates the mask of the last
/// forward — nothing is stored. Eval mode is the identity.
///
/// ```
/// use dropnorm::Dropout;
/// let mut d = Dropout::new(0.5, 7);
/// let x = vec![1.0f32; 100];
/// let (mut y1, mut y2) = (vec![0.0f32; 100], vec![0.0f32; 100]);
/// d.forward(&x, &mut y1)?;
/// let mut dx = vec![0.0f32; 100];
/// d.backward(&x, &mut dx)?; // the mask of the last forward
/// assert_eq!(dx, y1);
/// d.forward(&x, &mut y2)?; // a fresh mask
/// assert_ne!(y1, y2);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dropout {
    /// Drop probability.
    pub p: f32,
    /// Seed of the layer's stream.
    pub seed: u64,
    training: bool,
    step: u64,
}

impl Dropout {
    /// A layer in training mode.
    ///
    /// ```
    /// use dropnorm::Dropout;
    /// let d = Dropout::new(0.1, 1234);
    /// assert_eq!((d.p, d.seed, d.steps()), (0.1, 1234, 0));
    /// ```
    pub fn new(p: f32, seed: u64) -> Self {
        Dropout {
            p,
            seed,
            training: true,
            step: 0,
        }
    }

    /// Switches to training mode.
    ///
    /// ```
    /// use dropnorm::Dropout;
    /// let mut d = Dropout::new(0.5, 1);
    /// d.eval();
    /// d.train();
    /// let mut y = [0.0f32; 64];
    /// d.forward(&[1.0; 64], &mut y)?;
    /// assert!(y.contains(&0.0));
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn train(&mut self) {
        self.training = true;
    }

    /// Switches to eval mode (identity).
    ///
    /// ```
    /// use dropnorm::Dropout;
    /// let mut d = Dropout::new(0.5, 1);
    /// d.eval();
    /// let mut y = [0.0f32; 3];
    /// d.forward(&[1.0, 2.0, 3.0], &mut y)?;
    /// assert_eq!(y, [1.0, 2.0, 3.0]);
    /// assert_eq!(d.steps(), 0); // eval forwards are not training steps
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn eval(&mut self) {
        self.training = false;
    }

    /// Training forwards done so far.
    ///
    /// ```
    /// use dropnorm::Dropout;
    /// let mut d = Dropout::new(0.5, 1);
    /// let mut y = [0.0f32; 8];
    /// d.forward(&[1.0; 8], &mut y)?;
    /// assert_eq!(d.steps(), 1);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The seed of training step `step`: SplitMix64 of `seed + step·φ`, so steps get unrelated
    /// streams without any limit on their count or size.
    ///
    /// ```
    /// use dropnorm::Dropout;
    /// assert_ne!(Dropout::step_seed(7, 0), Dropout::step_seed(7, 1));
    /// assert_eq!(Dropout::step_seed(7, 3), Dropout::step_seed(7, 3));
    /// ```
    pub fn step_seed(seed: u64, step: u64) -> u64 {
        let mut z = seed.wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The parameters of training step `step`.
    ///
    /// ```
    /// use dropnorm::{Dropout, dropout};
    /// // Replaying step 0 outside the layer gives the layer's first mask.
    /// let mut d = Dropout::new(0.5, 42);
    /// let x = [1.0f32; 32];
    /// let (mut y, mut again) = ([0.0f32; 32], [0.0f32; 32]);
    /// d.forward(&x, &mut y)?;
    /// dropout(&x, &mut again, &d.params(0))?;
    /// assert_eq!(y, again);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn params(&self, step: u64) -> DropoutParams {
        DropoutParams::new(self.p, Self::step_seed(self.seed, step)).with_training(self.training)
    }

    /// `y = dropout(x)` with a fresh mask (training) or `y = x` (eval).
    ///
    /// ```
    /// use dropnorm::Dropout;
    /// let mut d = Dropout::new(0.25, 3);
    /// let mut y = [0.0f32; 1000];
    /// d.forward(&[1.0; 1000], &mut y)?;
    /// assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn forward<E: Element>(&mut self, x: &[E], y: &mut [E]) -> Result<(), Error> {
        dropout(x, y, &self.params(self.step))?;
        if self.training {
            self.step += 1;
        }
        Ok(())
    }

    /// Backward of the last forward: `dx = dy·scale` where it kept the element, `+0.0` where it
    /// dropped it (the identity in eval mode).
    ///
    /// ```
    /// use dropnorm::Dropout;
    /// let mut d = Dropout::new(0.5, 3);
    /// let mut y = [0.0f32; 64];
    /// d.forward(&[1.0; 64], &mut y)?;
    /// let mut dx = [0.0f32; 64];
    /// d.backward(&[1.0; 64], &mut dx)?;
    /// assert_eq!(dx, y); // the same elements dropped, the same scale
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn backward<E: Element>(&self, dy: &[E], dx: &mut [E]) -> Result<(), Error> {
        let step = if self.training {
            self.step.saturating_sub(1)
        } else {
            self.step
        };
        dropout_backward(dy, dx, &self.params(step))
    }
}
