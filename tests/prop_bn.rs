//! Property tests of the batch-norm training forward over shapes, values and parameters:
//! every ISA within tolerance of the f64 reference (|y − y_ref| ≤ 3e-5·max(1, |γ|) + 1e-6·|β|).

mod common;

use common::*;
use dropnorm::*;
use proptest::prelude::*;

fn shape_and_layout() -> impl Strategy<Value = (Shape, Layout)> {
    prop_oneof![
        (2usize..200, 1usize..80).prop_map(|(n, c)| (Shape::nc(n, c), Layout::Nc)),
        (1usize..5, 1usize..20, 1usize..9, 1usize..19, any::<bool>()).prop_map(
            |(n, c, h, w, nhwc)| {
                // At least two values per channel.
                let n = if n * h * w < 2 { 2 } else { n };
                (
                    Shape::nchw(n, c, h, w),
                    if nhwc { Layout::Nhwc } else { Layout::Nchw },
                )
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn train_forward_matches_reference(
        (shape, layout) in shape_and_layout(),
        offset in prop_oneof![Just(0.0f64), -1e3f64..1e3],
        log_scale in -2.0f64..2.0,
        eps in prop_oneof![Just(0.0f32), 1e-6f32..1e-1],
        affine in any::<bool>(),
        relu in any::<bool>(),
        salt in any::<u64>(),
    ) {
        let n = shape.numel().unwrap();
        let scale = 10f64.powf(log_scale);
        let x: Vec<f32> = normals(n, salt).iter().map(|v| (offset + scale * v) as f32).collect();
        let c = shape.c;
        let gamma: Vec<f32> = (0..c).map(|i| ((salt >> (i % 60)) & 7) as f32 * 0.5 - 1.5).collect();
        let beta: Vec<f32> = (0..c).map(|i| i as f32 * 0.3 - 2.0).collect();
        let mut params = BnParams::new(eps);
        if affine {
            params = params.with_affine(&gamma, &beta);
        }
        let (want, _) = reference::batch_norm_train(&x, shape, layout, eps, params.gamma, params.beta, relu);
        for isa in Isa::available() {
            let o = with_isa(isa, || run_bn(&x, shape, layout, &params, epilogue(relu), Momentum::PyTorch(0.1))).unwrap();
            for ch in 0..c {
                let g = params.gamma.map_or(1.0, |g| g[ch].abs() as f64).max(1.0);
                let b = params.beta.map_or(0.0, |b| b[ch].abs() as f64);
                for j in 0..n / c {
                    let i = reference::channel_index(shape, layout, ch, j);
                    let tol = 3e-5 * g + 1e-6 * b;
                    prop_assert!((o.y[i] as f64 - want[i]).abs() <= tol,
                        "{} {:?} {:?}: y[{}] = {}, want {}", isa, layout, shape, i, o.y[i], want[i]);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Inference and the eval-mode backward agree with their f64 formulas, and the training
    /// backward's `dβ` is `Σdy` per channel, on arbitrary shapes.
    #[test]
    fn infer_and_backward_match_formulas(
        (shape, layout) in shape_and_layout(),
        offset in -100.0f64..100.0,
        salt in any::<u64>(),
        relu in any::<bool>(),
    ) {
        let n = shape.numel().unwrap();
        let c = shape.c;
        let x: Vec<f32> = normals(n, salt).iter().map(|v| (offset + v) as f32).collect();
        let dy: Vec<f32> = normals(n, salt ^ 1).iter().map(|v| *v as f32).collect();
        let mean: Vec<f32> = (0..c).map(|i| (offset + i as f64 * 0.1) as f32).collect();
        let var: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
        let gamma: Vec<f32> = (0..c).map(|i| 1.0 + (i % 3) as f32 * 0.5).collect();
        let beta: Vec<f32> = (0..c).map(|i| (i % 2) as f32 * 0.5).collect();
        let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
        let stats = RunningStats { mean: &mean, var: &var };
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; n];
            with_isa(isa, || batch_norm_infer(&x, &mut y, shape, layout, &params, epilogue(relu), &stats)).unwrap().unwrap();
            let mut dx = vec![f32::NAN; n];
            let (mut dg, mut db) = (vec![f32::NAN; c], vec![f32::NAN; c]);
            let eval = params;
            let grads = BnGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut db };
            with_isa(isa, || batch_norm_backward_eval(&x, &dy, None, grads, shape, layout, &eval, &stats)).unwrap().unwrap();
            for ch in 0..c {
                let a = gamma[ch] as f64 / (var[ch] as f64 + 1e-5).sqrt();
                for j in 0..n / c {
                    let i = reference::channel_index(shape, layout, ch, j);
                    let o = (x[i] as f64 - mean[ch] as f64) * a + beta[ch] as f64;
                    let o = if relu && o < 0.0 { 0.0 } else { o };
                    prop_assert!((y[i] as f64 - o).abs() <= 2e-5 * (1.0 + o.abs()), "{} infer", isa);
                    let g = dy[i] as f64 * a;
                    prop_assert!((dx[i] as f64 - g).abs() <= 2e-6 * (1.0 + g.abs()), "{} eval backward", isa);
                }
            }
            let o = with_isa(isa, || run_bn(&x, shape, layout, &BnParams::new(1e-5), dropnorm::Epilogue::None, Momentum::PyTorch(0.1))).unwrap();
            let (mut dxt, mut dg, mut db) = (vec![0.0f32; n], vec![0.0f32; c], vec![0.0f32; c]);
            let saved = SavedStats { mean: &o.mean, invstd: &o.invstd };
            with_isa(isa, || batch_norm_backward(&x, &dy, None, BnGrads { dx: &mut dxt, dgamma: &mut dg, dbeta: &mut db }, shape, layout, &BnParams::new(1e-5), &saved)).unwrap().unwrap();
            for ch in 0..c {
                let s: f64 = (0..n / c).map(|j| dy[reference::channel_index(shape, layout, ch, j)] as f64).sum();
                prop_assert!((db[ch] as f64 - s).abs() <= 1e-4 * (1.0 + s.abs()), "{} dbeta", isa);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The saved mean within `1e-6 + 2e-6·|mean|` of the exact mean of the f32 inputs
    /// (DESIGN §3) at any offset and a spread up to 10^4 times it: the f64 sum of `x`.
    #[test]
    fn mean_within_bound_at_any_spread(
        (shape, layout) in shape_and_layout(),
        mean in prop_oneof![Just(0.0f64), -10f64..10.0, -1e4f64..1e4],
        log_spread in 0.0f64..4.0,
        salt in any::<u64>(),
    ) {
        let n = shape.numel().unwrap();
        let spread = 10f64.powf(log_spread) * mean.abs().max(1.0);
        let x: Vec<f32> = normals(n, salt).iter().map(|v| (mean + spread * v) as f32).collect();
        let c = shape.c;
        for isa in Isa::available() {
            let o = with_isa(isa, || run_bn(&x, shape, layout, &BnParams::default(), dropnorm::Epilogue::None, Momentum::PyTorch(0.1))).unwrap();
            for ch in 0..c {
                let exact = (0..n / c)
                    .map(|j| x[reference::channel_index(shape, layout, ch, j)] as f64)
                    .sum::<f64>() / (n / c) as f64;
                let bound = 1e-6 + 2e-6 * exact.abs();
                prop_assert!((o.mean[ch] as f64 - exact).abs() <= bound,
                    "{} {:?} {:?} ch {}: mean {} vs exact {}", isa, layout, shape, ch, o.mean[ch], exact);
            }
        }
    }
}
