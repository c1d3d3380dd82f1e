//! The sequential path allocates nothing once warm (issue 10, C8): a counting global allocator
//! counts this thread's allocations over repeated calls of every kernel family at sizes below
//! the parallel threshold. (The first call of each may allocate its thread-local scratch.)

mod counting_alloc;

use dropnorm::*;

/// Allocations made by `f` on this thread over ten calls, after one to warm its scratch.
fn allocations(f: impl FnMut()) -> usize {
    counting_alloc::on_this_thread(1, 10, f)
}

#[test]
fn sequential_calls_allocate_nothing() {
    for isa in Isa::available() {
        with_isa(isa, || run_all(isa)).unwrap();
    }
}

/// The counter sees this thread's allocations (else the test above could not fail).
#[test]
fn the_counter_counts() {
    let count = allocations(|| {
        std::hint::black_box(vec![1u8; 100]);
    });
    assert_eq!(count, 10);
}

fn run_all(isa: Isa) {
    let shape = Shape::nchw(4, 24, 5, 7);
    let n = shape.numel().unwrap();
    let c = shape.c;
    let x: Vec<f32> = (0..n).map(|i| (i % 17) as f32 * 0.25 - 1.0).collect();
    let dy: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
    let mut y = vec![0.0f32; n];
    let mut dx = vec![0.0f32; n];
    let mut mask = vec![0u8; mask_len(n)];
    let dp = DropoutParams::new(0.3, 9);
    let check = |what: &str, count: usize| {
        assert_eq!(
            count, 0,
            "{isa}: {what} allocated {count} times in 10 warm calls"
        )
    };
    check("dropout", allocations(|| dropout(&x, &mut y, &dp).unwrap()));
    check(
        "dropout_with_mask",
        allocations(|| dropout_with_mask(&x, &mut y, &mut mask, &dp).unwrap()),
    );
    for layout in [Layout::Nchw, Layout::Nhwc] {
        check(
            "dropout_channels",
            allocations(|| dropout_channels(&x, &mut y, shape, layout, &dp).unwrap()),
        );
    }
    let (g, b) = (vec![1.5f32; c], vec![0.5f32; c]);
    let params = BnParams::new(1e-5).with_affine(&g, &b);
    let (mut mean, mut invstd) = (vec![0.0f32; c], vec![0.0f32; c]);
    let (mut rm, mut rv) = (vec![0.0f32; c], vec![1.0f32; c]);
    let (mut dg, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
    let mut st = vec![ChannelStats::default(); c];
    for layout in [Layout::Nchw, Layout::Nhwc] {
        check(
            "batch_norm_train",
            allocations(|| {
                let saved = SavedStatsMut {
                    mean: &mut mean,
                    invstd: &mut invstd,
                };
                let running = RunningStatsMut {
                    mean: &mut rm,
                    var: &mut rv,
                    batches: &mut 0,
                };
                let running = Some((running, Momentum::PyTorch(0.1)));
                batch_norm_train(
                    &x,
                    &mut y,
                    shape,
                    layout,
                    &params,
                    dropnorm::Epilogue::None,
                    saved,
                    running,
                )
                .unwrap()
            }),
        );
        let stats = RunningStats {
            mean: &rm,
            var: &rv,
        };
        check(
            "batch_norm_infer",
            allocations(|| {
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
        let saved = SavedStats {
            mean: &mean,
            invstd: &invstd,
        };
        check(
            "batch_norm_backward",
            allocations(|| {
                let grads = BnGrads {
                    dx: &mut dx,
                    dgamma: &mut dg,
                    dbeta: &mut db,
                };
                batch_norm_backward(&x, &dy, None, grads, shape, layout, &params, &saved).unwrap()
            }),
        );
        check(
            "batch_norm_backward_eval",
            allocations(|| {
                let grads = BnGrads {
                    dx: &mut dx,
                    dgamma: &mut dg,
                    dbeta: &mut db,
                };
                batch_norm_backward_eval(&x, &dy, None, grads, shape, layout, &params, &stats)
                    .unwrap()
            }),
        );
        check(
            "channel_stats",
            allocations(|| channel_stats(&x, &mut st, shape, layout).unwrap()),
        );
        check(
            "batch_norm_apply",
            allocations(|| {
                let saved = SavedStatsMut {
                    mean: &mut mean,
                    invstd: &mut invstd,
                };
                let running = RunningStatsMut {
                    mean: &mut rm,
                    var: &mut rv,
                    batches: &mut 0,
                };
                let running = Some((running, Momentum::PyTorch(0.1)));
                let ep = dropnorm::Epilogue::None;
                batch_norm_apply(&x, &mut y, shape, layout, &params, ep, &st, saved, running)
                    .unwrap()
            }),
        );
        let saved = SavedStats {
            mean: &mean,
            invstd: &invstd,
        };
        let mut sums = vec![GradSums::default(); c];
        check(
            "batch_norm_backward_sums",
            allocations(|| {
                batch_norm_backward_sums(&x, &dy, None, &mut sums, shape, layout, &saved).unwrap()
            }),
        );
        check(
            "batch_norm_backward_apply",
            allocations(|| {
                let grads = BnGrads {
                    dx: &mut dx,
                    dgamma: &mut dg,
                    dbeta: &mut db,
                };
                let p = &params;
                batch_norm_backward_apply(&x, &dy, None, grads, shape, layout, p, &saved, &sums)
                    .unwrap()
            }),
        );
    }
}
