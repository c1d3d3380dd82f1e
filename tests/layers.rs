//! The `BatchNorm` and `Dropout` layers: several training steps and an eval step, with the
//! running statistics checked against hand computation in both conventions.

#[macro_use]
mod common;

use common::*;
use dropnorm::*;

/// Batch mean and biased / unbiased variance of each column of an NC batch, in f64.
fn column_stats(x: &[f32], c: usize) -> Vec<(f64, f64, f64)> {
    let n = x.len() / c;
    (0..c)
        .map(|ch| {
            let v: Vec<f64> = (0..n).map(|r| x[r * c + ch] as f64).collect();
            let (mean, var) = reference::mean_var(&v);
            (mean, var, var * n as f64 / (n as f64 - 1.0))
        })
        .collect()
}

fn batch_norm_layer_running_statistics_in_every_convention() {
    let c = 3;
    let shape = Shape::nc(5, c);
    let batches: Vec<Vec<f32>> = (0..4)
        .map(|b| {
            normals(15, b)
                .iter()
                .map(|v| (2.0 + 3.0 * v) as f32)
                .collect()
        })
        .collect();
    for conv in [
        Momentum::PyTorch(0.1),
        Momentum::Onnx(0.9),
        Momentum::PyTorchCumulative,
    ] {
        let mut bn = BatchNorm::new(c, Layout::Nc);
        bn.momentum = conv;
        let (mut rm, mut rv) = (vec![0.0f64; c], vec![1.0f64; c]);
        let mut y = vec![0.0f32; 15];
        for (t, x) in batches.iter().enumerate() {
            bn.forward(x, &mut y, shape).unwrap();
            for (ch, (mean, var, unbiased)) in column_stats(x, c).into_iter().enumerate() {
                match conv {
                    Momentum::PyTorch(m) => {
                        let m = m as f64;
                        rm[ch] = (1.0 - m) * rm[ch] + m * mean;
                        rv[ch] = (1.0 - m) * rv[ch] + m * unbiased;
                    }
                    Momentum::PyTorchCumulative => {
                        let m = 1.0 / (t + 1) as f64;
                        rm[ch] = (1.0 - m) * rm[ch] + m * mean;
                        rv[ch] = (1.0 - m) * rv[ch] + m * unbiased;
                    }
                    Momentum::Onnx(m) => {
                        let m = m as f64;
                        rm[ch] = m * rm[ch] + (1.0 - m) * mean;
                        rv[ch] = m * rv[ch] + (1.0 - m) * var;
                    }
                }
            }
            for ch in 0..c {
                assert!(
                    (bn.running_mean[ch] as f64 - rm[ch]).abs() <= 1e-5 * (1.0 + rm[ch].abs()),
                    "{conv:?} step {t}"
                );
                assert!(
                    (bn.running_var[ch] as f64 - rv[ch]).abs() <= 1e-5 * rv[ch],
                    "{conv:?} step {t}"
                );
            }
        }
        assert_eq!(bn.batches_tracked(), 4);
        // Eval: the running statistics normalize, and nothing changes them.
        bn.eval();
        bn.gamma = vec![2.0, 1.0, 0.5];
        bn.beta = vec![0.1, 0.2, 0.3];
        let x = &batches[0];
        bn.forward(x, &mut y, shape).unwrap();
        for r in 0..5 {
            for ch in 0..c {
                let want = (x[r * c + ch] as f64 - bn.running_mean[ch] as f64)
                    / (bn.running_var[ch] as f64 + 1e-5).sqrt()
                    * bn.gamma[ch] as f64
                    + bn.beta[ch] as f64;
                assert!(
                    (y[r * c + ch] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{conv:?} eval"
                );
            }
        }
        assert_eq!(bn.batches_tracked(), 4);
    }
}

fn batch_norm_layer_backward_equals_the_function() {
    let shape = Shape::nchw(2, 3, 4, 4);
    let x: Vec<f32> = normals(96, 1).iter().map(|v| *v as f32).collect();
    let dy: Vec<f32> = normals(96, 2).iter().map(|v| *v as f32).collect();
    let mut bn = BatchNorm::new(3, Layout::Nchw);
    bn.gamma = vec![1.5, 0.5, 2.0];
    bn.epilogue = Epilogue::Relu;
    let mut y = vec![0.0f32; 96];
    bn.forward(&x, &mut y, shape).unwrap();
    let mut dx = vec![0.0f32; 96];
    bn.backward(&x, &dy, Some(&y), &mut dx, shape).unwrap();
    // Direct calls with the same statistics.
    let params = BnParams::new(1e-5).with_affine(&bn.gamma, &bn.beta);
    let (mut m, mut s) = (vec![0.0f32; 3], vec![0.0f32; 3]);
    let mut y2 = vec![0.0f32; 96];
    batch_norm_train(
        &x,
        &mut y2,
        shape,
        Layout::Nchw,
        &params,
        Epilogue::Relu,
        SavedStatsMut {
            mean: &mut m,
            invstd: &mut s,
        },
        None,
    )
    .unwrap();
    assert_eq!(bits(&y), bits(&y2));
    let (mut dx2, mut dg, mut db) = (vec![0.0f32; 96], vec![0.0f32; 3], vec![0.0f32; 3]);
    let saved = SavedStats {
        mean: &m,
        invstd: &s,
    };
    batch_norm_backward(
        &x,
        &dy,
        Some(&y2),
        BnGrads {
            dx: &mut dx2,
            dgamma: &mut dg,
            dbeta: &mut db,
        },
        shape,
        Layout::Nchw,
        &params,
        &saved,
    )
    .unwrap();
    assert_eq!(bits(&dx), bits(&dx2));
    assert_eq!(bits(&bn.dgamma), bits(&dg));
    assert_eq!(bits(&bn.dbeta), bits(&db));
    // Without y a fused ReLU cannot be differentiated; with y and no ReLU, y is a mistake.
    assert!(matches!(
        bn.backward(&x, &dy, None, &mut dx, shape),
        Err(Error::MissingArgument { .. })
    ));
    bn.epilogue = Epilogue::None;
    assert!(matches!(
        bn.backward(&x, &dy, Some(&y), &mut dx, shape),
        Err(Error::UnexpectedArgument { .. })
    ));
}

fn dropout_layer_fresh_masks_and_matching_backward() {
    let mut d = Dropout::new(0.4, 99);
    let x = vec![1.0f32; 4096];
    let mut ys = Vec::new();
    for step in 0..3 {
        let mut y = vec![0.0f32; 4096];
        d.forward(&x, &mut y).unwrap();
        let mut dx = vec![0.0f32; 4096];
        d.backward(&x, &mut dx).unwrap();
        assert_eq!(
            bits(&dx),
            bits(&y),
            "step {step}: backward uses the forward's mask"
        );
        assert_eq!(bits(&y), bits(&reference::dropout(&x, &d.params(step))));
        ys.push(y);
    }
    assert_ne!(ys[0], ys[1]);
    assert_ne!(ys[1], ys[2]);
    assert_eq!(d.steps(), 3);
    d.eval();
    let mut y = vec![0.0f32; 4096];
    d.forward(&x, &mut y).unwrap();
    assert_eq!(y, x);
    assert_eq!(d.steps(), 3);
}

/// The layers over bf16 and f16: each forward and backward, training and eval, writes the f32
/// layer's output on the widened inputs, narrowed, and leaves the same f32 state (running and
/// saved statistics, `dγ`, `dβ`) bit for bit — the typed kernels are the f32 ones.
fn layers_take_every_element_type() {
    fn check<E: dropnorm::Element + Copy + PartialEq + core::fmt::Debug>(
        of: fn(f32) -> E,
        wide: fn(E) -> f32,
    ) {
        let shape = Shape::nchw(2, 5, 3, 3);
        let n = 90;
        let xe: Vec<E> = normals(n, 3).iter().map(|v| of(*v as f32)).collect();
        let dye: Vec<E> = normals(n, 4).iter().map(|v| of(*v as f32)).collect();
        let x: Vec<f32> = xe.iter().map(|v| wide(*v)).collect();
        let dy: Vec<f32> = dye.iter().map(|v| wide(*v)).collect();
        let narrow = |v: &[f32]| v.iter().map(|f| of(*f)).collect::<Vec<E>>();
        let (mut typed, mut wide_bn) = (
            BatchNorm::new(5, Layout::Nhwc),
            BatchNorm::new(5, Layout::Nhwc),
        );
        for bn in [&mut typed, &mut wide_bn] {
            bn.gamma = vec![1.5, 0.5, 2.0, -1.0, 0.25];
            bn.beta = vec![0.1, -0.2, 0.3, 0.0, 1.0];
            bn.epilogue = Epilogue::Relu;
        }
        for training in [true, false] {
            if !training {
                typed.eval();
                wide_bn.eval();
            }
            let (mut ye, mut y) = (vec![of(0.0); n], vec![0.0f32; n]);
            typed.forward(&xe, &mut ye, shape).unwrap();
            wide_bn.forward(&x, &mut y, shape).unwrap();
            assert_eq!(ye, narrow(&y), "training {training}: forward");
            assert_eq!(bits(&typed.running_mean), bits(&wide_bn.running_mean));
            assert_eq!(bits(&typed.running_var), bits(&wide_bn.running_var));
            // Backward sees the typed forward's output, widened, as the f32 layer's `y`.
            let yw: Vec<f32> = ye.iter().map(|v| wide(*v)).collect();
            let (mut dxe, mut dx) = (vec![of(0.0); n], vec![0.0f32; n]);
            typed
                .backward(&xe, &dye, Some(&ye), &mut dxe, shape)
                .unwrap();
            wide_bn
                .backward(&x, &dy, Some(&yw), &mut dx, shape)
                .unwrap();
            assert_eq!(dxe, narrow(&dx), "training {training}: backward");
            assert_eq!(bits(&typed.dgamma), bits(&wide_bn.dgamma));
            assert_eq!(bits(&typed.dbeta), bits(&wide_bn.dbeta));
        }
        let (mut d_typed, mut d_wide) = (Dropout::new(0.3, 5), Dropout::new(0.3, 5));
        for _ in 0..2 {
            let (mut ye, mut y) = (vec![of(0.0); n], vec![0.0f32; n]);
            d_typed.forward(&xe, &mut ye).unwrap();
            d_wide.forward(&x, &mut y).unwrap();
            assert_eq!(ye, narrow(&y), "dropout forward");
            let (mut dxe, mut dx) = (vec![of(0.0); n], vec![0.0f32; n]);
            d_typed.backward(&dye, &mut dxe).unwrap();
            d_wide.backward(&dy, &mut dx).unwrap();
            assert_eq!(dxe, narrow(&dx), "dropout backward");
        }
    }
    check::<bf16>(bf16::from_f32, bf16::to_f32);
    check::<f16>(f16::from_f32, f16::to_f32);
}

main_thread_checks!(
    batch_norm_layer_running_statistics_in_every_convention,
    batch_norm_layer_backward_equals_the_function,
    dropout_layer_fresh_masks_and_matching_backward,
    layers_take_every_element_type,
);
