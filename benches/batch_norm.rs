//! Batch norm per ISA against naive scalar versions, on the shapes of the roofline (NCHW, NC,
//! NHWC): training forward and inference (8 B/element of minimum traffic), inference with
//! residual add + ReLU and backward (12 B/element); the split phase's one-pass second phases
//! (`apply` in the training groups, `backward_apply` in the backward groups); and the
//! training forward, inference, add+ReLU and backward over bf16 and f16 (`bn_train_bf16/…`).
//!
//! `cargo bench --bench batch_norm -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dropnorm::{
    BnGrads, BnParams, ChannelStats, Element, GradSums, Isa, Layout, RunningStats, SavedStats,
    SavedStatsMut, Shape, batch_norm_add_relu_infer, batch_norm_apply, batch_norm_backward,
    batch_norm_backward_apply, batch_norm_backward_sums, batch_norm_infer, batch_norm_train, bf16,
    channel_stats, f16, reference, with_isa,
};

fn bench(c: &mut Criterion) {
    let cases = [
        (Shape::nchw(8, 32, 28, 28), Layout::Nchw),
        (Shape::nchw(32, 64, 56, 56), Layout::Nchw),
        (Shape::nchw(64, 256, 28, 28), Layout::Nchw),
        (Shape::nc(256, 4096), Layout::Nc),
        (Shape::nc(4096, 1024), Layout::Nc),
        (Shape::nchw(8, 32, 28, 28), Layout::Nhwc),
        (Shape::nchw(32, 64, 56, 56), Layout::Nhwc),
        (Shape::nchw(64, 256, 28, 28), Layout::Nhwc),
    ];
    for (shape, layout) in cases {
        let n = shape.numel().unwrap();
        let ch = shape.c;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 * 0.01).collect();
        let mut y = vec![0.0f32; n];
        let (gamma, beta) = (vec![1.5f32; ch], vec![0.25f32; ch]);
        let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
        let (mut mean, mut invstd) = (vec![0.0f32; ch], vec![0.0f32; ch]);
        let name = format!(
            "bn_train/{layout:?}/{}x{}x{}x{}",
            shape.n, shape.c, shape.h, shape.w
        );
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(8 * n as u64));
        if n > 1 << 22 {
            g.sample_size(20);
        }
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new("forward", isa), |b| {
                b.iter(|| {
                    with_isa(isa, || {
                        let saved = SavedStatsMut {
                            mean: &mut mean,
                            invstd: &mut invstd,
                        };
                        batch_norm_train(
                            black_box(&x),
                            &mut y,
                            shape,
                            layout,
                            &params,
                            dropnorm::Epilogue::None,
                            saved,
                            None,
                        )
                    })
                })
            });
        }
        // Split phase: the second phase alone, with the statistics computed beforehand.
        let mut st = vec![ChannelStats::default(); ch];
        channel_stats(&x, &mut st, shape, layout).unwrap();
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new("apply", isa), |b| {
                b.iter(|| {
                    with_isa(isa, || {
                        let saved = SavedStatsMut {
                            mean: &mut mean,
                            invstd: &mut invstd,
                        };
                        let ep = dropnorm::Epilogue::None;
                        batch_norm_apply(
                            black_box(&x),
                            &mut y,
                            shape,
                            layout,
                            &params,
                            ep,
                            &st,
                            saved,
                            None,
                        )
                    })
                })
            });
        }
        g.bench_function("naive_scalar", |b| {
            b.iter(|| match layout {
                Layout::Nchw => reference::batch_norm_train_naive(
                    black_box(&x),
                    &mut y,
                    shape.n,
                    ch,
                    shape.h * shape.w,
                    1e-5,
                ),
                _ => {
                    reference::batch_norm_train_naive_cols(black_box(&x), &mut y, n / ch, ch, 1e-5)
                }
            })
        });
        g.finish();

        let res: Vec<f32> = x.iter().rev().copied().collect();
        let stats = RunningStats {
            mean: &mean,
            var: &invstd,
        };
        let mut g = c.benchmark_group(format!(
            "bn_infer/{layout:?}/{}x{}x{}x{}",
            shape.n, shape.c, shape.h, shape.w
        ));
        g.throughput(Throughput::Bytes(8 * n as u64));
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new("forward", isa), |b| {
                b.iter(|| {
                    with_isa(isa, || {
                        batch_norm_infer(
                            black_box(&x),
                            &mut y,
                            shape,
                            layout,
                            &params,
                            dropnorm::Epilogue::None,
                            &stats,
                        )
                    })
                })
            });
        }
        g.finish();
        typed_bn(c, "bf16", shape, layout, &params, &stats, bf16::from_f32);
        typed_bn(c, "f16", shape, layout, &params, &stats, f16::from_f32);
        let mut g = c.benchmark_group(format!(
            "bn_add_relu/{layout:?}/{}x{}x{}x{}",
            shape.n, shape.c, shape.h, shape.w
        ));
        g.throughput(Throughput::Bytes(12 * n as u64));
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new("forward", isa), |b| {
                b.iter(|| {
                    with_isa(isa, || {
                        batch_norm_add_relu_infer(
                            black_box(&x),
                            &res,
                            &mut y,
                            shape,
                            layout,
                            &params,
                            &stats,
                        )
                    })
                })
            });
        }
        g.finish();
        let mut g = c.benchmark_group(format!(
            "bn_backward/{layout:?}/{}x{}x{}x{}",
            shape.n, shape.c, shape.h, shape.w
        ));
        g.throughput(Throughput::Bytes(12 * n as u64));
        let (mut dg, mut db) = (vec![0.0f32; ch], vec![0.0f32; ch]);
        let saved = SavedStats {
            mean: &mean,
            invstd: &invstd,
        };
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new("backward", isa), |b| {
                b.iter(|| {
                    with_isa(isa, || {
                        let grads = BnGrads {
                            dx: &mut y,
                            dgamma: &mut dg,
                            dbeta: &mut db,
                        };
                        batch_norm_backward(
                            black_box(&x),
                            &res,
                            None,
                            grads,
                            shape,
                            layout,
                            &params,
                            &saved,
                        )
                    })
                })
            });
        }
        let mut sums = vec![GradSums::default(); ch];
        batch_norm_backward_sums(&x, &res, None, &mut sums, shape, layout, &saved).unwrap();
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new("backward_apply", isa), |b| {
                b.iter(|| {
                    with_isa(isa, || {
                        let grads = BnGrads {
                            dx: &mut y,
                            dgamma: &mut dg,
                            dbeta: &mut db,
                        };
                        let (p, s) = (&params, &saved);
                        batch_norm_backward_apply(
                            black_box(&x),
                            &res,
                            None,
                            grads,
                            shape,
                            layout,
                            p,
                            s,
                            &sums,
                        )
                    })
                })
            });
        }
        let hw = if layout == Layout::Nchw {
            shape.h * shape.w
        } else {
            1
        };
        g.bench_function("naive_scalar", |b| {
            b.iter(|| {
                reference::batch_norm_backward_naive(
                    black_box(&x),
                    &res,
                    &mut y,
                    ch,
                    hw,
                    &mean,
                    &invstd,
                )
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// Every batch-norm kernel over a 16-bit element type, per ISA: training forward and
/// inference (4 B/element), add+ReLU and backward (6 B/element).
fn typed_bn<E: Element>(
    c: &mut Criterion,
    dtype: &str,
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    stats: &RunningStats,
    of: fn(f32) -> E,
) {
    let n = shape.numel().unwrap();
    let ch = shape.c;
    let x: Vec<E> = (0..n)
        .map(|i| of(((i * 7919) % 1000) as f32 * 0.01))
        .collect();
    let r: Vec<E> = x.iter().rev().copied().collect();
    let mut y = vec![of(0.0); n];
    let (mut mean, mut invstd) = (vec![0.0f32; ch], vec![0.0f32; ch]);
    let (mut dg, mut db) = (vec![0.0f32; ch], vec![0.0f32; ch]);
    let ep = dropnorm::Epilogue::None;
    let mut group = |kernel: &str, bytes: u64, f: &mut dyn FnMut()| {
        let mut g = c.benchmark_group(format!(
            "{kernel}_{dtype}/{layout:?}/{}x{}x{}x{}",
            shape.n, shape.c, shape.h, shape.w
        ));
        g.throughput(Throughput::Bytes(bytes * n as u64));
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new("forward", isa), |b| {
                b.iter(|| with_isa(isa, &mut *f))
            });
        }
        g.finish();
    };
    group("bn_train", 4, &mut || {
        let saved = SavedStatsMut {
            mean: &mut mean,
            invstd: &mut invstd,
        };
        batch_norm_train(
            black_box(&x),
            &mut y,
            shape,
            layout,
            params,
            ep,
            saved,
            None,
        )
        .unwrap()
    });
    group("bn_infer", 4, &mut || {
        batch_norm_infer(black_box(&x), &mut y, shape, layout, params, ep, stats).unwrap()
    });
    group("bn_add_relu", 6, &mut || {
        batch_norm_add_relu_infer(black_box(&x), &r, &mut y, shape, layout, params, stats).unwrap()
    });
    let saved = SavedStats {
        mean: stats.mean,
        invstd: stats.var,
    };
    group("bn_backward", 6, &mut || {
        let grads = BnGrads {
            dx: &mut y,
            dgamma: &mut dg,
            dbeta: &mut db,
        };
        batch_norm_backward(
            black_box(&x),
            &r,
            None,
            grads,
            shape,
            layout,
            params,
            &saved,
        )
        .unwrap()
    });
}
