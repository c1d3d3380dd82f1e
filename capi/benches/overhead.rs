//! The cost of the C boundary: each exported function against the Rust function it wraps, on
//! tiny tensors (64 elements), where the checks (NULL, alignment, overlap), the panic guard
//! and the thread setting are the largest part of a call. Issue 12 asks for ≤ 50 ns.
//!
//! `cargo bench -p dropnorm-capi --bench overhead -- --warm-up-time 1 --measurement-time 3`
//!
//! After criterion's groups, a paired measurement of the same calls: batches of Rust and C
//! calls alternate (ABBA) for 41 rounds and the median per-call difference is printed, so the
//! drift of this machine (±10 % between criterion runs timed seconds apart, which is ±40 ns on
//! a 400 ns call) cancels pair by pair. Skipped under `cargo bench -- --test`.

use std::hint::black_box;
use std::time::Instant;

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
    let mut y2 = vec![0.0f32; n];
    let rust = || {
        let _ = black_box(dropnorm::dropout(black_box(&x), &mut y, &params));
    };
    let c_abi = || {
        // SAFETY: x and y2 hold n floats; cparams is a live struct.
        let s =
            unsafe { dropnorm_dropout_f32(black_box(x.as_ptr()), n, y2.as_mut_ptr(), n, &cparams) };
        black_box(s);
    };
    pair(c, "boundary/dropout_f32/64", rust, c_abi);

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
    let mut y3 = vec![0.0f32; n];
    let mut y4 = vec![0.0f32; n];
    let rust = || {
        let r = dropnorm::batch_norm_add_relu_infer(
            black_box(&x),
            &r,
            &mut y3,
            shape,
            Layout::Nhwc,
            &bp,
            &stats,
        );
        let _ = black_box(r);
    };
    let c_abi = || {
        // SAFETY: every buffer holds what its length says; the structs are live.
        let s = unsafe {
            dropnorm_batch_norm_add_relu_infer_f32(
                black_box(x.as_ptr()),
                n,
                r.as_ptr(),
                n,
                y4.as_mut_ptr(),
                n,
                cshape,
                DROPNORM_LAYOUT_NHWC,
                &cbp,
                &cstats,
            )
        };
        black_box(s);
    };
    pair(c, "boundary/batch_norm_add_relu_infer_f32/64", rust, c_abi);
}

/// Criterion's group for the two calls, then (outside `--test`) the paired difference.
fn pair(c: &mut Criterion, name: &str, mut rust: impl FnMut(), mut c_abi: impl FnMut()) {
    let mut g = c.benchmark_group(name);
    g.bench_function("rust", |b| b.iter(&mut rust));
    g.bench_function("c_abi", |b| b.iter(&mut c_abi));
    g.finish();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench") {
        return;
    }
    const BATCH: u32 = 20_000;
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        t.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH)
    };
    let (mut diffs, mut base) = (Vec::new(), Vec::new());
    for round in 0..41 {
        let (tr, tc) = if round % 2 == 0 {
            let tr = time(&mut rust);
            (tr, time(&mut c_abi))
        } else {
            let tc = time(&mut c_abi);
            (time(&mut rust), tc)
        };
        diffs.push(tc - tr);
        base.push(tr);
    }
    diffs.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    println!(
        "{name}: paired, 41 rounds of {BATCH} calls: rust {:.1} ns/call, c_abi - rust median \
         {:+.1} ns (quartiles {:+.1} .. {:+.1})",
        q(&base, 0.5),
        q(&diffs, 0.5),
        q(&diffs, 0.25),
        q(&diffs, 0.75)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
