//! The cost of the C boundary: each exported function against the Rust function it wraps, on
//! tiny tensors (64 elements), where the checks (NULL, alignment, overlap), the panic guard
//! and the thread setting are the largest part of a call. Issue 12 asks for ≤ 50 ns.
//!
//! `cargo bench -p dropnorm-capi --bench overhead -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dropnorm::{BnParams, DropoutParams, Layout, RunningStats, Shape};
use dropnorm_capi::*;

fn bench(c: &mut Criterion) {
    let n = 64;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 4.0).collect();
    let mut y = vec![0.0f32; n];
    let params = DropoutParams::new(0.5, 42);
    let cparams = DropnormDropoutParams {
        p: 0.5,
        eval: 0,
        seed: 42,
        offset: 0,
    };
    let mut g = c.benchmark_group("boundary/dropout_f32/64");
    g.bench_function("rust", |b| {
        b.iter(|| dropnorm::dropout(black_box(&x), &mut y, &params))
    });
    g.bench_function("c_abi", |b| {
        // SAFETY: x and y hold n floats; cparams is a live struct.
        b.iter(|| unsafe {
            dropnorm_dropout_f32(black_box(x.as_ptr()), n, y.as_mut_ptr(), n, &cparams)
        })
    });
    g.finish();

    // NHWC inference fused with add+ReLU, 8 rows of 8 channels: the most arguments checked.
    let (rows, ch) = (8, 8);
    let gamma = vec![1.5f32; ch];
    let beta = vec![0.25f32; ch];
    let mean = vec![0.5f32; ch];
    let var = vec![2.0f32; ch];
    let r = vec![0.5f32; n];
    let shape = Shape::nc(rows, ch);
    let bp = BnParams::new(1e-5).with_affine(&gamma, &beta);
    let stats = RunningStats {
        mean: &mean,
        var: &var,
    };
    let cshape = DropnormShape {
        n: rows,
        c: ch,
        h: 1,
        w: 1,
    };
    let cbp = DropnormBnParams {
        eps: 1e-5,
        gamma: gamma.as_ptr(),
        beta: beta.as_ptr(),
    };
    let cstats = DropnormRunningStats {
        mean: mean.as_ptr(),
        var: var.as_ptr(),
    };
    let mut g = c.benchmark_group("boundary/batch_norm_add_relu_infer_f32/64");
    g.bench_function("rust", |b| {
        b.iter(|| {
            dropnorm::batch_norm_add_relu_infer(
                black_box(&x),
                &r,
                &mut y,
                shape,
                Layout::Nhwc,
                &bp,
                &stats,
            )
        })
    });
    g.bench_function("c_abi", |b| {
        // SAFETY: every buffer holds what its length says; the structs are live.
        b.iter(|| unsafe {
            dropnorm_batch_norm_add_relu_infer_f32(
                black_box(x.as_ptr()),
                n,
                r.as_ptr(),
                n,
                y.as_mut_ptr(),
                n,
                cshape,
                DROPNORM_LAYOUT_NHWC,
                &cbp,
                &cstats,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
