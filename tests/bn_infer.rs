//! Batch-norm inference, add+ReLU and folding: every ISA × layout against an f64 reference
//! (|y − y_ref| ≤ 2e-5·max(1, |a|·σ_x) + 1e-6·|β| for unit-scale data), folding checked against
//! the inference kernel and through a convolution.

#![allow(clippy::needless_range_loop)] // channel indices address several parallel arrays

#[macro_use]
mod common;

use common::*;
use dropnorm::*;

const LAYOUTS: [Layout; 3] = [Layout::Nc, Layout::Nchw, Layout::Nhwc];

fn shapes(layout: Layout) -> Vec<Shape> {
    match layout {
        Layout::Nc => [
            (1, 1),
            (3, 15),
            (5, 16),
            (7, 17),
            (9, 63),
            (4, 64),
            (40, 32),
            (3, 65),
            (4, 1100),
            (3, 1040),
            (3, 2080),
            (5, 2064),
        ]
        .into_iter()
        .map(|(n, c)| Shape::nc(n, c))
        .collect(),
        _ => [
            (1, 1, 1, 1),
            (2, 3, 4, 5),
            (1, 4, 3, 3),
            (2, 17, 4, 4),
            (4, 5, 1, 17),
            (2, 3, 31, 33),
            (3, 1, 1, 1100),
        ]
        .into_iter()
        .map(|(n, c, h, w)| Shape::nchw(n, c, h, w))
        .collect(),
    }
}

struct Case {
    x: Vec<f32>,
    r: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

fn case(shape: Shape, salt: u64, offset: f64) -> Case {
    let n = shape.numel().unwrap();
    let c = shape.c;
    let z = normals(n + 4 * c, salt);
    Case {
        x: z[..n].iter().map(|v| (offset + 2.0 * v) as f32).collect(),
        r: z[..n].iter().rev().map(|v| *v as f32).collect(),
        gamma: (0..c).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect(),
        beta: (0..c).map(|i| (i % 5) as f32 * 0.3 - 0.6).collect(),
        mean: (0..c).map(|i| (offset + z[n + i] * 0.1) as f32).collect(),
        var: (0..c)
            .map(|i| (4.0 * (1.0 + 0.1 * z[n + c + i].abs())) as f32)
            .collect(),
    }
}

/// f64 reference of `relu?(γ(x − m)/sqrt(v + eps) + β (+ r))`.
fn reference(cs: &Case, shape: Shape, layout: Layout, eps: f32, relu: bool, add: bool) -> Vec<f64> {
    let mut y = vec![0.0f64; cs.x.len()];
    for ch in 0..shape.c {
        let a = cs.gamma[ch] as f64 / (cs.var[ch] as f64 + eps as f64).sqrt();
        for j in 0..shape.n * shape.h * shape.w {
            let i = reference::channel_index(shape, layout, ch, j);
            let mut o = (cs.x[i] as f64 - cs.mean[ch] as f64) * a + cs.beta[ch] as f64;
            if add {
                o += cs.r[i] as f64;
            }
            y[i] = if relu && o < 0.0 { 0.0 } else { o };
        }
    }
    y
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 3e-5 * (1.0 + w.abs()),
            "{what}: y[{i}] = {g}, want {w}"
        );
    }
}

fn every_isa_and_layout_matches_f64_reference() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                for offset in [0.0, 1e4] {
                    let cs = case(shape, si as u64 + 3, offset);
                    let stats = RunningStats {
                        mean: &cs.mean,
                        var: &cs.var,
                    };
                    let what = format!("{isa} {layout:?} {shape:?} offset {offset}");
                    for relu in [false, true] {
                        let params = BnParams::new(1e-5).with_affine(&cs.gamma, &cs.beta);
                        let want = reference(&cs, shape, layout, 1e-5, relu, false);
                        let mut y = Guarded::new(cs.x.len(), si % 3, f32::NAN);
                        batch_norm_infer(
                            &cs.x,
                            y.window_mut(),
                            shape,
                            layout,
                            &params,
                            epilogue(relu),
                            &stats,
                        )
                        .unwrap();
                        assert_close(y.window(), &want, &what);
                        y.assert_guards(&what);
                        let mut z = cs.x.clone();
                        batch_norm_infer_inplace(
                            &mut z,
                            shape,
                            layout,
                            &params,
                            epilogue(relu),
                            &stats,
                        )
                        .unwrap();
                        assert_eq!(bits(&z), bits(y.window()), "{what}: in place");
                    }
                    let params = BnParams::new(1e-5).with_affine(&cs.gamma, &cs.beta);
                    let want = reference(&cs, shape, layout, 1e-5, true, true);
                    let mut y = Guarded::new(cs.x.len(), 1, f32::NAN);
                    batch_norm_add_relu_infer(
                        &cs.x,
                        &cs.r,
                        y.window_mut(),
                        shape,
                        layout,
                        &params,
                        &stats,
                    )
                    .unwrap();
                    assert_close(y.window(), &want, &format!("{what} add+relu"));
                    y.assert_guards(&what);
                }
            }
        }
    });
}

/// Past the non-temporal threshold: the streaming-store paths.
fn non_temporal_paths_match_reference() {
    let min = testing::NT_MIN_BYTES / 4;
    for (shape, layout) in [
        (shape_with_at_least(min), Layout::Nchw),
        (shape_with_at_least(min), Layout::Nhwc),
        (Shape::nc(min / 40 + 3, 40), Layout::Nc),
    ] {
        let cs = case(shape, 9, 3.0);
        let stats = RunningStats {
            mean: &cs.mean,
            var: &cs.var,
        };
        let params = BnParams::new(1e-5).with_affine(&cs.gamma, &cs.beta);
        let want = reference(&cs, shape, layout, 1e-5, true, true);
        for_each_isa(|isa| {
            let mut y = vec![f32::NAN; cs.x.len()];
            batch_norm_add_relu_infer(&cs.x, &cs.r, &mut y, shape, layout, &params, &stats)
                .unwrap();
            assert_close(&y, &want, &format!("{isa} {layout:?}"));
        });
    }
}

/// `x·a + b` with the folded `(a, b)` equals the inference kernel within what that form
/// allows: one rounding of `x·a` and of the sum, relative to their magnitudes.
fn fold_matches_inference() {
    for layout in LAYOUTS {
        let shape = shapes(layout)[3];
        let cs = case(shape, 4, 50.0);
        let stats = RunningStats {
            mean: &cs.mean,
            var: &cs.var,
        };
        let params = BnParams::new(1e-3).with_affine(&cs.gamma, &cs.beta);
        let (mut a, mut b) = (vec![0.0f32; shape.c], vec![0.0f32; shape.c]);
        fold(&mut a, &mut b, &params, &stats).unwrap();
        let mut y = vec![0.0f32; cs.x.len()];
        batch_norm_infer(
            &cs.x,
            &mut y,
            shape,
            layout,
            &params,
            dropnorm::Epilogue::None,
            &stats,
        )
        .unwrap();
        for ch in 0..shape.c {
            for j in 0..shape.n * shape.h * shape.w {
                let i = reference::channel_index(shape, layout, ch, j);
                let folded = cs.x[i] * a[ch] + b[ch];
                let tol = 4.0 * f32::EPSILON * ((cs.x[i] * a[ch]).abs() + b[ch].abs());
                assert!(
                    (folded - y[i]).abs() <= tol,
                    "{layout:?}: {folded} vs {}",
                    y[i]
                );
            }
        }
    }
}

/// A small direct convolution with folded weights equals the convolution followed by batch
/// norm (inference).
fn folded_convolution_equals_convolution_then_bn() {
    let (n, ci, co, h, w, k) = (2usize, 3usize, 4usize, 6usize, 5usize, 3usize);
    let (ho, wo) = (h - k + 1, w - k + 1);
    let x: Vec<f32> = normals(n * ci * h * w, 1)
        .iter()
        .map(|v| *v as f32)
        .collect();
    let weights: Vec<f32> = normals(co * ci * k * k, 2)
        .iter()
        .map(|v| (*v * 0.3) as f32)
        .collect();
    let bias: Vec<f32> = (0..co).map(|o| o as f32 * 0.1).collect();
    let conv = |wt: &[f32], bs: &[f32]| {
        let mut out = vec![0.0f32; n * co * ho * wo];
        for b in 0..n {
            for o in 0..co {
                for p in 0..ho {
                    for q in 0..wo {
                        let mut acc = bs[o];
                        for c in 0..ci {
                            for u in 0..k {
                                for v in 0..k {
                                    acc += wt[((o * ci + c) * k + u) * k + v]
                                        * x[((b * ci + c) * h + p + u) * w + q + v];
                                }
                            }
                        }
                        out[((b * co + o) * ho + p) * wo + q] = acc;
                    }
                }
            }
        }
        out
    };
    let gamma = [1.5f32, 0.5, 2.0, 1.0];
    let beta = [0.1f32, -0.2, 0.3, 0.0];
    let mean = [0.2f32, -0.1, 0.05, 0.3];
    let var = [1.2f32, 0.8, 2.5, 0.6];
    let stats = RunningStats {
        mean: &mean,
        var: &var,
    };
    let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
    let conv_out = conv(&weights, &bias);
    let shape = Shape::nchw(n, co, ho, wo);
    let mut want = vec![0.0f32; conv_out.len()];
    batch_norm_infer(
        &conv_out,
        &mut want,
        shape,
        Layout::Nchw,
        &params,
        dropnorm::Epilogue::None,
        &stats,
    )
    .unwrap();
    let (mut wf, mut bf) = (weights.clone(), bias.to_vec());
    fold_into(&mut wf, &mut bf, &params, &stats).unwrap();
    let got = conv(&wf, &bf);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
    }
}

#[test]
fn identical_bits_for_1_2_3_threads() {
    for (shape, layout) in [
        (Shape::nchw(4, 24, 33, 31), Layout::Nchw),
        (Shape::nchw(4, 24, 33, 31), Layout::Nhwc),
        (Shape::nc(3001, 70), Layout::Nc),
        (Shape::nc(40, 4096), Layout::Nc),
    ] {
        let cs = case(shape, 6, 1.0);
        let stats = RunningStats {
            mean: &cs.mean,
            var: &cs.var,
        };
        let params = BnParams::new(1e-5).with_affine(&cs.gamma, &cs.beta);
        for isa in Isa::available() {
            let runs: Vec<Vec<u32>> = [1, 2, 3]
                .into_iter()
                .map(|t| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(t)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        with_isa(isa, || {
                            let mut y = vec![0.0f32; cs.x.len()];
                            batch_norm_add_relu_infer(
                                &cs.x, &cs.r, &mut y, shape, layout, &params, &stats,
                            )
                            .unwrap();
                            bits(&y)
                        })
                        .unwrap()
                    })
                })
                .collect();
            assert!(runs[1] == runs[0] && runs[2] == runs[0], "{isa} {layout:?}");
        }
    }
}

fn errors_name_the_argument_and_write_nothing() {
    let shape = Shape::nchw(2, 3, 2, 2);
    let x = vec![1.0f32; 24];
    let (m3, v3, m2) = ([0.0f32; 3], [1.0f32; 3], [0.0f32; 2]);
    let good = RunningStats {
        mean: &m3,
        var: &v3,
    };
    let mut y = vec![7.0f32; 24];
    let e = batch_norm_infer(
        &x[..23],
        &mut y,
        shape,
        Layout::Nchw,
        &BnParams::new(1e-5),
        dropnorm::Epilogue::None,
        &good,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    let e = batch_norm_infer(
        &x,
        &mut y,
        shape,
        Layout::Nchw,
        &BnParams::new(1e-5),
        dropnorm::Epilogue::None,
        &RunningStats {
            mean: &m2,
            var: &v3,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("`stats.mean`"), "{e}");
    let e = batch_norm_infer(
        &x,
        &mut y,
        shape,
        Layout::Nchw,
        &BnParams::new(-1.0),
        dropnorm::Epilogue::None,
        &good,
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidEps { .. }));
    let e = batch_norm_add_relu_infer(
        &x,
        &x[..20],
        &mut y,
        shape,
        Layout::Nchw,
        &BnParams::new(1e-5),
        &good,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`r`"), "{e}");
    assert!(y.iter().all(|&v| v == 7.0));
    let (mut a, mut b) = ([9.0f32; 3], [9.0f32; 2]);
    assert!(fold(&mut a, &mut b, &BnParams::new(1e-5), &good).is_err());
    assert_eq!(a, [9.0; 3]);
    let mut w = [1.0f32; 7];
    let mut bias = [0.0f32; 3];
    assert!(matches!(
        fold_into(&mut w, &mut bias, &BnParams::new(1e-5), &good),
        Err(Error::InvalidShape { .. })
    ));
    assert_eq!(w, [1.0; 7]);
}

main_thread_checks!(
    every_isa_and_layout_matches_f64_reference,
    non_temporal_paths_match_reference,
    fold_matches_inference,
    folded_convolution_equals_convolution_then_bn,
    errors_name_the_argument_and_write_nothing,
);
