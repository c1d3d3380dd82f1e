//! Batch-norm training forward: every ISA × every layout against an f64 two-pass reference,
//! numerics at large offsets, the running-statistics conventions, and hand-computed cases.
//!
//! Tolerances (unit-scale outputs): |y − y_ref| ≤ 2e-5·max(1, |γ|) + 1e-6·|β|; batch mean within
//! 1e-6 of the data's scale (|mean| + σ); invstd and running variance relative 1e-5.

#![allow(clippy::needless_range_loop)] // channel indices address several parallel arrays

#[macro_use]
mod common;

use common::*;
use dropnorm::*;

const LAYOUTS: [Layout; 3] = [Layout::Nc, Layout::Nchw, Layout::Nhwc];

/// Shapes around the lane widths, the 64-column register path, the 1024-column row segment,
/// `C = 1`, `N = 1` with `H·W > 1`.
fn shapes(layout: Layout) -> Vec<Shape> {
    match layout {
        Layout::Nc => [
            (2, 1),
            (3, 15),
            (5, 16),
            (7, 17),
            (9, 63),
            (4, 64),
            (3, 65),
            (33, 130),
            (4, 1100),
            (3, 2080),
            (5, 2064),
            (70, 3),
        ]
        .into_iter()
        .map(|(n, c)| Shape::nc(n, c))
        .collect(),
        _ => [
            (1, 1, 2, 1),
            (2, 3, 4, 5),
            (1, 4, 3, 3),
            (3, 2, 5, 3),
            (2, 17, 4, 4),
            (4, 5, 1, 17),
            (2, 3, 31, 33),
            (1, 66, 2, 3),
            (3, 1, 1, 1100),
        ]
        .into_iter()
        .map(|(n, c, h, w)| Shape::nchw(n, c, h, w))
        .collect(),
    }
}

fn data_for(shape: Shape, salt: u64, offset: f64, scale: f64) -> Vec<f32> {
    normals(shape.numel().unwrap(), salt)
        .iter()
        .map(|v| (offset + scale * v) as f32)
        .collect()
}

fn check_against_reference(
    x: &[f32],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    relu: bool,
    what: &str,
) {
    let c = shape.c;
    let count = (shape.n * shape.h * shape.w) as f64;
    let (want_y, stats) = reference::batch_norm_train(
        x,
        shape,
        layout,
        params.eps,
        params.gamma,
        params.beta,
        relu,
    );
    for momentum in [
        Momentum::PyTorch(0.1),
        Momentum::Onnx(0.9),
        Momentum::PyTorchCumulative,
    ] {
        // After two batches: the cumulative average weights this one 1/3.
        let o = run_bn_after(x, shape, layout, params, epilogue(relu), momentum, 2);
        for (i, (&y, &w)) in o.y.iter().zip(&want_y).enumerate() {
            let ch = (0..c)
                .find(|&ch| {
                    (0..shape.n * shape.h * shape.w)
                        .any(|j| reference::channel_index(shape, layout, ch, j) == i)
                })
                .unwrap_or(0);
            let g = params.gamma.map_or(1.0, |g| g[ch].abs() as f64).max(1.0);
            let b = params.beta.map_or(0.0, |b| b[ch].abs() as f64);
            let tol = 2e-5 * g + 1e-6 * b;
            assert!(
                (y as f64 - w).abs() <= tol,
                "{what} {momentum:?}: y[{i}] = {y}, want {w}"
            );
        }
        for ch in 0..c {
            let (mean, var, invstd) = stats[ch];
            let scale = mean.abs() + var.sqrt();
            assert!(
                (o.mean[ch] as f64 - mean).abs() <= 1e-6 * scale + 1e-30,
                "{what}: mean[{ch}] {} vs {mean}",
                o.mean[ch]
            );
            assert!(
                (o.invstd[ch] as f64 - invstd).abs() <= 1e-5 * invstd,
                "{what}: invstd[{ch}] {} vs {invstd}",
                o.invstd[ch]
            );
            let (rm, rv) = match momentum {
                Momentum::PyTorch(m) => {
                    let m = m as f64;
                    (
                        (1.0 - m) * 0.5 + m * mean,
                        (1.0 - m) * 2.0 + m * var * count / (count - 1.0),
                    )
                }
                Momentum::PyTorchCumulative => {
                    let m = 1.0 / 3.0;
                    (
                        (1.0 - m) * 0.5 + m * mean,
                        (1.0 - m) * 2.0 + m * var * count / (count - 1.0),
                    )
                }
                Momentum::Onnx(m) => {
                    let m = m as f64;
                    (m * 0.5 + (1.0 - m) * mean, m * 2.0 + (1.0 - m) * var)
                }
            };
            assert!(
                (o.running_mean[ch] as f64 - rm).abs() <= 1e-6 * (rm.abs() + scale),
                "{what}: running mean"
            );
            assert!(
                (o.running_var[ch] as f64 - rv).abs() <= 1e-5 * rv,
                "{what}: running var {} vs {rv}",
                o.running_var[ch]
            );
        }
    }
}

fn every_isa_and_layout_matches_f64_reference() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                let c = shape.c;
                let x = data_for(shape, si as u64 + 1, 3.0, 2.0);
                let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.25).collect();
                let beta: Vec<f32> = (0..c).map(|i| i as f32 * 0.1 - 1.0).collect();
                let what = format!("{isa} {layout:?} {shape:?}");
                check_against_reference(&x, shape, layout, &BnParams::new(1e-5), false, &what);
                let affine = BnParams::new(1e-3).with_affine(&gamma, &beta);
                check_against_reference(
                    &x,
                    shape,
                    layout,
                    &affine,
                    false,
                    &format!("{what} affine"),
                );
                check_against_reference(&x, shape, layout, &affine, true, &format!("{what} relu"));
            }
        }
    });
}

fn in_place_equals_out_of_place_and_guards_hold() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for shape in shapes(layout) {
                let c = shape.c;
                let x = data_for(shape, 9, -1.0, 3.0);
                let gamma = vec![1.5f32; c];
                let beta = vec![0.25f32; c];
                let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
                let want = run_bn(
                    &x,
                    shape,
                    layout,
                    &params,
                    Epilogue::Relu,
                    Momentum::Onnx(0.9),
                );
                let mut g = Guarded::from(&x, 1 + c % 3);
                let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
                let (mut rm, mut rv) = (vec![0.5f32; c], vec![2.0f32; c]);
                batch_norm_train_inplace(
                    g.window_mut(),
                    shape,
                    layout,
                    &params,
                    Epilogue::Relu,
                    SavedStatsMut {
                        mean: &mut m,
                        invstd: &mut s,
                    },
                    Some((
                        RunningStatsMut {
                            mean: &mut rm,
                            var: &mut rv,
                            batches: &mut 0,
                        },
                        Momentum::Onnx(0.9),
                    )),
                )
                .unwrap();
                g.assert_guards("bn in place");
                let got = BnOut {
                    y: g.window().to_vec(),
                    mean: m,
                    invstd: s,
                    running_mean: rm,
                    running_var: rv,
                };
                assert_eq!(got.bits(), want.bits(), "{isa} {layout:?} {shape:?}");
            }
        }
    });
}

/// Data `offset + N(0,1)`: the shifted sums keep the variance accurate where `E[x²] − E[x]²`
/// loses everything, and the centered normalization keeps `y` accurate where `x·a + b` loses
/// three digits at 1e4 (PyTorch's form).
fn large_offsets_keep_full_precision() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            let shape = match layout {
                Layout::Nc => Shape::nc(4096, 3),
                _ => Shape::nchw(16, 3, 16, 16),
            };
            for offset in [1e4, 1e6, -3e5] {
                let x = data_for(shape, 77, offset, 1.0);
                let (want_y, stats) =
                    reference::batch_norm_train(&x, shape, layout, 1e-5, None, None, false);
                let o = run_bn(
                    &x,
                    shape,
                    layout,
                    &BnParams::new(1e-5),
                    dropnorm::Epilogue::None,
                    Momentum::PyTorch(0.1),
                );
                for ch in 0..shape.c {
                    let var = 1.0 / (o.invstd[ch] as f64).powi(2) - 1e-5;
                    let rel = (var - stats[ch].1).abs() / stats[ch].1;
                    assert!(
                        rel <= 1e-4,
                        "{isa} {layout:?} offset {offset}: var rel err {rel}"
                    );
                }
                if offset == 1e4 {
                    let err =
                        o.y.iter()
                            .zip(&want_y)
                            .map(|(a, b)| (*a as f64 - b).abs())
                            .fold(0.0, f64::max);
                    // Reached here: a few 1e-7; required: 1e-5.
                    assert!(
                        err <= 1e-5,
                        "{isa} {layout:?}: y max abs err {err} at offset 1e4"
                    );
                }
            }
        }
    });
}

fn constant_channels_give_exactly_beta() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            let shape = match layout {
                Layout::Nc => Shape::nc(100, 4),
                _ => Shape::nchw(3, 4, 5, 7),
            };
            let n = shape.numel().unwrap();
            let values = [1e7f32, -3.5, 0.0, 12345.678];
            let x: Vec<f32> = (0..n)
                .map(|i| {
                    let ch = (0..4)
                        .find(|&ch| {
                            (0..n / 4).any(|j| reference::channel_index(shape, layout, ch, j) == i)
                        })
                        .unwrap();
                    values[ch]
                })
                .collect();
            let gamma = [2.0f32, 3.0, 4.0, 5.0];
            let beta = [0.5f32, -0.25, 7.0, 1e-3];
            for eps in [1e-5f32, 0.0] {
                let o = run_bn(
                    &x,
                    shape,
                    layout,
                    &BnParams::new(eps).with_affine(&gamma, &beta),
                    dropnorm::Epilogue::None,
                    Momentum::PyTorch(0.1),
                );
                for (i, &y) in o.y.iter().enumerate() {
                    let ch = values.iter().position(|&v| v == x[i]).unwrap();
                    assert_eq!(
                        y, beta[ch],
                        "{isa} {layout:?} eps {eps}: constant channel {ch}"
                    );
                }
                assert_eq!(o.mean, values, "{isa} {layout:?}");
                if eps == 0.0 {
                    // var == 0 && eps == 0: invstd = 0, as PyTorch.
                    assert_eq!(o.invstd, [0.0; 4]);
                }
            }
        }
    });
}

/// More than 2^24 values in one channel: an f32 count would stop counting; the variance stays
/// within 1e-4 of f64.
fn channel_with_more_than_2_pow_24_values() {
    let shape = Shape::nc((1 << 24) + 1001, 1);
    let n = shape.numel().unwrap();
    let z = normals(n, 5);
    let x: Vec<f32> = z.iter().map(|v| (1e4 + v) as f32).collect();
    let (mean, var) = reference::mean_var(&x.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let mut st = [ChannelStats::default()];
    channel_stats(&x, &mut st, shape, Layout::Nc).unwrap();
    assert_eq!(st[0].count, n as u64);
    assert!((st[0].mean - mean).abs() <= 1e-6 * mean.abs());
    assert!(
        (st[0].var() - var).abs() / var <= 1e-4,
        "var {} vs {var}",
        st[0].var()
    );
    let o = run_bn(
        &x,
        shape,
        Layout::Nc,
        &BnParams::new(0.0),
        dropnorm::Epilogue::None,
        Momentum::Onnx(0.9),
    );
    let got_var = 1.0 / (o.invstd[0] as f64).powi(2);
    assert!(
        (got_var - var).abs() / var <= 1e-4,
        "train var {got_var} vs {var}"
    );
}

/// Hand-computed: one channel holding 1, 2, 3, 4 (mean 2.5, biased var 1.25, unbiased 5/3).
fn hand_computed_conventions() {
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let shape = Shape::nc(4, 1);
    let params = BnParams::new(0.0);
    // ONNX BatchNormalization (training_mode = 1), momentum 0.9:
    // running_mean = 0.9·0.5 + 0.1·2.5 = 0.7, running_var = 0.9·2 + 0.1·1.25 = 1.925.
    let o = run_bn(
        &x,
        shape,
        Layout::Nc,
        &params,
        dropnorm::Epilogue::None,
        Momentum::Onnx(0.9),
    );
    assert_eq!(o.mean, [2.5]);
    assert!((o.running_mean[0] - 0.7).abs() < 1e-7);
    assert!((o.running_var[0] - 1.925).abs() < 1e-6);
    let s = 1.0 / 1.25f64.sqrt();
    for (y, x) in o.y.iter().zip(x) {
        assert!((*y as f64 - (x as f64 - 2.5) * s).abs() < 1e-6);
    }
    // PyTorch momentum 0.1: running_mean = 0.9·0.5 + 0.1·2.5 = 0.7 (same), but the unbiased
    // variance: 0.9·2 + 0.1·5/3.
    let o = run_bn(
        &x,
        shape,
        Layout::Nc,
        &params,
        dropnorm::Epilogue::None,
        Momentum::PyTorch(0.1),
    );
    assert!((o.running_var[0] as f64 - (1.8 + 0.5 / 3.0)).abs() < 1e-6);
    // PyTorch momentum None, first batch: the running stats become the batch's.
    let o = run_bn(
        &x,
        shape,
        Layout::Nc,
        &params,
        dropnorm::Epilogue::None,
        Momentum::PyTorchCumulative,
    );
    assert_eq!(o.running_mean, [2.5]);
    assert!((o.running_var[0] as f64 - 5.0 / 3.0).abs() < 1e-6);
    // Momentum 0 (PyTorch) keeps the running values; 1 (ONNX) too.
    for m in [Momentum::PyTorch(0.0), Momentum::Onnx(1.0)] {
        let o = run_bn(&x, shape, Layout::Nc, &params, dropnorm::Epilogue::None, m);
        assert_eq!((o.running_mean[0], o.running_var[0]), (0.5, 2.0), "{m:?}");
    }
}

fn merged_shard_stats_equal_whole_batch_stats() {
    for layout in LAYOUTS {
        let (whole, parts): (Shape, Vec<usize>) = match layout {
            Layout::Nc => (Shape::nc(1000, 7), vec![1, 333, 500, 166]),
            _ => (Shape::nchw(10, 7, 5, 3), vec![1, 4, 2, 3]),
        };
        let x = data_for(whole, 3, 50.0, 4.0);
        let mut all = vec![ChannelStats::default(); 7];
        channel_stats(&x, &mut all, whole, layout).unwrap();
        let mut merged = vec![ChannelStats::default(); 7];
        let per_n = x.len() / whole.n;
        let mut at = 0;
        for n in parts {
            let shape = Shape { n, ..whole };
            let mut st = vec![ChannelStats::default(); 7];
            channel_stats(&x[at..at + n * per_n], &mut st, shape, layout).unwrap();
            for (m, s) in merged.iter_mut().zip(&st) {
                *m = m.merge(s).unwrap();
            }
            at += n * per_n;
        }
        // The shards' f32 lane sums round differently from the whole's: agreement to f32
        // precision (a few ulps of the data's scale) is what merging can promise.
        for (a, m) in all.iter().zip(&merged) {
            assert_eq!(a.count, m.count);
            let scale = a.mean.abs() + a.var().sqrt();
            assert!(
                (a.mean - m.mean).abs() <= 2e-7 * scale,
                "{layout:?}: {} vs {}",
                a.mean,
                m.mean
            );
            assert!(
                (a.m2 - m.m2).abs() <= 1e-6 * a.m2,
                "{layout:?}: {} vs {}",
                a.m2,
                m.m2
            );
        }
    }
}

fn errors_name_the_argument_and_write_nothing() {
    let shape = Shape::nchw(2, 3, 2, 2);
    let x = vec![1.0f32; 24];
    let g3 = [1.0f32; 3];
    let g2 = [1.0f32; 2];
    let check = |params: &BnParams,
                 shape: Shape,
                 xlen: usize,
                 c_saved: usize,
                 c_run: usize,
                 momentum: Momentum| {
        let x = vec![1.5f32; xlen];
        let mut y = vec![7.0f32; xlen];
        let (mut m, mut s) = (vec![7.0f32; c_saved], vec![7.0f32; c_saved]);
        let (mut rm, mut rv) = (vec![7.0f32; c_run], vec![7.0f32; c_run]);
        let r = batch_norm_train(
            &x,
            &mut y,
            shape,
            Layout::Nchw,
            params,
            dropnorm::Epilogue::None,
            SavedStatsMut {
                mean: &mut m,
                invstd: &mut s,
            },
            Some((
                RunningStatsMut {
                    mean: &mut rm,
                    var: &mut rv,
                    batches: &mut 0,
                },
                momentum,
            )),
        );
        assert!(
            [&y, &m, &s, &rm, &rv]
                .iter()
                .all(|v| v.iter().all(|&e| e == 7.0)),
            "written on error"
        );
        r.unwrap_err()
    };
    let ok = BnParams::new(1e-5);
    let e = check(&ok, shape, 23, 3, 3, Momentum::PyTorch(0.1));
    assert!(e.to_string().contains("`x`"), "{e}");
    let e = check(
        &ok.with_affine(&g2, &g3),
        shape,
        24,
        3,
        3,
        Momentum::PyTorch(0.1),
    );
    assert!(e.to_string().contains("`gamma`"), "{e}");
    let e = check(
        &ok.with_affine(&g3, &g2),
        shape,
        24,
        3,
        3,
        Momentum::PyTorch(0.1),
    );
    assert!(e.to_string().contains("`beta`"), "{e}");
    let e = check(&ok, shape, 24, 2, 3, Momentum::PyTorch(0.1));
    assert!(e.to_string().contains("`saved.mean`"), "{e}");
    let e = check(&ok, shape, 24, 3, 4, Momentum::PyTorch(0.1));
    assert!(e.to_string().contains("`running.mean`"), "{e}");
    for eps in [-1e-5f32, f32::NAN, f32::INFINITY] {
        let e = check(&BnParams::new(eps), shape, 24, 3, 3, Momentum::PyTorch(0.1));
        assert!(matches!(e, Error::InvalidEps { .. }), "{e:?}");
        assert!(e.to_string().contains("`eps`"));
    }
    for m in [
        Momentum::PyTorch(-0.1),
        Momentum::PyTorch(f32::NAN),
        Momentum::Onnx(1.5),
    ] {
        let e = check(&ok, shape, 24, 3, 3, m);
        assert!(matches!(e, Error::InvalidMomentum { .. }), "{m:?}: {e:?}");
    }
    // One value per channel in training: PyTorch's error.
    let e = check(
        &ok,
        Shape::nchw(1, 3, 1, 1),
        3,
        3,
        3,
        Momentum::PyTorch(0.1),
    );
    assert_eq!(e, Error::TooFewValuesPerChannel { count: 1 });
    assert!(e.to_string().contains("more than 1 value per channel"));
    // C = 0 with data, and a shape whose product overflows.
    let e = check(
        &ok,
        Shape::nchw(2, 0, 2, 2),
        8,
        0,
        0,
        Momentum::PyTorch(0.1),
    );
    assert!(matches!(e, Error::LengthMismatch { arg: "x", .. }), "{e:?}");
    let e = check(
        &ok,
        Shape::nchw(usize::MAX, 3, 2, 2),
        24,
        3,
        3,
        Momentum::PyTorch(0.1),
    );
    assert!(matches!(e, Error::ShapeOverflow { .. }), "{e:?}");
    let _ = x;
}

fn nan_and_inf_propagate() {
    let shape = Shape::nchw(2, 2, 2, 2);
    let mut x = data_for(shape, 1, 0.0, 1.0);
    x[0] = f32::NAN; // channel 0
    x[5] = f32::INFINITY; // channel 1
    for_each_isa(|isa| {
        let o = run_bn(
            &x,
            shape,
            Layout::Nchw,
            &BnParams::new(1e-5),
            dropnorm::Epilogue::None,
            Momentum::PyTorch(0.1),
        );
        assert!(o.mean[0].is_nan() && o.running_mean[0].is_nan(), "{isa}");
        assert!(
            o.y[..4].iter().all(|v| v.is_nan()),
            "{isa}: {:?}",
            &o.y[..4]
        );
    });
}

/// Outputs past the non-temporal threshold (8 MiB) take the streaming-store paths: the
/// run-interleaved NCHW kernel and the single-stream row normalization with tracked offsets.
fn non_temporal_paths_match_reference() {
    let min = testing::NT_MIN_BYTES / 4;
    let cases = [
        (shape_with_at_least(min), Layout::Nchw),
        (shape_with_at_least(min), Layout::Nhwc),
        (Shape::nc(min / 40 + 7, 40), Layout::Nc),
    ];
    for (shape, layout) in cases {
        assert!(shape.numel().unwrap() >= min);
        let x = data_for(shape, 5, 2.0, 3.0);
        let c = shape.c;
        let gamma: Vec<f32> = (0..c).map(|i| 1.0 + i as f32 * 0.01).collect();
        let beta: Vec<f32> = (0..c).map(|i| i as f32 * 0.02).collect();
        let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
        let (want, _) =
            reference::batch_norm_train(&x, shape, layout, 1e-5, Some(&gamma), Some(&beta), false);
        for_each_isa(|isa| {
            let o = run_bn(
                &x,
                shape,
                layout,
                &params,
                dropnorm::Epilogue::None,
                Momentum::PyTorch(0.1),
            );
            let err =
                o.y.iter()
                    .zip(&want)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .fold(0.0, f64::max);
            assert!(err <= 4e-5, "{isa} {layout:?}: max err {err}");
            let mut z = x.clone();
            let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
            batch_norm_train_inplace(
                &mut z,
                shape,
                layout,
                &params,
                dropnorm::Epilogue::None,
                SavedStatsMut {
                    mean: &mut m,
                    invstd: &mut s,
                },
                None,
            )
            .unwrap();
            assert!(bits(&z) == bits(&o.y), "{isa} {layout:?}: in place differs");
        });
    }
}

main_thread_checks!(
    every_isa_and_layout_matches_f64_reference,
    in_place_equals_out_of_place_and_guards_hold,
    large_offsets_keep_full_precision,
    constant_channels_give_exactly_beta,
    channel_with_more_than_2_pow_24_values,
    hand_computed_conventions,
    merged_shard_stats_equal_whole_batch_stats,
    errors_name_the_argument_and_write_nothing,
    nan_and_inf_propagate,
    non_temporal_paths_match_reference,
);
