//! Dropout throughput per ISA against the naive scalar version (one `rand_xoshiro` call and a
//! branch per element), on 1 Mi elements (cache-resident on large-L2/L3 parts) and 16 Mi (DRAM);
//! f32, and bf16/f16 (`dropout_bf16/…`, `dropout_f16/…`).
//!
//! `cargo bench --bench dropout -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dropnorm::{
    DropoutParams, Element, Isa, bf16, dropout, dropout_backward, dropout_with_mask, f16, mask_len,
    reference, with_isa,
};

fn bench(c: &mut Criterion) {
    for n in [1usize << 20, 1 << 24] {
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 1e-3).collect();
        let mut y = vec![0.0f32; n];
        let mut mask = vec![0u8; mask_len(n)];
        let params = DropoutParams::new(0.5, 42);

        let mut g = c.benchmark_group(format!("dropout/{n}"));
        g.throughput(Throughput::Bytes(8 * n as u64));
        if n > 1 << 22 {
            g.sample_size(20);
        }
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new("forward", isa), |b| {
                b.iter(|| with_isa(isa, || dropout(black_box(&x), &mut y, &params)))
            });
            g.bench_function(BenchmarkId::new("forward_mask", isa), |b| {
                b.iter(|| {
                    with_isa(isa, || {
                        dropout_with_mask(black_box(&x), &mut y, &mut mask, &params)
                    })
                })
            });
            g.bench_function(BenchmarkId::new("backward", isa), |b| {
                b.iter(|| with_isa(isa, || dropout_backward(black_box(&x), &mut y, &params)))
            });
        }
        g.bench_function("naive_scalar", |b| {
            b.iter(|| reference::dropout_naive(black_box(&x), &mut y, 0.5, 42))
        });
        g.finish();
        typed(c, "bf16", n, bf16::from_f32);
        typed(c, "f16", n, f16::from_f32);
    }
}

/// The same over a 16-bit element type (4 B/element: half the bytes of f32).
fn typed<E: Element>(c: &mut Criterion, dtype: &str, n: usize, of: fn(f32) -> E) {
    let x: Vec<E> = (0..n).map(|i| of(i as f32 * 1e-3)).collect();
    let mut y = vec![of(0.0); n];
    let mut mask = vec![0u8; mask_len(n)];
    let params = DropoutParams::new(0.5, 42);
    let mut g = c.benchmark_group(format!("dropout_{dtype}/{n}"));
    g.throughput(Throughput::Bytes(4 * n as u64));
    if n > 1 << 22 {
        g.sample_size(20);
    }
    for isa in Isa::available() {
        g.bench_function(BenchmarkId::new("forward", isa), |b| {
            b.iter(|| with_isa(isa, || dropout(black_box(&x), &mut y, &params)))
        });
        g.bench_function(BenchmarkId::new("with_mask", isa), |b| {
            b.iter(|| {
                with_isa(isa, || {
                    dropout_with_mask(black_box(&x), &mut y, &mut mask, &params)
                })
            })
        });
        g.bench_function(BenchmarkId::new("backward", isa), |b| {
            b.iter(|| with_isa(isa, || dropout_backward(black_box(&x), &mut y, &params)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
