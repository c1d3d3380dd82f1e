//! Property tests over the 16-bit element types (bf16, f16), shapes, layouts and values, on
//! every ISA:
//! - the training forward is within `3e-5·max(1, |γ|) + 1e-6·|β| + rel·|y|` of the f64
//!   reference on the widened inputs, `rel` the type's half ulp (2^-8 for bf16, 2^-11 for
//!   f16; plus f16's smallest subnormal): the f32 kernel's bound, then one rounding;
//! - dropout keeps exactly the reference's elements, each `narrow(widen(x)·scale)`;
//! - inference and backward (plain and through the fused ReLU) write the f32 kernel's
//!   results on the widened inputs, narrowed, bit for bit, and the same `dγ`, `dβ`.

mod common;

use common::*;
use dropnorm::*;
use proptest::prelude::*;

fn shape_and_layout() -> impl Strategy<Value = (Shape, Layout)> {
    prop_oneof![
        (2usize..120, 1usize..70).prop_map(|(n, c)| (Shape::nc(n, c), Layout::Nc)),
        (1usize..4, 1usize..20, 1usize..8, 1usize..19, any::<bool>()).prop_map(
            |(n, c, h, w, nhwc)| {
                let n = if n * h * w < 2 { 2 } else { n };
                (
                    Shape::nchw(n, c, h, w),
                    if nhwc { Layout::Nhwc } else { Layout::Nchw },
                )
            }
        ),
    ]
}

fn narrow<E: Half>(v: &[f32]) -> Vec<E> {
    v.iter().map(|f| E::of(*f)).collect()
}

fn widen<E: Half>(v: &[E]) -> Vec<f32> {
    v.iter().map(|e| e.wide()).collect()
}

/// Inputs of one case in `E` and widened.
fn inputs<E: Half>(n: usize, salt: u64, offset: f64, scale: f64) -> (Vec<E>, Vec<f32>) {
    let xe: Vec<E> = normals(n, salt)
        .iter()
        .map(|v| E::of((offset + scale * v) as f32))
        .collect();
    let xw = widen(&xe);
    (xe, xw)
}

fn train_within_bound<E: Half>(
    (shape, layout): (Shape, Layout),
    offset: f64,
    scale: f64,
    relu: bool,
    salt: u64,
) -> Result<(), TestCaseError> {
    let n = shape.numel().unwrap();
    let c = shape.c;
    let (xe, xw) = inputs::<E>(n, salt, offset, scale);
    let gamma: Vec<f32> = (0..c)
        .map(|i| ((salt >> (i % 60)) & 7) as f32 * 0.5 - 1.5)
        .collect();
    let beta: Vec<f32> = (0..c).map(|i| i as f32 * 0.3 - 2.0).collect();
    let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
    let (want, _) =
        reference::batch_norm_train(&xw, shape, layout, 1e-5, Some(&gamma), Some(&beta), relu);
    for isa in Isa::available() {
        let mut y = vec![E::of(0.0); n];
        let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
        let saved = SavedStatsMut {
            mean: &mut m,
            invstd: &mut s,
        };
        with_isa(isa, || {
            batch_norm_train(
                &xe,
                &mut y,
                shape,
                layout,
                &params,
                epilogue(relu),
                saved,
                None,
            )
        })
        .unwrap()
        .unwrap();
        for ch in 0..c {
            let g = (gamma[ch].abs() as f64).max(1.0);
            let b = beta[ch].abs() as f64;
            for j in 0..n / c {
                let i = reference::channel_index(shape, layout, ch, j);
                let tol = 3e-5 * g + 1e-6 * b + E::HALF_ULP * want[i].abs() + E::TINY;
                let got = y[i].wide() as f64;
                prop_assert!(
                    (got - want[i]).abs() <= tol,
                    "{} {} {:?} {:?}: y[{}] = {}, want {}",
                    E::NAME,
                    isa,
                    layout,
                    shape,
                    i,
                    got,
                    want[i]
                );
            }
        }
    }
    Ok(())
}

fn dropout_keeps_reference<E: Half>(
    n: usize,
    p: f32,
    seed: u64,
    offset: u64,
) -> Result<(), TestCaseError> {
    let (xe, xw) = inputs::<E>(n, seed, 0.0, 3.0);
    let params = DropoutParams::new(p, seed).with_offset(offset);
    let keep = reference::keep_decisions(seed, p, offset, n);
    let scale = params.scale();
    for isa in Isa::available() {
        let mut y = vec![E::of(-9.0); n];
        with_isa(isa, || dropout(&xe, &mut y, &params))
            .unwrap()
            .unwrap();
        for i in 0..n {
            let want = if keep[i] {
                E::of(xw[i] * scale)
            } else {
                E::of(0.0)
            };
            prop_assert_eq!(y[i], want, "{} {} p {}: [{}]", E::NAME, isa, p, i);
        }
    }
    Ok(())
}

fn infer_and_backward_are_the_f32_kernels<E: Half>(
    (shape, layout): (Shape, Layout),
    offset: f64,
    relu: bool,
    salt: u64,
) -> Result<(), TestCaseError> {
    let n = shape.numel().unwrap();
    let c = shape.c;
    let (xe, xw) = inputs::<E>(n, salt, offset, 1.0);
    let (dye, dyw) = inputs::<E>(n, salt ^ 0x5555, 0.0, 1.0);
    let gamma: Vec<f32> = (0..c).map(|i| 1.0 - i as f32 * 0.15).collect();
    let beta: Vec<f32> = (0..c).map(|i| i as f32 * 0.1 - 0.5).collect();
    let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
    let mean: Vec<f32> = (0..c).map(|i| offset as f32 + i as f32 * 0.01).collect();
    let var: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
    let invstd: Vec<f32> = var.iter().map(|v| 1.0 / v.sqrt()).collect();
    let stats = RunningStats {
        mean: &mean,
        var: &var,
    };
    let saved = SavedStats {
        mean: &mean,
        invstd: &invstd,
    };
    for isa in Isa::available() {
        with_isa(isa, || -> Result<(), TestCaseError> {
            let (mut ye, mut yw) = (vec![E::of(0.0); n], vec![0.0f32; n]);
            let ep = epilogue(relu);
            batch_norm_infer(&xe, &mut ye, shape, layout, &params, ep, &stats).unwrap();
            batch_norm_infer(&xw, &mut yw, shape, layout, &params, ep, &stats).unwrap();
            prop_assert_eq!(&ye, &narrow::<E>(&yw), "{} {} infer", E::NAME, isa);
            // Backward through the fused ReLU takes the forward's output, here the typed one.
            let yw = widen(&ye);
            let (yy_e, yy_w) = (relu.then_some(&ye[..]), relu.then_some(&yw[..]));
            let (mut dxe, mut dge, mut dbe) = (vec![E::of(0.0); n], vec![0.0; c], vec![0.0; c]);
            let (mut dxw, mut dgw, mut dbw) = (vec![0.0f32; n], vec![0.0; c], vec![0.0; c]);
            let grads = BnGrads {
                dx: &mut dxe,
                dgamma: &mut dge,
                dbeta: &mut dbe,
            };
            batch_norm_backward(&xe, &dye, yy_e, grads, shape, layout, &params, &saved).unwrap();
            let grads = BnGrads {
                dx: &mut dxw,
                dgamma: &mut dgw,
                dbeta: &mut dbw,
            };
            batch_norm_backward(&xw, &dyw, yy_w, grads, shape, layout, &params, &saved).unwrap();
            prop_assert_eq!(&dxe, &narrow::<E>(&dxw), "{} {} backward dx", E::NAME, isa);
            prop_assert_eq!(bits(&dge), bits(&dgw), "{} {} dgamma", E::NAME, isa);
            prop_assert_eq!(bits(&dbe), bits(&dbw), "{} {} dbeta", E::NAME, isa);
            Ok(())
        })
        .unwrap()?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn train_forward_within_the_bound(
        sl in shape_and_layout(),
        offset in prop_oneof![Just(0.0f64), -100.0f64..100.0],
        log_scale in -1.0f64..1.5,
        relu in any::<bool>(),
        salt in any::<u64>(),
        is_bf16 in any::<bool>(),
    ) {
        let scale = 10f64.powf(log_scale);
        if is_bf16 {
            train_within_bound::<bf16>(sl, offset, scale, relu, salt)?;
        } else {
            train_within_bound::<f16>(sl, offset, scale, relu, salt)?;
        }
    }

    #[test]
    fn dropout_keeps_the_reference_elements(
        n in 0usize..3000,
        p in prop_oneof![Just(0.0f32), Just(1.0f32), 0.0f32..1.0],
        seed in any::<u64>(),
        offset in prop_oneof![Just(0u64), 0u64..100_000],
        is_bf16 in any::<bool>(),
    ) {
        if is_bf16 {
            dropout_keeps_reference::<bf16>(n, p, seed, offset)?;
        } else {
            dropout_keeps_reference::<f16>(n, p, seed, offset)?;
        }
    }

    #[test]
    fn infer_and_backward_are_the_f32_kernels_narrowed(
        sl in shape_and_layout(),
        offset in -20.0f64..20.0,
        relu in any::<bool>(),
        salt in any::<u64>(),
        is_bf16 in any::<bool>(),
    ) {
        if is_bf16 {
            infer_and_backward_are_the_f32_kernels::<bf16>(sl, offset, relu, salt)?;
        } else {
            infer_and_backward_are_the_f32_kernels::<f16>(sl, offset, relu, salt)?;
        }
    }
}
