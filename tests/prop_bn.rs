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
        let mut params = BnParams::new(eps).with_relu(relu);
        if affine {
            params = params.with_affine(&gamma, &beta);
        }
        let (want, _) = reference::batch_norm_train(&x, shape, layout, eps, params.gamma, params.beta, relu);
        for isa in Isa::available() {
            let o = with_isa(isa, || run_bn(&x, shape, layout, &params, Momentum::PyTorch(0.1))).unwrap();
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
