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

main_thread_checks!(
    batch_norm_layer_running_statistics_in_every_convention,
    batch_norm_layer_backward_equals_the_function,
    dropout_layer_fresh_masks_and_matching_backward,
);
