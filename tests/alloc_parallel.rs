//! The parallel path allocates nothing per call beyond what rayon itself does (issue 10, C8).
//!
//! A counting global allocator counts every thread's allocations over repeated calls at sizes
//! above the parallel threshold, on a two-thread pool (calls from inside it) and from a
//! thread outside it. The baseline is rayon alone: a `par_chunks_mut` loop over the same
//! buffer, run the same way. Rayon's own allocations come from handing a job from a thread
//! outside the pool to it (crossbeam's injector queue allocates a block per 63 jobs; its
//! epoch-based reclamation allocates when a thread's garbage bag fills), never from a
//! `join` inside the pool.
#![cfg(feature = "rayon")]

mod counting_alloc;

use dropnorm::*;
use rayon::prelude::*;

const CALLS: usize = 200;

/// Allocations on any thread during `CALLS` calls of `f`, after a few warm ones.
fn allocations(f: &mut (dyn FnMut() + Send)) -> usize {
    counting_alloc::on_any_thread(5, CALLS, f)
}

/// One test, so that no other test's allocations run concurrently with the counting.
#[test]
fn parallel_calls_allocate_no_more_than_rayon() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // Above the thresholds of both kinds of caller (in the pool and outside it).
    let shape = Shape::nchw(16, 64, 16, 16);
    let n = shape.numel().unwrap();
    let c = shape.c;
    let x: Vec<f32> = (0..n).map(|i| (i % 17) as f32 * 0.25 - 1.0).collect();
    let dy: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
    let mut y = vec![0.0f32; n];
    let mut dx = vec![0.0f32; n];
    let dp = DropoutParams::new(0.3, 9);
    let (g, b) = (vec![1.5f32; c], vec![0.5f32; c]);
    let params = BnParams::new(1e-5).with_affine(&g, &b);
    let (mut mean, mut invstd) = (vec![0.0f32; c], vec![0.0f32; c]);
    let (rm, rv) = (vec![0.0f32; c], vec![1.0f32; c]);
    let (mut dg, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);

    for inside in [true, false] {
        let run = |f: &mut (dyn FnMut() + Send)| {
            if inside {
                pool.install(|| allocations(f))
            } else {
                // Rayon's global pool, from this (outside) thread.
                allocations(f)
            }
        };
        let mut buf = vec![0.0f32; n];
        let rayon_alone = run(&mut || {
            buf.par_chunks_mut(1 << 14).for_each(|c| c[0] += 1.0);
        });
        let mut report = Vec::new();
        let mut check = |what: &str, count: usize| report.push((what.to_string(), count));
        check("dropout", run(&mut || dropout(&x, &mut y, &dp).unwrap()));
        for layout in [Layout::Nchw, Layout::Nhwc] {
            check(
                "dropout_channels",
                run(&mut || dropout_channels(&x, &mut y, shape, layout, &dp).unwrap()),
            );
            let stats = RunningStats {
                mean: &rm,
                var: &rv,
            };
            check(
                "batch_norm_infer",
                run(&mut || {
                    batch_norm_infer(
                        &x,
                        &mut y,
                        shape,
                        layout,
                        &params,
                        dropnorm::Epilogue::None,
                        &stats,
                    )
                    .unwrap()
                }),
            );
            check(
                "batch_norm_train",
                run(&mut || {
                    let saved = SavedStatsMut {
                        mean: &mut mean,
                        invstd: &mut invstd,
                    };
                    batch_norm_train(
                        &x,
                        &mut y,
                        shape,
                        layout,
                        &params,
                        dropnorm::Epilogue::None,
                        saved,
                        None,
                    )
                    .unwrap()
                }),
            );
            let saved = SavedStats {
                mean: &mean,
                invstd: &invstd,
            };
            check(
                "batch_norm_backward",
                run(&mut || {
                    let grads = BnGrads {
                        dx: &mut dx,
                        dgamma: &mut dg,
                        dbeta: &mut db,
                    };
                    batch_norm_backward(&x, &dy, None, grads, shape, layout, &params, &saved)
                        .unwrap()
                }),
            );
        }
        // Rayon's allocations vary a little from run to run (when a garbage bag fills, how
        // many jobs a call injects): allow a few beyond the baseline, far fewer than calls.
        let slack = CALLS / 20;
        let place = if inside {
            "inside the pool"
        } else {
            "outside the pool"
        };
        eprintln!("{place}: rayon alone {rayon_alone} allocations in {CALLS} calls");
        for (what, count) in report {
            eprintln!("{place}: {what} {count}");
            assert!(
                count <= rayon_alone + slack,
                "{what} ({place}): {count} allocations in {CALLS} calls, rayon alone {rayon_alone}"
            );
        }
    }
}
