//! Batch-norm backward: central finite differences in f64 on small shapes (x, γ, β, r), every
//! ISA × layout against the f64 formula from the same saved statistics, thread-count
//! determinism, the eval-mode backward and errors.

#![allow(clippy::needless_range_loop)] // channel indices address several parallel arrays
#![allow(clippy::too_many_arguments)] // test helpers mirror the API's argument lists

#[macro_use]
mod common;

use common::*;
use dropnorm::*;

const LAYOUTS: [Layout; 3] = [Layout::Nc, Layout::Nchw, Layout::Nhwc];

fn small_shape(layout: Layout) -> Shape {
    match layout {
        Layout::Nc => Shape::nc(6, 3),
        _ => Shape::nchw(2, 3, 2, 3),
    }
}

/// f64 training forward: `relu?(γ(x − mean)/sqrt(var + eps) + β (+ r))`.
#[allow(clippy::too_many_arguments)]
fn forward64(
    x: &[f64],
    r: Option<&[f64]>,
    shape: Shape,
    layout: Layout,
    g: &[f64],
    b: &[f64],
    eps: f64,
    relu: bool,
) -> Vec<f64> {
    let cnt = shape.n * shape.h * shape.w;
    let mut y = vec![0.0; x.len()];
    for ch in 0..shape.c {
        let idx: Vec<usize> = (0..cnt)
            .map(|j| reference::channel_index(shape, layout, ch, j))
            .collect();
        let mean = idx.iter().map(|&i| x[i]).sum::<f64>() / cnt as f64;
        let var = idx.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / cnt as f64;
        for &i in &idx {
            let mut o = g[ch] * (x[i] - mean) / (var + eps).sqrt() + b[ch];
            if let Some(r) = r {
                o += r[i];
            }
            y[i] = if relu && o < 0.0 { 0.0 } else { o };
        }
    }
    y
}

/// Runs the crate's forward (to get the saved statistics and `y`) and backward.
struct Run {
    y: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    dr: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
}

fn run(
    x: &[f32],
    r: Option<&[f32]>,
    dy: &[f32],
    shape: Shape,
    layout: Layout,
    g: &[f32],
    b: &[f32],
    relu: bool,
) -> Run {
    let c = shape.c;
    let params = BnParams::new(1e-5).with_affine(g, b);
    let (mut mean, mut invstd) = (vec![0.0f32; c], vec![0.0f32; c]);
    let mut y = vec![0.0f32; x.len()];
    let epi = epilogue(relu && r.is_none());
    batch_norm_train(
        x,
        &mut y,
        shape,
        layout,
        &params,
        epi,
        SavedStatsMut {
            mean: &mut mean,
            invstd: &mut invstd,
        },
        None,
    )
    .unwrap();
    if let Some(r) = r {
        for (yi, ri) in y.iter_mut().zip(r) {
            *yi = (*yi + ri).max(0.0);
        }
    }
    let (mut dx, mut dgamma, mut dbeta) = (
        vec![f32::NAN; x.len()],
        vec![f32::NAN; c],
        vec![f32::NAN; c],
    );
    let mut dr = vec![f32::NAN; x.len()];
    let saved = SavedStats {
        mean: &mean,
        invstd: &invstd,
    };
    let grads = BnGrads {
        dx: &mut dx,
        dgamma: &mut dgamma,
        dbeta: &mut dbeta,
    };
    match r {
        None => batch_norm_backward(
            x,
            dy,
            relu.then_some(&y[..]),
            grads,
            shape,
            layout,
            &params,
            &saved,
        )
        .unwrap(),
        Some(_) => {
            let BnGrads { dx, dgamma, dbeta } = grads;
            let grads = AddReluGrads {
                dx,
                dr: &mut dr,
                dgamma,
                dbeta,
            };
            batch_norm_add_relu_backward(x, dy, &y, grads, shape, layout, &params, &saved).unwrap()
        }
    }
    Run {
        y,
        dx,
        dgamma,
        dbeta,
        dr,
        mean,
        invstd,
    }
}

fn gradients_match_central_finite_differences() {
    for layout in LAYOUTS {
        let shape = small_shape(layout);
        let n = shape.numel().unwrap();
        let c = shape.c;
        let x: Vec<f32> = normals(n, 1).iter().map(|v| (1.0 + v) as f32).collect();
        let r: Vec<f32> = normals(n, 2).iter().map(|v| (0.5 * v) as f32).collect();
        let w: Vec<f32> = normals(n, 3).iter().map(|v| *v as f32).collect();
        let g = [1.5f32, 0.5, -2.0];
        let b = [0.1f32, -0.3, 0.2];
        for (relu, add) in [(false, false), (true, false), (true, true)] {
            let rr = add.then_some(&r[..]);
            let got = run(&x, rr, &w, shape, layout, &g, &b, relu);
            let f64v = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
            let (x64, r64, w64, g64, b64) = (f64v(&x), f64v(&r), f64v(&w), f64v(&g), f64v(&b));
            let loss = |x: &[f64], r: &[f64], g: &[f64], b: &[f64]| -> f64 {
                let y = forward64(x, add.then_some(r), shape, layout, g, b, 1e-5, relu);
                y.iter().zip(&w64).map(|(a, b)| a * b).sum()
            };
            let h = 1e-6;
            let what = format!("{layout:?} relu {relu} add {add}");
            for i in 0..n {
                let (mut p, mut m) = (x64.clone(), x64.clone());
                p[i] += h;
                m[i] -= h;
                let num = (loss(&p, &r64, &g64, &b64) - loss(&m, &r64, &g64, &b64)) / (2.0 * h);
                assert!(
                    (got.dx[i] as f64 - num).abs() <= 2e-3 * (1.0 + num.abs()),
                    "{what}: dx[{i}] {} vs {num}",
                    got.dx[i]
                );
                if add {
                    let (mut p, mut m) = (r64.clone(), r64.clone());
                    p[i] += h;
                    m[i] -= h;
                    let num = (loss(&x64, &p, &g64, &b64) - loss(&x64, &m, &g64, &b64)) / (2.0 * h);
                    assert!(
                        (got.dr[i] as f64 - num).abs() <= 1e-4 * (1.0 + num.abs()),
                        "{what}: dr[{i}]"
                    );
                }
            }
            for ch in 0..c {
                let (mut p, mut m) = (g64.clone(), g64.clone());
                p[ch] += h;
                m[ch] -= h;
                let num = (loss(&x64, &r64, &p, &b64) - loss(&x64, &r64, &m, &b64)) / (2.0 * h);
                assert!(
                    (got.dgamma[ch] as f64 - num).abs() <= 2e-3 * (1.0 + num.abs()),
                    "{what}: dgamma[{ch}] {} vs {num}",
                    got.dgamma[ch]
                );
                let (mut p, mut m) = (b64.clone(), b64.clone());
                p[ch] += h;
                m[ch] -= h;
                let num = (loss(&x64, &r64, &g64, &p) - loss(&x64, &r64, &g64, &m)) / (2.0 * h);
                assert!(
                    (got.dbeta[ch] as f64 - num).abs() <= 1e-4 * (1.0 + num.abs()),
                    "{what}: dbeta[{ch}]"
                );
            }
        }
    }
}

/// The f64 backward formula from the same inputs and saved statistics.
fn reference_backward(
    x: &[f32],
    dy: &[f32],
    y: Option<&[f32]>,
    shape: Shape,
    layout: Layout,
    g: &[f32],
    mean: &[f32],
    invstd: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let cnt = shape.n * shape.h * shape.w;
    let mut dx = vec![0.0; x.len()];
    let (mut dg, mut db) = (vec![0.0; shape.c], vec![0.0; shape.c]);
    for ch in 0..shape.c {
        let idx: Vec<usize> = (0..cnt)
            .map(|j| reference::channel_index(shape, layout, ch, j))
            .collect();
        let d = |i: usize| {
            if y.is_some_and(|y| y[i].partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)) {
                0.0
            } else {
                dy[i] as f64
            }
        };
        let (m, is) = (mean[ch] as f64, invstd[ch] as f64);
        let sdy: f64 = idx.iter().map(|&i| d(i)).sum();
        let sdyx: f64 = idx.iter().map(|&i| d(i) * (x[i] as f64 - m)).sum();
        db[ch] = sdy;
        dg[ch] = sdyx * is;
        let gc = g[ch] as f64;
        for &i in &idx {
            let xhat = (x[i] as f64 - m) * is;
            dx[i] = gc * is / cnt as f64 * (cnt as f64 * d(i) - sdy - xhat * sdyx * is);
        }
    }
    (dx, dg, db)
}

fn shapes(layout: Layout) -> Vec<Shape> {
    match layout {
        Layout::Nc => [
            (2, 1),
            (5, 16),
            (7, 17),
            (9, 63),
            (40, 32),
            (3, 65),
            (33, 130),
            (4, 200),
            // Rows wider than 2 Ki columns: dx a band of columns at a time (bands of 704
            // and 672 columns; of 1024).
            (3, 2080),
            (2, 4096),
        ]
        .into_iter()
        .map(|(n, c)| Shape::nc(n, c))
        .collect(),
        _ => [
            (1, 1, 2, 1),
            (2, 3, 4, 5),
            (2, 17, 4, 4),
            (4, 5, 1, 17),
            (2, 3, 31, 33),
            (1, 66, 2, 3),
            (1, 2080, 1, 3),
        ]
        .into_iter()
        .map(|(n, c, h, w)| Shape::nchw(n, c, h, w))
        .collect(),
    }
}

fn every_isa_and_layout_matches_f64_formula() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                let n = shape.numel().unwrap();
                let c = shape.c;
                let x: Vec<f32> = normals(n, si as u64)
                    .iter()
                    .map(|v| (3.0 + 2.0 * v) as f32)
                    .collect();
                let dy: Vec<f32> = normals(n, si as u64 + 50)
                    .iter()
                    .map(|v| *v as f32)
                    .collect();
                let g: Vec<f32> = (0..c).map(|i| 0.5 + (i % 3) as f32).collect();
                let b: Vec<f32> = (0..c).map(|i| (i % 4) as f32 * 0.2 - 0.3).collect();
                let r: Vec<f32> = normals(n, si as u64 + 90)
                    .iter()
                    .map(|v| (0.5 * v) as f32)
                    .collect();
                // Plain, through a fused ReLU, and through add+ReLU (dr = dy where y > 0).
                for (relu, res) in [(false, None), (true, None), (true, Some(&r[..]))] {
                    let got = run(&x, res, &dy, shape, layout, &g, &b, relu);
                    let yy = relu.then_some(&got.y[..]);
                    let (dx, dg, db) =
                        reference_backward(&x, &dy, yy, shape, layout, &g, &got.mean, &got.invstd);
                    let what = format!(
                        "{isa} {layout:?} {shape:?} relu {relu} res {}",
                        res.is_some()
                    );
                    if res.is_some() {
                        for i in 0..n {
                            let want = if got.y[i] > 0.0 { dy[i] } else { 0.0 };
                            assert_eq!(got.dr[i].to_bits(), want.to_bits(), "{what}: dr[{i}]");
                        }
                    }
                    let scale = dx.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1.0);
                    for i in 0..n {
                        assert!(
                            (got.dx[i] as f64 - dx[i]).abs() <= 1e-5 * scale,
                            "{what}: dx[{i}] {} vs {}",
                            got.dx[i],
                            dx[i]
                        );
                    }
                    for ch in 0..c {
                        assert!(
                            (got.dgamma[ch] as f64 - dg[ch]).abs()
                                <= 1e-5 * (1.0 + dg[ch].abs()) * (n / c) as f64,
                            "{what}: dgamma"
                        );
                        assert!(
                            (got.dbeta[ch] as f64 - db[ch]).abs()
                                <= 1e-5 * (1.0 + db[ch].abs()) * (n / c) as f64,
                            "{what}: dbeta"
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn identical_bits_for_1_2_3_threads() {
    for (shape, layout) in [
        (Shape::nchw(4, 24, 33, 31), Layout::Nchw),
        (Shape::nchw(4, 24, 33, 31), Layout::Nhwc),
        (Shape::nc(3001, 70), Layout::Nc),
        // One statistics chunk of wide rows (640 Ki values): its column segments split among
        // the threads.
        (Shape::nc(40, 16384), Layout::Nc),
    ] {
        let n = shape.numel().unwrap();
        let x: Vec<f32> = normals(n, 1).iter().map(|v| *v as f32).collect();
        let dy: Vec<f32> = normals(n, 2).iter().map(|v| *v as f32).collect();
        let r: Vec<f32> = normals(n, 3).iter().map(|v| *v as f32).collect();
        let g = vec![1.25f32; shape.c];
        let b = vec![0.1f32; shape.c];
        for isa in Isa::available() {
            let runs: Vec<_> = [1, 2, 3]
                .into_iter()
                .map(|t| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(t)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        with_isa(isa, || {
                            let o = run(&x, Some(&r), &dy, shape, layout, &g, &b, true);
                            [bits(&o.dx), bits(&o.dr), bits(&o.dgamma), bits(&o.dbeta)]
                        })
                    })
                    .unwrap()
                })
                .collect();
            assert!(runs[1] == runs[0] && runs[2] == runs[0], "{isa} {layout:?}");
        }
    }
}

/// Eval-mode gradients as PyTorch (module in `eval()`, parameters requiring grad):
/// dγ = Σdy·(x − rm)·invstd_r, dβ = Σdy, dx = dy·γ·invstd_r — and through a fused ReLU the
/// gradient flows only where the eval output is positive. Every ISA and layout, against f64.
fn eval_backward_matches_pytorch_eval_gradients() {
    for layout in LAYOUTS {
        let shape = shapes(layout)[2];
        let n = shape.numel().unwrap();
        let c = shape.c;
        let x: Vec<f32> = normals(n, 9).iter().map(|v| (100.0 + v) as f32).collect();
        let dy: Vec<f32> = normals(n, 8).iter().map(|v| *v as f32).collect();
        let g: Vec<f32> = (0..c).map(|i| 1.0 + i as f32).collect();
        let b: Vec<f32> = (0..c).map(|i| 0.25 * i as f32 - 0.5).collect();
        let var: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.25).collect();
        let mean: Vec<f32> = (0..c).map(|i| 100.0 + 0.1 * i as f32).collect();
        let stats = RunningStats {
            mean: &mean,
            var: &var,
        };
        for relu in [false, true] {
            let params = BnParams::new(1e-5).with_affine(&g, &b);
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; n];
                with_isa(isa, || {
                    batch_norm_infer(&x, &mut y, shape, layout, &params, epilogue(relu), &stats)
                })
                .unwrap()
                .unwrap();
                let (mut dx, mut dg, mut db) =
                    (vec![f32::NAN; n], vec![f32::NAN; c], vec![f32::NAN; c]);
                let grads = BnGrads {
                    dx: &mut dx,
                    dgamma: &mut dg,
                    dbeta: &mut db,
                };
                let yr = relu.then_some(&y[..]);
                with_isa(isa, || {
                    batch_norm_backward_eval(&x, &dy, yr, grads, shape, layout, &params, &stats)
                })
                .unwrap()
                .unwrap();
                for ch in 0..c {
                    let is = 1.0 / (var[ch] as f64 + 1e-5).sqrt();
                    let a = g[ch] as f64 * is;
                    let (mut sdy, mut sdyx, mut scale) = (0.0f64, 0.0f64, 0.0f64);
                    for j in 0..n / c {
                        let i = reference::channel_index(shape, layout, ch, j);
                        let flows = !relu || y[i] > 0.0;
                        let d = if !flows { 0.0 } else { dy[i] as f64 };
                        let xh = (x[i] as f64 - mean[ch] as f64) * is;
                        sdy += d;
                        sdyx += d * xh;
                        scale += d.abs() * (1.0 + xh.abs());
                        let want = d * a;
                        assert!(
                            (dx[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                            "{isa} {layout:?} relu={relu} dx[{i}] = {} want {want}",
                            dx[i]
                        );
                    }
                    let tol = 1e-5 * (1.0 + scale);
                    assert!((db[ch] as f64 - sdy).abs() <= tol, "{isa} {layout:?} dbeta");
                    assert!(
                        (dg[ch] as f64 - sdyx).abs() <= tol,
                        "{isa} {layout:?} dgamma"
                    );
                }
            }
        }
    }
}

/// A hand-computed case of PyTorch's eval-mode gradients (`nn.BatchNorm1d(1).eval()`,
/// running_mean 0.5, running_var 4, weight 2, bias 0, eps 0): x = [1, 2, 4], dy = [1, −1, 0.5]
/// give dγ = 0.375, dβ = 0.5, dx = [1, −1, 0.5] — exact in f32.
fn eval_backward_reference_case() {
    let x = [1.0f32, 2.0, 4.0];
    let dy = [1.0f32, -1.0, 0.5];
    let stats = RunningStats {
        mean: &[0.5],
        var: &[4.0],
    };
    let params = BnParams::new(0.0).with_affine(&[2.0], &[0.0]);
    let (mut dx, mut dg, mut db) = ([0.0f32; 3], [0.0f32], [0.0f32]);
    let grads = BnGrads {
        dx: &mut dx,
        dgamma: &mut dg,
        dbeta: &mut db,
    };
    batch_norm_backward_eval(
        &x,
        &dy,
        None,
        grads,
        Shape::nc(3, 1),
        Layout::Nc,
        &params,
        &stats,
    )
    .unwrap();
    // x̂ = (x − 0.5)/2 = [0.25, 0.75, 1.75]; Σdy·x̂ = 0.25 − 0.75 + 0.875.
    assert_eq!((dg[0], db[0]), (0.375, 0.5));
    assert_eq!(dx, [1.0, -1.0, 0.5]);
}

fn errors_name_the_argument_and_write_nothing() {
    let shape = Shape::nchw(2, 3, 2, 2);
    let x = vec![1.0f32; 24];
    let (m, s) = ([0.0f32; 3], [1.0f32; 3]);
    let saved = SavedStats {
        mean: &m,
        invstd: &s,
    };
    let (mut dx, mut dg, mut db) = (vec![7.0f32; 24], [7.0f32; 3], [7.0f32; 3]);
    let e = batch_norm_backward(
        &x,
        &x,
        Some(&x[..23]),
        BnGrads {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: &mut db,
        },
        shape,
        Layout::Nchw,
        &BnParams::new(1e-5),
        &saved,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`y`"), "{e}");
    let e = batch_norm_backward(
        &x,
        &x[..20],
        None,
        BnGrads {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: &mut db,
        },
        shape,
        Layout::Nchw,
        &BnParams::new(1e-5),
        &saved,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`dy`"), "{e}");
    let other = SavedStats {
        mean: &m[..2],
        invstd: &s,
    };
    let e = batch_norm_backward(
        &x,
        &x,
        None,
        BnGrads {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: &mut db,
        },
        shape,
        Layout::Nchw,
        &BnParams::new(1e-5),
        &other,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`saved.mean`"), "{e}");
    let mut dr = vec![7.0f32; 23];
    let e = batch_norm_add_relu_backward(
        &x,
        &x,
        &x,
        AddReluGrads {
            dx: &mut dx,
            dr: &mut dr,
            dgamma: &mut dg,
            dbeta: &mut db,
        },
        shape,
        Layout::Nchw,
        &BnParams::new(1e-5),
        &saved,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`grads.dr`"), "{e}");
    assert!(
        dx.iter()
            .chain(&dg)
            .chain(&db)
            .chain(&dr)
            .all(|&v| v == 7.0)
    );
}

/// The training forward with residual add + ReLU in one pass equals the training forward
/// followed by the add and the ReLU, bit for bit (same statistics, one rounding of the sum).
fn add_relu_train_equals_train_then_add_relu() {
    for layout in LAYOUTS {
        for shape in shapes(layout) {
            check_add_relu_train(shape, layout);
        }
    }
}

/// The same past the non-temporal threshold (two-input kernels stream from a smaller size
/// than that, so this covers their streaming path too).
fn add_relu_train_non_temporal_equals_train_then_add_relu() {
    let shape = shape_with_at_least(testing::NT_MIN_BYTES / 4);
    for layout in [Layout::Nchw, Layout::Nhwc] {
        check_add_relu_train(shape, layout);
    }
}

fn check_add_relu_train(shape: Shape, layout: Layout) {
    let n = shape.numel().unwrap();
    let c = shape.c;
    let x: Vec<f32> = normals(n, 4).iter().map(|v| (1.0 + v) as f32).collect();
    let r: Vec<f32> = normals(n, 5).iter().map(|v| *v as f32).collect();
    let g = vec![1.5f32; c];
    let b = vec![-0.25f32; c];
    let params = BnParams::new(1e-5).with_affine(&g, &b);
    for_each_isa(|isa| {
        let mk = || {
            (
                vec![0.0f32; c],
                vec![0.0f32; c],
                vec![0.0f32; c],
                vec![1.0f32; c],
            )
        };
        let (mut m1, mut s1, mut rm1, mut rv1) = mk();
        let mut y1 = vec![f32::NAN; n];
        batch_norm_add_relu_train(
            &x,
            &r,
            &mut y1,
            shape,
            layout,
            &params,
            SavedStatsMut {
                mean: &mut m1,
                invstd: &mut s1,
            },
            Some((
                RunningStatsMut {
                    mean: &mut rm1,
                    var: &mut rv1,
                    batches: &mut 0,
                },
                Momentum::PyTorch(0.1),
            )),
        )
        .unwrap();
        let (mut m2, mut s2, mut rm2, mut rv2) = mk();
        let mut y2 = vec![f32::NAN; n];
        batch_norm_train(
            &x,
            &mut y2,
            shape,
            layout,
            &params,
            dropnorm::Epilogue::None,
            SavedStatsMut {
                mean: &mut m2,
                invstd: &mut s2,
            },
            Some((
                RunningStatsMut {
                    mean: &mut rm2,
                    var: &mut rv2,
                    batches: &mut 0,
                },
                Momentum::PyTorch(0.1),
            )),
        )
        .unwrap();
        for (v, rr) in y2.iter_mut().zip(&r) {
            *v = (*v + rr).max(0.0);
        }
        let what = format!("{isa} {layout:?} {shape:?}");
        assert_eq!(bits(&y1), bits(&y2), "{what}");
        assert_eq!(
            (bits(&m1), bits(&s1), bits(&rm1), bits(&rv1)),
            (bits(&m2), bits(&s2), bits(&rm2), bits(&rv2)),
            "{what}"
        );
    });
}

/// Past the non-temporal threshold, backward streams `dx` with non-temporal stores.
fn non_temporal_backward_matches_formula() {
    let min = testing::NT_MIN_BYTES / 4;
    for (shape, layout) in [
        (shape_with_at_least(min), Layout::Nchw),
        (shape_with_at_least(min), Layout::Nhwc),
        (Shape::nc(min / 40 + 3, 40), Layout::Nc),
    ] {
        let n = shape.numel().unwrap();
        let x: Vec<f32> = normals(n, 6).iter().map(|v| *v as f32).collect();
        let dy: Vec<f32> = normals(n, 7).iter().map(|v| *v as f32).collect();
        let g = vec![1.0f32; shape.c];
        let b = vec![0.0f32; shape.c];
        for_each_isa(|isa| {
            let got = run(&x, None, &dy, shape, layout, &g, &b, false);
            let (dx, _, _) =
                reference_backward(&x, &dy, None, shape, layout, &g, &got.mean, &got.invstd);
            let err = got
                .dx
                .iter()
                .zip(&dx)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(err <= 1e-4, "{isa} {layout:?}: {err}");
        });
    }
}

main_thread_checks!(
    gradients_match_central_finite_differences,
    every_isa_and_layout_matches_f64_formula,
    eval_backward_matches_pytorch_eval_gradients,
    eval_backward_reference_case,
    errors_name_the_argument_and_write_nothing,
    add_relu_train_equals_train_then_add_relu,
    add_relu_train_non_temporal_equals_train_then_add_relu,
    non_temporal_backward_matches_formula,
);
