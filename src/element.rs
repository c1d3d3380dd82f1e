//! The element types of activation tensors.

/// An activation element type: `f32`, [`bf16`](crate::bf16) or [`f16`](struct@crate::f16) (the
/// `half` crate's types, re-exported). Sealed: implemented for these three only.
///
/// Taken by every dropout and batch-norm function for its activation tensors (`x`, `y`, the
/// residual, `dy`, `dx`, `dr`), and by the layers ([`BatchNorm`](crate::BatchNorm),
/// [`Dropout`](crate::Dropout)), whose state is f32. Kernels generic over it read 16-bit elements widened to f32 (exactly), compute in f32 and
/// narrow their outputs back (round to nearest, ties to even; NaN stays a quiet NaN; f16
/// overflows to ±inf), with the same bits on every ISA and thread count. Parameters and
/// statistics are f32 whatever the activations' type (PyTorch's mixed precision).
///
/// ```
/// use dropnorm::{DropoutParams, bf16, dropout};
/// let x = vec![bf16::from_f32(1.5); 64];
/// let mut y = vec![bf16::ZERO; 64];
/// dropout(&x, &mut y, &DropoutParams::new(0.5, 7))?;
/// assert!(y.iter().all(|v| v.to_f32() == 0.0 || v.to_f32() == 3.0));
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub trait Element: crate::dispatch::Tables {}

impl Element for f32 {}
impl Element for half::bf16 {}
impl Element for half::f16 {}
