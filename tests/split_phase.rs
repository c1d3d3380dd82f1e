//! Split-phase training: statistics (of a whole batch or of shards, merged) then `apply`, and
//! the backward's sums then `apply`. On a whole batch they must give the one-call kernels'
//! bits exactly, on every ISA, layout and thread count; on shards, the whole batch's results
//! within the bounds merging can promise; bad input an error with nothing written.

#[macro_use]
mod common;

use common::*;
use dropnorm::*;

const LAYOUTS: [Layout; 3] = [Layout::Nc, Layout::Nchw, Layout::Nhwc];

/// Shapes with tails of every kind: one channel, more channels than a column segment (64),
/// NCHW with `H·W = 1` (the NC path), odd images, and one large enough to go parallel.
fn shapes(layout: Layout) -> Vec<Shape> {
    let mut s = vec![
        Shape::nchw(2, 1, 3, 5),
        Shape::nchw(3, 7, 5, 3),
        Shape::nchw(5, 70, 1, 3),
        Shape::nchw(17, 3, 1, 1),
        Shape::nchw(4, 33, 9, 7),
        Shape::nchw(8, 24, 30, 30),
        // NC/NHWC rows wider than 2 Ki columns (a multiple of 16): bands of columns.
        Shape::nchw(3, 2080, 1, 1),
    ];
    if layout == Layout::Nc {
        s.iter_mut()
            .for_each(|s| *s = Shape::nc(s.n * s.h * s.w, s.c));
    }
    s
}

/// Normal data with the channel's offset far from its spread, and every 50th value an
/// outlier (so the pivot rule refines on some channels).
fn data_of(shape: Shape, salt: u64) -> Vec<f32> {
    normals(shape.numel().unwrap(), salt)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let v = (30.0 + 3.0 * v) as f32;
            if i % 50 == 7 { v * 40.0 } else { v }
        })
        .collect()
}

const MOMENTA: [Momentum; 3] = [
    Momentum::PyTorch(0.1),
    Momentum::PyTorchCumulative,
    Momentum::Onnx(0.9),
];

/// Everything a training forward writes, running statistics starting at (0.5, 2.0) after 3
/// batches: the one call (`stats` None) or `apply` with `stats`, of the variant `kind` (0 out
/// of place, 1 in place, 2 add+ReLU with residual `r`).
#[allow(clippy::too_many_arguments)]
fn forward_with(
    x: &[f32],
    r: &[f32],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    relu: bool,
    momentum: Momentum,
    kind: u8,
    stats: Option<&[ChannelStats]>,
) -> (BnOut, u64) {
    let c = shape.c;
    let mut o = BnOut {
        y: vec![f32::NAN; x.len()],
        mean: vec![f32::NAN; c],
        invstd: vec![f32::NAN; c],
        running_mean: vec![0.5; c],
        running_var: vec![2.0; c],
    };
    let mut batches = 3;
    let saved = SavedStatsMut {
        mean: &mut o.mean,
        invstd: &mut o.invstd,
    };
    let running = RunningStatsMut {
        mean: &mut o.running_mean,
        var: &mut o.running_var,
        batches: &mut batches,
    };
    let running = Some((running, momentum));
    let ep = epilogue(relu);
    if kind == 1 {
        o.y.copy_from_slice(x);
    }
    let y = &mut o.y;
    match (kind, stats) {
        (0, None) => batch_norm_train(x, y, shape, layout, params, ep, saved, running),
        (1, None) => batch_norm_train_inplace(y, shape, layout, params, ep, saved, running),
        (_, None) => batch_norm_add_relu_train(x, r, y, shape, layout, params, saved, running),
        (0, Some(st)) => batch_norm_apply(x, y, shape, layout, params, ep, st, saved, running),
        (1, Some(st)) => batch_norm_apply_inplace(y, shape, layout, params, ep, st, saved, running),
        (_, Some(st)) => {
            batch_norm_add_relu_apply(x, r, y, shape, layout, params, st, saved, running)
        }
    }
    .unwrap();
    (o, batches)
}

/// Statistics of the whole `x`, then `apply`.
#[allow(clippy::too_many_arguments)]
fn split_forward(
    x: &[f32],
    r: &[f32],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    relu: bool,
    momentum: Momentum,
    kind: u8,
) -> (BnOut, u64) {
    let mut stats = vec![ChannelStats::default(); shape.c];
    channel_stats(x, &mut stats, shape, layout).unwrap();
    forward_with(
        x,
        r,
        shape,
        layout,
        params,
        relu,
        momentum,
        kind,
        Some(&stats),
    )
}

/// The one-call forward of the same kind.
#[allow(clippy::too_many_arguments)]
fn one_call_forward(
    x: &[f32],
    r: &[f32],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    relu: bool,
    momentum: Momentum,
    kind: u8,
) -> (BnOut, u64) {
    forward_with(x, r, shape, layout, params, relu, momentum, kind, None)
}

fn affine(c: usize) -> (Vec<f32>, Vec<f32>) {
    let g = (0..c).map(|i| 0.5 + i as f32 * 0.25).collect();
    let b = (0..c).map(|i| i as f32 * 0.1 - 1.0).collect();
    (g, b)
}

/// `channel_stats` + `apply` on the whole batch = the one-call forward, bit for bit: every
/// variant, layout, ISA, epilogue and convention.
fn stats_then_apply_equals_one_call_forward() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                let x = data_of(shape, si as u64);
                let r = data_of(shape, 100 + si as u64);
                let (g, b) = affine(shape.c);
                for (pi, params) in [BnParams::new(1e-5), BnParams::new(0.0).with_affine(&g, &b)]
                    .iter()
                    .enumerate()
                {
                    for kind in 0..3u8 {
                        for relu in [false, true] {
                            let m = MOMENTA[(si + pi + kind as usize) % 3];
                            let one =
                                one_call_forward(&x, &r, shape, layout, params, relu, m, kind);
                            let split = split_forward(&x, &r, shape, layout, params, relu, m, kind);
                            assert_eq!(one.1, 4, "batches");
                            assert_eq!(
                                one.0.bits(),
                                split.0.bits(),
                                "{isa:?} {layout:?} {shape:?} params {pi} kind {kind} relu {relu}"
                            );
                            assert_eq!(one.1, split.1);
                        }
                    }
                }
            }
        }
    });
}

/// What a backward writes, as bits: dx, dγ, dβ.
type Grads = [Vec<u32>; 3];

fn one_call_backward(
    x: &[f32],
    dy: &[f32],
    y: Option<&[f32]>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    saved: &SavedStats,
) -> Grads {
    let [dx, dg, db] = with_grads(x.len(), shape.c, |g| {
        batch_norm_backward(x, dy, y, g, shape, layout, params, saved).unwrap()
    });
    [bits(&dx), bits(&dg), bits(&db)]
}

fn split_backward(
    x: &[f32],
    dy: &[f32],
    y: Option<&[f32]>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    saved: &SavedStats,
) -> Grads {
    let mut sums = vec![GradSums::default(); shape.c];
    batch_norm_backward_sums(x, dy, y, &mut sums, shape, layout, saved).unwrap();
    let [dx, dg, db] = backward_apply(x, dy, y, shape, layout, params, saved, &sums);
    [bits(&dx), bits(&dg), bits(&db)]
}

/// `f` given NaN-filled gradients of `n` values and `c` channels; returns them.
fn with_grads(n: usize, c: usize, f: impl FnOnce(BnGrads)) -> [Vec<f32>; 3] {
    let (mut dx, mut dg, mut db) = (vec![f32::NAN; n], vec![f32::NAN; c], vec![f32::NAN; c]);
    f(BnGrads {
        dx: &mut dx,
        dgamma: &mut dg,
        dbeta: &mut db,
    });
    [dx, dg, db]
}

/// `batch_norm_backward_apply` with `sums` into NaN-filled `[dx, dγ, dβ]`.
#[allow(clippy::too_many_arguments)]
fn backward_apply(
    x: &[f32],
    dy: &[f32],
    y: Option<&[f32]>,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    saved: &SavedStats,
    sums: &[GradSums],
) -> [Vec<f32>; 3] {
    with_grads(x.len(), shape.c, |g| {
        batch_norm_backward_apply(x, dy, y, g, shape, layout, params, saved, sums).unwrap()
    })
}

/// The forward's saved statistics and output of `x`.
fn forward(x: &[f32], shape: Shape, layout: Layout, relu: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = shape.c;
    let (mut y, mut mean, mut invstd) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    let saved = SavedStatsMut {
        mean: &mut mean,
        invstd: &mut invstd,
    };
    let p = BnParams::new(1e-5);
    batch_norm_train(x, &mut y, shape, layout, &p, epilogue(relu), saved, None).unwrap();
    (y, mean, invstd)
}

/// Backward sums + apply on the whole batch = the one-call backward, bit for bit.
fn sums_then_apply_equals_one_call_backward() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                let x = data_of(shape, si as u64);
                let dy = data_of(shape, 50 + si as u64);
                let (g, b) = affine(shape.c);
                for relu in [false, true] {
                    let (y, mean, invstd) = forward(&x, shape, layout, relu);
                    let saved = SavedStats {
                        mean: &mean,
                        invstd: &invstd,
                    };
                    let y = relu.then_some(&y[..]);
                    for params in [BnParams::new(1e-5), BnParams::new(1e-5).with_affine(&g, &b)] {
                        let one = one_call_backward(&x, &dy, y, shape, layout, &params, &saved);
                        let split = split_backward(&x, &dy, y, shape, layout, &params, &saved);
                        assert_eq!(one, split, "{isa:?} {layout:?} {shape:?} relu {relu}");
                    }
                }
            }
        }
    });
}

/// Synchronized batch norm: the batch cut into shards along N; each shard's statistics,
/// merged in shard order, then each shard normalized with the merged ones; backward likewise.
/// The result matches the whole batch's one call within f32 rounding of the lane sums
/// (stated per quantity below), and the running statistics weigh by the whole batch's count.
fn shards_merged_then_applied_match_the_whole_batch() {
    for layout in LAYOUTS {
        let (whole, parts) = match layout {
            Layout::Nc => (Shape::nc(600, 9), vec![1, 199, 300, 100]),
            _ => (Shape::nchw(10, 9, 7, 5), vec![1, 4, 2, 3]),
        };
        let c = whole.c;
        let x = data_of(whole, 9);
        let dy = data_of(whole, 10);
        let per_n = x.len() / whole.n;
        let cuts: Vec<(Shape, std::ops::Range<usize>)> = parts
            .iter()
            .scan(0, |at, &n| {
                let r = *at..*at + n * per_n;
                *at = r.end;
                Some((Shape { n, ..whole }, r))
            })
            .collect();
        let (g, b) = affine(c);
        let params = BnParams::new(1e-5).with_affine(&g, &b);
        let m = Momentum::PyTorch(0.1);
        let (one, _) = one_call_forward(&x, &x, whole, layout, &params, false, m, 0);

        // Phase 1 on every shard, then the all-reduce: a merge in a fixed order.
        let mut merged = vec![ChannelStats::default(); c];
        for (shape, r) in &cuts {
            let mut st = vec![ChannelStats::default(); c];
            channel_stats(&x[r.clone()], &mut st, *shape, layout).unwrap();
            for (m, s) in merged.iter_mut().zip(&st) {
                *m = m.merge(s).unwrap();
            }
        }
        // Phase 2 on every shard: each has its own saved copy (identical) and running copy.
        let mut y = vec![f32::NAN; x.len()];
        let (mut mean, mut invstd) = (vec![0.0; c], vec![0.0; c]);
        let (mut rm, mut rv) = (vec![0.5; c], vec![2.0; c]);
        for (shape, r) in &cuts {
            let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
            let (mut srm, mut srv, mut batches) = (vec![0.5; c], vec![2.0; c], 3u64);
            let saved = SavedStatsMut {
                mean: &mut sm,
                invstd: &mut si,
            };
            let running = RunningStatsMut {
                mean: &mut srm,
                var: &mut srv,
                batches: &mut batches,
            };
            let ep = Epilogue::None;
            let yr = &mut y[r.clone()];
            let xr = &x[r.clone()];
            batch_norm_apply(
                xr,
                yr,
                *shape,
                layout,
                &params,
                ep,
                &merged,
                saved,
                Some((running, m)),
            )
            .unwrap();
            assert_eq!(batches, 4);
            (mean, invstd, rm, rv) = (sm, si, srm, srv);
        }
        let close = |a: f32, b: f32, tol: f32, what: &str| {
            assert!(
                (a - b).abs() <= tol,
                "{layout:?} {what}: {a} vs {b} (tolerance {tol})"
            );
        };
        for ch in 0..c {
            // The means agree to a few ulps of the data's scale (|mean| + σ ≈ 33 here: 1e-5);
            // invstd and the variance to 2e-6 relative.
            close(mean[ch], one.mean[ch], 1e-5, "mean");
            close(rm[ch], one.running_mean[ch], 1e-6, "running mean");
            close(invstd[ch], one.invstd[ch], 2e-6 * one.invstd[ch], "invstd");
            close(
                rv[ch],
                one.running_var[ch],
                2e-6 * one.running_var[ch],
                "running var",
            );
        }
        for (a, b) in y.iter().zip(&one.y) {
            // |y| ≲ 40σ/σ·γ: errors of 1e-5 in the mean and 2e-6 relative in invstd.
            close(*a, *b, 1e-4 + 4e-6 * b.abs(), "y");
        }

        // Backward: per-shard sums around the (whole batch's) saved mean, merged, then dx.
        let saved = SavedStats {
            mean: &one.mean,
            invstd: &one.invstd,
        };
        let mut dx_one = vec![0.0; x.len()];
        let (mut dg_one, mut db_one) = (vec![0.0; c], vec![0.0; c]);
        let grads = BnGrads {
            dx: &mut dx_one,
            dgamma: &mut dg_one,
            dbeta: &mut db_one,
        };
        batch_norm_backward(&x, &dy, None, grads, whole, layout, &params, &saved).unwrap();
        let mut sums = vec![GradSums::default(); c];
        for (shape, r) in &cuts {
            let mut part = vec![GradSums::default(); c];
            let (xr, dyr) = (&x[r.clone()], &dy[r.clone()]);
            batch_norm_backward_sums(xr, dyr, None, &mut part, *shape, layout, &saved).unwrap();
            for (s, p) in sums.iter_mut().zip(&part) {
                *s = s.merge(p).unwrap();
            }
        }
        let mut dx = vec![f32::NAN; x.len()];
        for (shape, r) in &cuts {
            let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
            let grads = BnGrads {
                dx: &mut dx[r.clone()],
                dgamma: &mut dg,
                dbeta: &mut db,
            };
            let (xr, dyr) = (&x[r.clone()], &dy[r.clone()]);
            batch_norm_backward_apply(xr, dyr, None, grads, *shape, layout, &params, &saved, &sums)
                .unwrap();
            for ch in 0..c {
                // Σ over ~350 values of |dy·x̂| ≲ 40·40: f64 partial sums rounded to f32.
                let scale = 1e-5 * (1.0 + db_one[ch].abs() + dg_one[ch].abs());
                close(dg[ch], dg_one[ch], scale, "dgamma");
                close(db[ch], db_one[ch], scale, "dbeta");
            }
        }
        for (a, b) in dx.iter().zip(&dx_one) {
            close(*a, *b, 1e-4 + 1e-5 * b.abs(), "dx");
        }
    }
}

/// A sync-BN shard may hold a single image (or none) per channel: its statistics and sums
/// are fine to take; only the merged ones must count two values or more.
fn tiny_shards_are_fine_to_sum() {
    let shape = Shape::nc(1, 3);
    let x = [1.0f32, 2.0, 3.0];
    let mut st = [ChannelStats::default(); 3];
    channel_stats(&x, &mut st, shape, Layout::Nc).unwrap();
    assert_eq!(
        st[1],
        ChannelStats {
            count: 1,
            mean: 2.0,
            m2: 0.0
        }
    );
    let saved = SavedStats {
        mean: &[0.0; 3],
        invstd: &[1.0; 3],
    };
    let mut sums = [GradSums::default(); 3];
    batch_norm_backward_sums(&x, &x, None, &mut sums, shape, Layout::Nc, &saved).unwrap();
    assert_eq!(
        sums[2],
        GradSums {
            count: 1,
            dy: 3.0,
            dy_xmu: 9.0
        }
    );
    let empty = Shape::nc(0, 3);
    batch_norm_backward_sums::<f32>(&[], &[], None, &mut sums, empty, Layout::Nc, &saved).unwrap();
    assert_eq!(sums, [GradSums::default(); 3]);
    // An empty shard still takes part in phase 2: it updates its running statistics.
    let stats = [ChannelStats {
        count: 4,
        mean: 1.0,
        m2: 4.0,
    }; 3];
    let (mut m, mut is, mut rm, mut rv, mut batches) = ([9.0; 3], [9.0; 3], [0.0; 3], [1.0; 3], 0);
    let saved = SavedStatsMut {
        mean: &mut m,
        invstd: &mut is,
    };
    let running = RunningStatsMut {
        mean: &mut rm,
        var: &mut rv,
        batches: &mut batches,
    };
    let p = BnParams::new(0.0);
    let r = Some((running, Momentum::PyTorch(0.5)));
    batch_norm_apply::<f32>(
        &[],
        &mut [],
        empty,
        Layout::Nc,
        &p,
        Epilogue::None,
        &stats,
        saved,
        r,
    )
    .unwrap();
    assert_eq!((m, is, rm, batches), ([1.0; 3], [1.0; 3], [0.5; 3], 1));
    // Unbiased running variance from the merged count: 4/3, halfway from 1.
    assert!(
        rv.iter()
            .all(|v| (v - (0.5 + 0.5 * 4.0 / 3.0)).abs() < 2e-7)
    );
}

/// Every bad argument of the split-phase functions is a typed error naming it, and nothing
/// is written: not `y`, the saved or running statistics, the batch count, `out`, or a gradient.
fn split_phase_errors_name_the_argument_and_write_nothing() {
    let shape = Shape::nc(4, 2);
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let good = [ChannelStats {
        count: 4,
        mean: 4.0,
        m2: 20.0,
    }; 2];
    let one_value = [
        good[0],
        ChannelStats {
            count: 1,
            ..good[1]
        },
    ];
    let negative = [
        ChannelStats {
            m2: -1.0,
            ..good[0]
        },
        good[1],
    ];
    let short = [good[0]];
    let gamma = [1.0f32];
    let cases: [(&[ChannelStats], BnParams, Layout, &str); 5] = [
        (&good, BnParams::new(-1.0), Layout::Nc, "eps"),
        (
            &good,
            BnParams::new(0.0).with_affine(&gamma, &gamma),
            Layout::Nc,
            "gamma",
        ),
        (
            &one_value,
            BnParams::new(0.0),
            Layout::Nc,
            "stats`[1]: fewer than two",
        ),
        (
            &negative,
            BnParams::new(0.0),
            Layout::Nc,
            "stats`[0]: negative",
        ),
        (&short, BnParams::new(0.0), Layout::Nc, "stats"),
    ];
    for (stats, params, layout, needle) in cases {
        for kind in 0..3 {
            let (mut y, mut m, mut is) = ([f32::NAN; 8], [f32::NAN; 2], [f32::NAN; 2]);
            let (mut rm, mut rv, mut batches) = ([0.5; 2], [2.0; 2], 7u64);
            let saved = SavedStatsMut {
                mean: &mut m,
                invstd: &mut is,
            };
            let running = RunningStatsMut {
                mean: &mut rm,
                var: &mut rv,
                batches: &mut batches,
            };
            let r = Some((running, Momentum::default()));
            let ep = Epilogue::Relu;
            let err = match kind {
                0 => batch_norm_apply(&x, &mut y, shape, layout, &params, ep, stats, saved, r),
                1 => {
                    y.copy_from_slice(&x);
                    batch_norm_apply_inplace(&mut y, shape, layout, &params, ep, stats, saved, r)
                }
                _ => batch_norm_add_relu_apply(
                    &x, &x, &mut y, shape, layout, &params, stats, saved, r,
                ),
            }
            .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(needle),
                "kind {kind}: {msg:?} lacks {needle:?}"
            );
            let y_expected = if kind == 1 {
                bits(&x)
            } else {
                bits(&[f32::NAN; 8])
            };
            assert_eq!(bits(&y), y_expected, "{needle}: y written");
            assert!(
                m.iter().chain(&is).all(|v| v.is_nan()),
                "{needle}: saved written"
            );
            assert_eq!(
                (rm, rv, batches),
                ([0.5; 2], [2.0; 2], 7),
                "{needle}: running written"
            );
        }
    }

    // Backward: the sums and the apply.
    let saved = SavedStats {
        mean: &[4.0, 5.0],
        invstd: &[0.5, 0.5],
    };
    let short_mean = SavedStats {
        mean: &[4.0],
        invstd: &[0.5, 0.5],
    };
    let untouched = [GradSums {
        count: 99,
        dy: 1.0,
        dy_xmu: 2.0,
    }; 2];
    let bad: [(&[f32], usize, &SavedStats, &str); 3] = [
        (&x[..7], 2, &saved, "dy"),
        (&x, 1, &saved, "out"),
        (&x, 2, &short_mean, "saved.mean"),
    ];
    for (dy, out_len, saved, needle) in bad {
        let mut out = untouched;
        let out = &mut out[..out_len];
        let msg = match batch_norm_backward_sums(&x, dy, None, out, shape, Layout::Nc, saved) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{needle}: Ok"),
        };
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert_eq!(out, &untouched[..out_len], "{needle}: out written");
    }
    let sums_ok = [GradSums {
        count: 4,
        dy: 1.0,
        dy_xmu: 1.0,
    }; 2];
    let sums_one = [
        sums_ok[0],
        GradSums {
            count: 1,
            ..sums_ok[1]
        },
    ];
    let sums_cases: [(&[GradSums], &[f32], &str); 3] = [
        (&sums_one, &x, "sums`[1]: fewer than two"),
        (&sums_ok[..1], &x, "sums"),
        (&sums_ok, &x[..7], "dy"),
    ];
    for (sums, dy, needle) in sums_cases {
        let (mut dx, mut dg, mut db) = ([f32::NAN; 8], [f32::NAN; 2], [f32::NAN; 2]);
        let grads = BnGrads {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: &mut db,
        };
        let p = BnParams::new(0.0);
        let err =
            batch_norm_backward_apply(&x, dy, None, grads, shape, Layout::Nc, &p, &saved, sums)
                .unwrap_err();
        assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
        assert!(
            dx.iter().chain(&dg).chain(&db).all(|v| v.is_nan()),
            "{needle}: written"
        );
    }

    // A count that cannot be merged, and a shape whose per-channel count overflows.
    let big = GradSums {
        count: u64::MAX,
        ..Default::default()
    };
    assert_eq!(big.merge(&big), Err(Error::CountOverflow));
    let huge = Shape::nchw(usize::MAX, 0, 2, 1);
    for layout in LAYOUTS {
        let saved = SavedStats {
            mean: &[],
            invstd: &[],
        };
        let r = batch_norm_backward_sums::<f32>(&[], &[], None, &mut [], huge, layout, &saved);
        assert!(r.is_err(), "{layout:?}: {r:?}");
        let grads = BnGrads::<f32> {
            dx: &mut [],
            dgamma: &mut [],
            dbeta: &mut [],
        };
        let p = BnParams::new(0.0);
        let r = batch_norm_backward_apply(&[], &[], None, grads, huge, layout, &p, &saved, &[]);
        assert!(r.is_err(), "{layout:?}: {r:?}");
        let saved = SavedStatsMut {
            mean: &mut [],
            invstd: &mut [],
        };
        // Nothing to normalize and no channel: fine either way, but no panic.
        let _ = batch_norm_apply::<f32>(
            &[],
            &mut [],
            huge,
            layout,
            &p,
            Epilogue::None,
            &[],
            saved,
            None,
        );
    }
}

/// Statistics whose counts differ per channel (shards of unequal size per channel are the
/// caller's business) take each channel's own count: channel 0 given twice the count with
/// twice the sums — the same mean, variance and per-value sums, bit for bit — gives the same
/// `y`, saved statistics and `dx`, its running variance unbiased by its own count, and
/// twice its `dγ`, `dβ`. (Equal counts take the vectorized constants, unequal ones the
/// per-channel path: this pins one to the other.)
fn per_channel_counts_take_each_channels_own_count() {
    for_each_isa(|isa| {
        for layout in LAYOUTS {
            for (si, shape) in shapes(layout).into_iter().enumerate() {
                let x = data_of(shape, si as u64);
                let dy = data_of(shape, 70 + si as u64);
                let (g, b) = affine(shape.c);
                let params = BnParams::new(1e-5).with_affine(&g, &b);
                let mut stats = vec![ChannelStats::default(); shape.c];
                channel_stats(&x, &mut stats, shape, layout).unwrap();
                let mut doubled = stats.clone();
                doubled[0].count *= 2;
                doubled[0].m2 *= 2.0;
                let m = Momentum::PyTorch(0.1);
                let run = |st: &[ChannelStats]| {
                    forward_with(&x, &x, shape, layout, &params, false, m, 0, Some(st)).0
                };
                let (same, other) = (run(&stats), run(&doubled));
                let what = format!("{isa:?} {layout:?} {shape:?}");
                assert_eq!(bits(&same.y), bits(&other.y), "y {what}");
                assert_eq!(bits(&same.mean), bits(&other.mean), "mean {what}");
                assert_eq!(bits(&same.invstd), bits(&other.invstd), "invstd {what}");
                assert_eq!(same.running_mean, other.running_mean, "running mean {what}");
                assert_eq!(same.running_var[1..], other.running_var[1..], "{what}");
                // running var = 0.9·2 + 0.1·var·n/(n − 1), n the channel's own count.
                let var = stats[0].m2 / stats[0].count as f64;
                let n2 = doubled[0].count as f64;
                let want = 0.9 * 2.0 + 0.1 * (var as f32 as f64 * (n2 / (n2 - 1.0)));
                let got = other.running_var[0] as f64;
                assert!(
                    (got - want).abs() <= 1e-6 * want,
                    "running var {what}: {got} {want}"
                );
                assert_ne!(other.running_var[0], same.running_var[0], "{what}");

                let saved = SavedStats {
                    mean: &same.mean,
                    invstd: &same.invstd,
                };
                let mut sums = vec![GradSums::default(); shape.c];
                batch_norm_backward_sums(&x, &dy, None, &mut sums, shape, layout, &saved).unwrap();
                let mut twice = sums.clone();
                twice[0].count *= 2;
                twice[0].dy *= 2.0;
                twice[0].dy_xmu *= 2.0;
                let back = |s: &[GradSums]| {
                    backward_apply(&x, &dy, None, shape, layout, &params, &saved, s)
                };
                let ([dx1, dg1, db1], [dx2, dg2, db2]) = (back(&sums), back(&twice));
                assert_eq!(bits(&dx1), bits(&dx2), "dx {what}");
                assert_eq!(bits(&dg1[1..]), bits(&dg2[1..]), "dgamma {what}");
                assert_eq!(bits(&db1[1..]), bits(&db2[1..]), "dbeta {what}");
                assert_eq!((2.0 * dg1[0], 2.0 * db1[0]), (dg2[0], db2[0]), "{what}");
            }
        }
    });
}

main_thread_checks!(
    stats_then_apply_equals_one_call_forward,
    sums_then_apply_equals_one_call_backward,
    shards_merged_then_applied_match_the_whole_batch,
    tiny_shards_are_fine_to_sum,
    split_phase_errors_name_the_argument_and_write_nothing,
    per_channel_counts_take_each_channels_own_count,
);

/// The split-phase functions give the same bits on 1, 2 and 3 threads, on every ISA.
#[test]
fn split_phase_bits_do_not_depend_on_the_thread_count() {
    for layout in LAYOUTS {
        let shape = match layout {
            Layout::Nc => Shape::nc(3000, 70),
            _ => Shape::nchw(8, 70, 25, 15),
        };
        let x = data_of(shape, 4);
        let dy = data_of(shape, 5);
        let (y, mean, invstd) = forward(&x, shape, layout, true);
        let saved = SavedStats {
            mean: &mean,
            invstd: &invstd,
        };
        for isa in Isa::available() {
            let run = || {
                with_isa(isa, || {
                    let p = BnParams::new(1e-5);
                    let m = Momentum::default();
                    let fwd = split_forward(&x, &x, shape, layout, &p, true, m, 2);
                    let bwd = split_backward(&x, &dy, Some(&y), shape, layout, &p, &saved);
                    (fwd.0.bits(), bwd)
                })
                .unwrap()
            };
            let one = in_pool(1, run);
            for threads in [2, 3] {
                assert!(
                    in_pool(threads, run) == one,
                    "{isa:?} {layout:?} {threads} threads"
                );
            }
        }
    }
}
