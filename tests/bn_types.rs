//! Batch norm over bf16 and f16 activations, on every ISA and layout: inference and the
//! training forward (one call, in place, add+ReLU, statistics then apply) give the f32
//! kernel's output on the widened inputs, narrowed (round to nearest even), bit for bit — the
//! arithmetic is the f32 kernel's, on the same constants — and the training statistics are
//! the f32 kernel's on the widened values; so within one ulp of the type of the narrowed f64
//! result; odd starts and guards; the same bits on 1, 2 and 3 threads; bad input writes
//! nothing.

#[macro_use]
mod common;

use common::*;
use dropnorm::{
    AddReluGrads, BnGrads, BnParams, ChannelStats, Epilogue, GradSums, Layout, Momentum,
    RunningStats, RunningStatsMut, SavedStats, SavedStatsMut, Shape, batch_norm_add_relu_apply,
    batch_norm_add_relu_backward, batch_norm_add_relu_infer, batch_norm_add_relu_train,
    batch_norm_apply, batch_norm_backward, batch_norm_backward_apply, batch_norm_backward_eval,
    batch_norm_backward_sums, batch_norm_infer, batch_norm_infer_inplace, batch_norm_train,
    batch_norm_train_inplace, bf16, channel_stats, f16, with_isa,
};

const LAYOUTS: [Layout; 3] = [Layout::Nc, Layout::Nchw, Layout::Nhwc];

fn raw<E: Half>(v: &[E]) -> Vec<u16> {
    v.iter().map(|e| e.raw()).collect()
}

/// Shapes with every path: NCHW runs (odd planes), NCHW with `H·W = 1` (the NC path), NC/NHWC
/// with a channel count dividing 64 (constants in registers) and not, more than 64 channels.
fn shapes(layout: Layout) -> Vec<Shape> {
    let mut s = vec![
        Shape::nchw(2, 3, 5, 7),
        Shape::nchw(3, 16, 4, 4),
        Shape::nchw(2, 70, 3, 3),
        Shape::nchw(9, 5, 1, 1),
        Shape::nchw(4, 32, 9, 9),
        // Wide rows (more than 2 Ki columns, a multiple of 16): bands of columns.
        Shape::nchw(3, 2080, 1, 1),
    ];
    if layout == Layout::Nc {
        s.iter_mut()
            .for_each(|s| *s = Shape::nc(s.n * s.h * s.w, s.c));
    }
    s
}

/// Data in the type: normal values around a per-tensor offset, a few specials, among them
/// signalling NaNs (every 89th element: the kernels may load `x` without quieting them,
/// leaving that to the arithmetic, so the bits must still be those of the f32 kernel on
/// the quietly widened values). Every other NaN is the signalling one's quiet twin: where
/// two NaNs meet in one operation (x and the residual) the one returned depends on operand
/// order, which the compiler may choose differently per element type.
fn data_in<E: Half>(n: usize, salt: u64) -> Vec<E> {
    let snan = E::from_raw(E::SNAN);
    let qnan = E::of(snan.wide());
    data(n, salt)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if i % 89 == 17 {
                snan
            } else if v.is_nan() {
                qnan
            } else {
                E::of(v * 3.0 + 1.0)
            }
        })
        .collect()
}

/// Inference (kind 0), in place (1) or add+ReLU (2) of `x` (residual `r`) in `E`, and the f32
/// kernel on the widened inputs, narrowed.
#[allow(clippy::too_many_arguments)]
fn both<E: Half>(
    x: &[E],
    r: &[E],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    stats: &RunningStats,
    relu: bool,
    kind: u8,
) -> (Vec<u16>, Vec<u16>) {
    let n = x.len();
    let ep = epilogue(relu);
    let mut y = vec![E::of(-5.0); n + 2];
    let out = &mut y[1..n + 1];
    match kind {
        0 => batch_norm_infer(x, out, shape, layout, params, ep, stats).unwrap(),
        1 => {
            out.copy_from_slice(x);
            batch_norm_infer_inplace(out, shape, layout, params, ep, stats).unwrap()
        }
        _ => batch_norm_add_relu_infer(x, r, out, shape, layout, params, stats).unwrap(),
    }
    let guard = E::of(-5.0).raw();
    assert_eq!((y[0].raw(), y[n + 1].raw()), (guard, guard), "guards");
    let xw: Vec<f32> = x.iter().map(|v| v.wide()).collect();
    let rw: Vec<f32> = r.iter().map(|v| v.wide()).collect();
    let mut yw = vec![0.0f32; n];
    match kind {
        2 => batch_norm_add_relu_infer(&xw, &rw, &mut yw, shape, layout, params, stats).unwrap(),
        _ => batch_norm_infer(&xw, &mut yw, shape, layout, params, ep, stats).unwrap(),
    }
    let want = yw.iter().map(|&v| E::of(v).raw()).collect();
    (raw(&y[1..n + 1]), want)
}

fn check_type<E: Half>(name: &str) {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                let n = shape.numel().unwrap();
                let c = shape.c;
                // An odd start: the tensor 2 bytes past its allocation's alignment.
                let xs = data_in::<E>(n + 1, si as u64);
                let (x, r) = (&xs[1..], data_in::<E>(n, 50 + si as u64));
                let mean: Vec<f32> = (0..c).map(|i| 1.0 + i as f32 * 0.125).collect();
                let var: Vec<f32> = (0..c).map(|i| 2.0 + (i % 7) as f32).collect();
                let stats = RunningStats {
                    mean: &mean,
                    var: &var,
                };
                let (g, b): (Vec<f32>, Vec<f32>) = (0..c)
                    .map(|i| (0.5 + i as f32 * 0.01, i as f32 * 0.1 - 1.0))
                    .unzip();
                for params in [BnParams::new(1e-5), BnParams::new(1e-3).with_affine(&g, &b)] {
                    for relu in [false, true] {
                        for kind in 0..3u8 {
                            let (got, want) =
                                both(x, &r, shape, layout, &params, &stats, relu, kind);
                            assert!(
                                got == want,
                                "{isa} {name} {layout:?} {shape:?} relu {relu} kind {kind}"
                            );
                        }
                    }
                }
            }
        }
    });
}

fn bf16_and_f16_inference_is_the_f32_kernel_narrowed() {
    check_type::<bf16>("bf16");
    check_type::<f16>("f16");
}

/// Against f64: within one ulp of the type of the exact result narrowed (the f32 kernel is
/// within a few f32 ulps of f64, and narrowing can then land on either side of a tie).
fn bf16_inference_within_one_ulp_of_f64() {
    let shape = Shape::nchw(4, 3, 6, 5);
    let n = shape.numel().unwrap();
    let x = data_in::<bf16>(n, 9);
    let (mean, var) = ([0.5f32, -1.0, 2.0], [1.5f32, 4.0, 0.25]);
    let stats = RunningStats {
        mean: &mean,
        var: &var,
    };
    let params = BnParams::new(1e-5);
    for layout in [Layout::Nchw, Layout::Nhwc] {
        for_each_isa(|isa| {
            let mut y = vec![bf16::ZERO; n];
            batch_norm_infer(&x, &mut y, shape, layout, &params, Epilogue::None, &stats).unwrap();
            for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
                let ch = match layout {
                    Layout::Nchw => i / 30 % 3,
                    _ => i % 3,
                };
                let exact = (xv.to_f64() - mean[ch] as f64) / (var[ch] as f64 + 1e-5).sqrt();
                let want = bf16::from_f64(exact);
                if !exact.is_finite() {
                    assert!(!yv.to_f32().is_finite() || yv.is_nan(), "{isa} [{i}]");
                    continue;
                }
                let ulps = (yv.to_bits() as i32 - want.to_bits() as i32).abs();
                assert!(
                    ulps <= 1,
                    "{isa} {layout:?} [{i}]: {yv} vs {want} ({exact})"
                );
            }
        });
    }
}

/// A bad argument writes nothing into a 16-bit output either.
fn typed_errors_write_nothing() {
    let shape = Shape::nc(4, 2);
    let x = vec![bf16::ONE; 8];
    let stats = RunningStats {
        mean: &[0.0, 0.0],
        var: &[1.0, -1.0],
    };
    let mut y = vec![bf16::from_bits(0x1234); 8];
    let p = BnParams::new(0.0);
    let e = batch_norm_infer(&x, &mut y, shape, Layout::Nc, &p, Epilogue::None, &stats);
    assert!(
        e.is_err() && y.iter().all(|v| v.to_bits() == 0x1234),
        "{e:?}"
    );
    let stats = RunningStats {
        mean: &[0.0, 0.0],
        var: &[1.0, 1.0],
    };
    let e = batch_norm_infer(
        &x,
        &mut y[..7],
        shape,
        Layout::Nc,
        &p,
        Epilogue::None,
        &stats,
    );
    assert!(
        e.is_err() && y.iter().all(|v| v.to_bits() == 0x1234),
        "{e:?}"
    );
}

/// Everything a training forward writes: the output's bits and the saved and running
/// statistics' bits.
type TrainOut = (Vec<u16>, Vec<u32>);

/// The training forward of kind 0 (out of place), 1 (in place), 2 (add+ReLU), 3 (statistics
/// then apply), 4 (statistics then add+ReLU apply) over `x`, residual `r`, in any element type; the output narrowed to `E`.
#[allow(clippy::too_many_arguments)]
fn train_in<T: dropnorm::Element, E: Half>(
    x: &[T],
    r: &[T],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    relu: bool,
    kind: u8,
    to_e: impl Fn(&[T]) -> Vec<E>,
) -> TrainOut {
    let c = shape.c;
    let (mut mean, mut invstd) = (vec![f32::NAN; c], vec![f32::NAN; c]);
    let (mut rm, mut rv, mut batches) = (vec![0.5f32; c], vec![2.0f32; c], 2u64);
    let saved = SavedStatsMut {
        mean: &mut mean,
        invstd: &mut invstd,
    };
    let running = RunningStatsMut {
        mean: &mut rm,
        var: &mut rv,
        batches: &mut batches,
    };
    let running = Some((running, Momentum::PyTorch(0.1)));
    let ep = epilogue(relu);
    let mut y = x.to_vec();
    match kind {
        0 => batch_norm_train(x, &mut y, shape, layout, params, ep, saved, running),
        1 => batch_norm_train_inplace(&mut y, shape, layout, params, ep, saved, running),
        2 => batch_norm_add_relu_train(x, r, &mut y, shape, layout, params, saved, running),
        _ => {
            let mut st = vec![ChannelStats::default(); c];
            channel_stats(x, &mut st, shape, layout).unwrap();
            if kind == 3 {
                batch_norm_apply(x, &mut y, shape, layout, params, ep, &st, saved, running)
            } else {
                batch_norm_add_relu_apply(x, r, &mut y, shape, layout, params, &st, saved, running)
            }
        }
    }
    .unwrap();
    // NaN payloads are not part of the contract (README, Determinism): NaNs compare equal.
    let stats = mean.iter().chain(&invstd).chain(&rm).chain(&rv);
    let stats = stats.map(|v| {
        if v.is_nan() {
            f32::NAN.to_bits()
        } else {
            v.to_bits()
        }
    });
    let y = to_e(&y)
        .iter()
        .map(|v| if v.wide().is_nan() { 0x7FFF } else { v.raw() })
        .collect();
    (y, stats.collect())
}

fn check_train<E: Half>(name: &str) {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                let n = shape.numel().unwrap();
                // Finite data (a NaN would make a channel's statistics NaN and hide the rest),
                // far from zero mean, and one tensor with the specials.
                let finite = |n: usize, salt: u64| -> Vec<E> {
                    normals(n, salt)
                        .iter()
                        .map(|v| E::of((20.0 + 3.0 * v) as f32))
                        .collect()
                };
                let xs = if si == 0 {
                    data_in::<E>(n + 1, 7)
                } else {
                    finite(n + 1, 7 + si as u64)
                };
                let (x, r) = (&xs[1..], finite(n, 70 + si as u64));
                let xw: Vec<f32> = x.iter().map(|v| v.wide()).collect();
                let rw: Vec<f32> = r.iter().map(|v| v.wide()).collect();
                let (g, b): (Vec<f32>, Vec<f32>) = (0..shape.c)
                    .map(|i| (0.5 + i as f32 * 0.01, i as f32 * 0.1 - 1.0))
                    .unzip();
                let params = BnParams::new(1e-5).with_affine(&g, &b);
                for relu in [false, true] {
                    for kind in 0..5u8 {
                        let same = |v: &[E]| v.to_vec();
                        let narrowed = |v: &[f32]| v.iter().map(|&f| E::of(f)).collect();
                        let got = train_in(x, &r, shape, layout, &params, relu, kind, same);
                        let want = train_in(&xw, &rw, shape, layout, &params, relu, kind, narrowed);
                        assert!(
                            got == want,
                            "{isa} {name} {layout:?} {shape:?} relu {relu} kind {kind}: y {} stats {} {:?}",
                            got.0 == want.0,
                            got.1 == want.1,
                            got.1.iter().zip(&want.1).position(|(a, b)| a != b)
                        );
                    }
                }
            }
        }
    });
}

/// The training forward (one call, in place, add+ReLU, statistics then apply) over bf16 and
/// f16: the statistics of the widened values, bit for bit those of the f32 kernel on them,
/// and its output narrowed.
fn bf16_and_f16_training_is_the_f32_kernel_narrowed() {
    check_train::<bf16>("bf16");
    check_train::<f16>("f16");
}

/// Backward of kind 0 (one call), 1 (add+ReLU: also `dr`), 2 (eval mode), 3 (sums then
/// apply), over `x`, `dy` and the forward output `y` (used with a ReLU), in any element type:
/// `dx` (and `dr`) narrowed to `E`, and the bits of `dγ`, `dβ`.
#[allow(clippy::too_many_arguments)]
fn backward_in<T: dropnorm::Element, E: Half>(
    x: &[T],
    dy: &[T],
    y: Option<&[T]>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    kind: u8,
    to_e: impl Fn(&[T]) -> Vec<E>,
) -> TrainOut {
    let (n, c) = (x.len(), shape.c);
    let mean: Vec<f32> = (0..c).map(|i| 20.0 + i as f32 * 0.01).collect();
    let invstd: Vec<f32> = (0..c).map(|i| 1.0 / (3.0 + (i % 5) as f32)).collect();
    let saved = SavedStats {
        mean: &mean,
        invstd: &invstd,
    };
    let mut dx = x.to_vec();
    let mut dr = x.to_vec();
    let (mut dg, mut db) = (vec![f32::NAN; c], vec![f32::NAN; c]);
    let grads = BnGrads {
        dx: &mut dx,
        dgamma: &mut dg,
        dbeta: &mut db,
    };
    match kind {
        0 => batch_norm_backward(x, dy, y, grads, shape, layout, params, &saved),
        1 => {
            let grads = AddReluGrads {
                dx: grads.dx,
                dr: &mut dr,
                dgamma: grads.dgamma,
                dbeta: grads.dbeta,
            };
            let y = y.unwrap_or(x);
            batch_norm_add_relu_backward(x, dy, y, grads, shape, layout, params, &saved)
        }
        2 => {
            let stats = RunningStats {
                mean: &mean,
                var: &invstd,
            };
            batch_norm_backward_eval(x, dy, y, grads, shape, layout, params, &stats)
        }
        _ => {
            let mut sums = vec![GradSums::default(); c];
            batch_norm_backward_sums(x, dy, y, &mut sums, shape, layout, &saved).unwrap();
            batch_norm_backward_apply(x, dy, y, grads, shape, layout, params, &saved, &sums)
        }
    }
    .unwrap();
    let canon = |v: &[T]| -> Vec<u16> {
        to_e(v)
            .iter()
            .map(|e| if e.wide().is_nan() { 0x7FFF } else { e.raw() })
            .collect()
    };
    let mut out = canon(&dx);
    if kind == 1 {
        out.extend(canon(&dr));
    }
    let g = dg.iter().chain(&db);
    let g = g.map(|v| {
        if v.is_nan() {
            f32::NAN.to_bits()
        } else {
            v.to_bits()
        }
    });
    assert_eq!(n, x.len());
    (out, g.collect())
}

fn check_backward<E: Half>(name: &str) {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                let n = shape.numel().unwrap();
                let finite = |n: usize, salt: u64, mid: f64| -> Vec<E> {
                    normals(n, salt)
                        .iter()
                        .map(|v| E::of((mid + 3.0 * v) as f32))
                        .collect()
                };
                let xs = finite(n + 1, 11 + si as u64, 20.0);
                let x = &xs[1..];
                let dy = finite(n, 90 + si as u64, 0.0);
                let yf = finite(n, 40 + si as u64, 0.0); // a forward output: half positive
                let wide = |v: &[E]| v.iter().map(|e| e.wide()).collect::<Vec<f32>>();
                let (xw, dyw, yw) = (wide(x), wide(&dy), wide(&yf));
                let g: Vec<f32> = (0..shape.c).map(|i| 0.5 + i as f32 * 0.01).collect();
                let params = BnParams::new(1e-5).with_affine(&g, &g);
                for relu in [false, true] {
                    for kind in 0..4u8 {
                        let same = |v: &[E]| v.to_vec();
                        let narrowed = |v: &[f32]| v.iter().map(|&f| E::of(f)).collect();
                        let (y, ywo) = (relu.then_some(&yf[..]), relu.then_some(&yw[..]));
                        let got = backward_in(x, &dy, y, shape, layout, &params, kind, same);
                        let want =
                            backward_in(&xw, &dyw, ywo, shape, layout, &params, kind, narrowed);
                        assert!(
                            got == want,
                            "{isa} {name} {layout:?} {shape:?} relu {relu} kind {kind}"
                        );
                    }
                }
            }
        }
    });
}

/// Every backward (one call, add+ReLU with `dr`, eval mode, sums then apply) over bf16 and
/// f16: the f32 kernel's gradients on the widened values, `dx` (and `dr`) narrowed, `dγ` and
/// `dβ` bit for bit.
fn bf16_and_f16_backward_is_the_f32_kernel_narrowed() {
    check_backward::<bf16>("bf16");
    check_backward::<f16>("f16");
}

main_thread_checks!(
    bf16_and_f16_backward_is_the_f32_kernel_narrowed,
    bf16_and_f16_training_is_the_f32_kernel_narrowed,
    bf16_and_f16_inference_is_the_f32_kernel_narrowed,
    bf16_inference_within_one_ulp_of_f64,
    typed_errors_write_nothing,
);

/// Large enough to go parallel; the same bits on 1, 2 and 3 threads.
#[test]
fn typed_inference_bits_do_not_depend_on_the_thread_count() {
    for layout in LAYOUTS {
        let shape = match layout {
            Layout::Nc => Shape::nc(4000, 70),
            _ => Shape::nchw(8, 70, 25, 15),
        };
        let n = shape.numel().unwrap();
        let x = data_in::<f16>(n, 3);
        let mean = vec![0.25f32; 70];
        let var = vec![3.0f32; 70];
        let stats = RunningStats {
            mean: &mean,
            var: &var,
        };
        for isa in dropnorm::Isa::available() {
            let run = || {
                with_isa(isa, || {
                    let mut y = vec![f16::ZERO; n];
                    let p = BnParams::new(1e-5);
                    batch_norm_infer(&x, &mut y, shape, layout, &p, Epilogue::Relu, &stats)
                        .unwrap();
                    raw(&y)
                })
                .unwrap()
            };
            let one = in_pool(1, run);
            for t in [2, 3] {
                assert!(in_pool(t, run) == one, "{isa} {layout:?}: {t} threads");
            }
        }
    }
}

/// 16-bit outputs of 32 MiB (8 MiB with a residual) take the non-temporal stores.
#[test]
fn typed_inference_non_temporal_path() {
    let c = 64;
    let mean = vec![0.5f32; c];
    let var = vec![2.0f32; c];
    let stats = RunningStats {
        mean: &mean,
        var: &var,
    };
    let p = BnParams::new(1e-5);
    for (shape, layout) in [
        (Shape::nc((16 << 20) / c + 3, c), Layout::Nc),
        (Shape::nchw(64, c, 64, 65), Layout::Nchw),
    ] {
        let n = shape.numel().unwrap();
        let x = data_in::<bf16>(n + 1, 1);
        let r = data_in::<bf16>(n, 2);
        let (got, want) = both(&x[1..], &r, shape, layout, &p, &stats, false, 0);
        assert!(got == want, "{layout:?}: non-temporal inference");
        let (got, want) = both(&x[1..n + 1], &r[..n], shape, layout, &p, &stats, true, 2);
        assert!(got == want, "{layout:?}: non-temporal add+ReLU");
    }
}
