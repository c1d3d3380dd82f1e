//! The determinism contract: identical bits for 1, 2 and 3 threads, for every ISA, and for a
//! tensor processed whole or in pieces with offsets.

#[macro_use]
mod common;

use common::*;
use dropnorm::rng::BLOCK;
use dropnorm::*;

/// Everything the elementwise API writes, as bits.
fn run_all(x: &[f32], params: &DropoutParams) -> (Vec<u32>, Vec<u8>, Vec<u32>) {
    let mut y = vec![f32::NAN; x.len()];
    dropout(x, &mut y, params).unwrap();
    let mut ym = vec![f32::NAN; x.len()];
    let mut mask = vec![0u8; mask_len(x.len())];
    dropout_with_mask(x, &mut ym, &mut mask, params).unwrap();
    assert_eq!(bits(&y), bits(&ym));
    let mut c = vec![f32::NAN; x.len()];
    let shape = Shape::nchw(3, 7, 65, 61);
    if x.len() == shape.numel().unwrap() {
        dropout_channels(x, &mut c, shape, Layout::Nchw, params).unwrap();
    }
    (bits(&y), mask, bits(&c))
}

#[test]
fn identical_bits_for_1_2_3_threads_on_every_isa() {
    let n = 3 * 7 * 65 * 61 * 3; // large enough to go parallel, not a multiple of anything
    let x = data(n, 1);
    let shape_x = data(3 * 7 * 65 * 61, 2);
    let mut results = Vec::new();
    for isa in Isa::available() {
        for threads in [1, 2, 3] {
            for off in [0u64, 1001] {
                let params = DropoutParams::new(0.4, 5).with_offset(off);
                let r = in_pool(threads, || {
                    with_isa(isa, || (run_all(&x, &params), run_all(&shape_x, &params))).unwrap()
                });
                results.push(((off, isa, threads), r));
            }
        }
    }
    // And from this test's own thread, outside any pool (thread count 0 in the key).
    for isa in Isa::available() {
        for off in [0u64, 1001] {
            let params = DropoutParams::new(0.4, 5).with_offset(off);
            let r = with_isa(isa, || (run_all(&x, &params), run_all(&shape_x, &params))).unwrap();
            results.push(((off, isa, 0), r));
        }
    }
    for off in [0u64, 1001] {
        let group: Vec<_> = results.iter().filter(|((o, _, _), _)| *o == off).collect();
        for (key, r) in &group[1..] {
            assert!(r == &group[0].1, "{key:?} differs from {:?}", group[0].0);
        }
    }
}

fn pieces_with_offsets_equal_the_whole() {
    let n = 5 * BLOCK + 777;
    let x = data(n, 3);
    let base = DropoutParams::new(0.6, 2024).with_offset(99);
    let mut whole = vec![0.0f32; n];
    let mut whole_mask = vec![0u8; mask_len(n)];
    dropout_with_mask(&x, &mut whole, &mut whole_mask, &base).unwrap();
    let keep = reference::keep_decisions(2024, 0.6, 99, n);
    // Cuts at awkward places: mid-group, mid-block, a one-element piece, an empty piece.
    let cuts = [0, 1, 17, 17, 5000, BLOCK + 3, 2 * BLOCK, 4 * BLOCK - 1, n];
    for isa in Isa::available() {
        let mut pieces = vec![f32::NAN; n];
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let params = base.with_offset(base.offset + a as u64);
            let mut mask = vec![0u8; mask_len(b - a)];
            with_isa(isa, || {
                dropout_with_mask(&x[a..b], &mut pieces[a..b], &mut mask, &params).unwrap()
            })
            .unwrap();
            assert_eq!(
                mask,
                reference::pack_mask(&keep[a..b]),
                "{isa} piece {a}..{b}"
            );
        }
        assert_eq!(bits(&pieces), bits(&whole), "{isa}");
    }
}

#[test]
fn batch_norm_identical_bits_for_1_2_3_threads() {
    let cases = [
        (Shape::nchw(4, 24, 33, 31), Layout::Nchw),
        (Shape::nchw(4, 24, 33, 31), Layout::Nhwc),
        (Shape::nc(3001, 70), Layout::Nc),
        (Shape::nc(70, 3001), Layout::Nc),
        // Bands of columns, as many as a multiple of the threads.
        (Shape::nc(40, 4096), Layout::Nc),
        // One statistics chunk large enough to split its column segments among the threads.
        (Shape::nc(40, 16384), Layout::Nc),
    ];
    for (shape, layout) in cases {
        let x: Vec<f32> = normals(shape.numel().unwrap(), 4)
            .iter()
            .map(|v| (7.0 + 2.0 * v) as f32)
            .collect();
        let gamma = vec![1.25f32; shape.c];
        let beta = vec![-0.5f32; shape.c];
        let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
        for isa in Isa::available() {
            let runs: Vec<_> = [1, 2, 3]
                .into_iter()
                .map(|t| {
                    in_pool(t, || {
                        with_isa(isa, || {
                            run_bn(
                                &x,
                                shape,
                                layout,
                                &params,
                                dropnorm::Epilogue::None,
                                Momentum::PyTorch(0.1),
                            )
                        })
                        .unwrap()
                    })
                })
                .collect();
            for (t, r) in runs.iter().enumerate().skip(1) {
                assert_eq!(
                    r.bits(),
                    runs[0].bits(),
                    "{isa} {layout:?} {shape:?}: {} threads",
                    t + 1
                );
            }
            // From a thread outside any pool (this test's): below 256 Ki elements such a call
            // runs on the caller's thread, where inside a pool it forks — the same bits.
            let outside = with_isa(isa, || {
                run_bn(
                    &x,
                    shape,
                    layout,
                    &params,
                    dropnorm::Epilogue::None,
                    Momentum::PyTorch(0.1),
                )
            })
            .unwrap();
            assert_eq!(
                outside.bits(),
                runs[0].bits(),
                "{isa} {layout:?} {shape:?}: called from outside a pool"
            );
            let mut st1 = vec![ChannelStats::default(); shape.c];
            let mut st3 = vec![ChannelStats::default(); shape.c];
            in_pool(1, || {
                with_isa(isa, || channel_stats(&x, &mut st1, shape, layout))
                    .unwrap()
                    .unwrap()
            });
            in_pool(3, || {
                with_isa(isa, || channel_stats(&x, &mut st3, shape, layout))
                    .unwrap()
                    .unwrap()
            });
            assert_eq!(st1, st3, "{isa} {layout:?}: channel_stats");
        }
    }
}

/// Training forward, inference and backward outputs (as bits) with `x`, `dy` and the outputs
/// at the given offsets (in floats) into guarded buffers.
fn bn_at_offsets(
    x: &[f32],
    shape: Shape,
    layout: Layout,
    params: &BnParams,
    [ox, oy, od]: [usize; 3],
) -> Vec<Vec<u32>> {
    let (n, c) = (x.len(), shape.c);
    let xg = Guarded::from(x, ox);
    let dy: Vec<f32> = x.iter().rev().map(|v| v - 7.0).collect();
    let dyg = Guarded::from(&dy, od);
    let mut y = Guarded::new(n, oy, f32::NAN);
    let (mut mean, mut invstd) = (vec![0.0f32; c], vec![0.0f32; c]);
    let saved = SavedStatsMut {
        mean: &mut mean,
        invstd: &mut invstd,
    };
    batch_norm_train(
        xg.window(),
        y.window_mut(),
        shape,
        layout,
        params,
        dropnorm::Epilogue::None,
        saved,
        None,
    )
    .unwrap();
    y.assert_guards("train");
    let mut out = vec![bits(y.window()), bits(&mean), bits(&invstd)];
    let var: Vec<f32> = invstd.iter().map(|s| 1.0 / (s * s)).collect();
    let running = RunningStats {
        mean: &mean,
        var: &var,
    };
    batch_norm_infer(
        xg.window(),
        y.window_mut(),
        shape,
        layout,
        params,
        dropnorm::Epilogue::None,
        &running,
    )
    .unwrap();
    y.assert_guards("infer");
    out.push(bits(y.window()));
    let (mut dg, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
    let saved = SavedStats {
        mean: &mean,
        invstd: &invstd,
    };
    let grads = BnGrads {
        dx: y.window_mut(),
        dgamma: &mut dg,
        dbeta: &mut db,
    };
    batch_norm_backward(
        xg.window(),
        dyg.window(),
        None,
        grads,
        shape,
        layout,
        params,
        &saved,
    )
    .unwrap();
    y.assert_guards("backward");
    out.extend([bits(y.window()), bits(&dg), bits(&db)]);
    out
}

/// The kernels align their stores (and tiles of constants) to cache lines, so they take
/// different paths for different buffer offsets: the bits must not change with them.
fn batch_norm_bits_do_not_depend_on_buffer_offsets() {
    let cases = [
        (Shape::nchw(3, 32, 9, 10), Layout::Nchw),
        (Shape::nchw(3, 32, 9, 10), Layout::Nhwc),
        (Shape::nchw(2, 20, 7, 9), Layout::Nhwc),
        (Shape::nc(150, 80), Layout::Nc),
        // Whole rows of 16, 48 and 64 columns; several 64-row flush blocks per chunk, odd
        // row counts.
        (Shape::nc(1001, 16), Layout::Nc),
        (Shape::nchw(3, 48, 13, 11), Layout::Nhwc),
        (Shape::nc(2047, 64), Layout::Nc),
    ];
    for (shape, layout) in cases {
        let x: Vec<f32> = normals(shape.numel().unwrap(), 9)
            .iter()
            .map(|v| (7.0 + 2.0 * v) as f32)
            .collect();
        let gamma: Vec<f32> = (0..shape.c).map(|i| 0.5 + i as f32 / 16.0).collect();
        let beta = vec![-0.5f32; shape.c];
        let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
        for isa in Isa::available() {
            let run = |o| with_isa(isa, || bn_at_offsets(&x, shape, layout, &params, o)).unwrap();
            let want = run([0, 0, 0]);
            for a in 1..16 {
                for o in [[a, a, a], [a, (a * 5) % 16, (a * 3) % 16], [0, a, 0]] {
                    assert!(
                        run(o) == want,
                        "{isa} {layout:?} {shape:?}: offsets {o:?} change the bits"
                    );
                }
            }
        }
    }
}

main_thread_checks!(
    pieces_with_offsets_equal_the_whole,
    batch_norm_bits_do_not_depend_on_buffer_offsets,
);

/// `on_caller_thread` inside a pool gives the pool's bits; nested and after a panic inside it,
/// calls still run and agree. (That the setting itself is restored is a unit test in
/// src/parallel.rs: the bits cannot show it, by design.)
#[test]
fn on_caller_thread_gives_the_same_bits_and_restores_the_setting() {
    let n = 3 * 7 * 65 * 61 * 3;
    let x = data(n, 3);
    let params = DropoutParams::new(0.3, 9);
    let shape = Shape::nchw(4, 24, 33, 31);
    let xb: Vec<f32> = normals(shape.numel().unwrap(), 5)
        .iter()
        .map(|v| (1.0 + 3.0 * v) as f32)
        .collect();
    let bn = BnParams::new(1e-5);
    let run = || {
        let d = run_all(&x, &params);
        let b = run_bn(
            &xb,
            shape,
            Layout::Nhwc,
            &bn,
            dropnorm::Epilogue::Relu,
            Momentum::PyTorch(0.1),
        )
        .bits();
        (d, b)
    };
    let pooled = in_pool(2, run);
    let caller = in_pool(2, || on_caller_thread(run));
    assert!(pooled == caller, "on_caller_thread changed the bits");
    let nested = in_pool(2, || on_caller_thread(|| on_caller_thread(|| 1) + 1));
    assert_eq!(nested, 2);
    let caught = std::panic::catch_unwind(|| on_caller_thread(|| panic!("inside")));
    assert!(caught.is_err());
    assert!(
        in_pool(2, run) == pooled,
        "bits after a panic inside on_caller_thread"
    );
}
