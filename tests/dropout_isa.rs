//! Every ISA against the scalar reference, bit for bit: lengths 0..=70 and around the RNG block
//! size, NaN-prefilled outputs, guard bands, unaligned starts, in place and out of place, with
//! and without the packed mask, forward and both backwards.

#[macro_use]
mod common;

use common::*;
use dropnorm::rng::BLOCK;
use dropnorm::*;

fn lengths() -> Vec<usize> {
    let mut v: Vec<usize> = (0..=70).collect();
    v.extend([BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5]);
    v
}

const PS: [f32; 5] = [0.0, 0.37, 0.5, 0.9, 1.0];
const OFFSETS: [u64; 4] = [0, 3, BLOCK as u64 - 5, (1 << 40) + 8];

/// Runs every entry point on `x` with `params` and checks each against the reference.
fn check_all_entry_points(x: &[f32], params: &DropoutParams, misalign: usize, what: &str) {
    let n = x.len();
    let want = reference::dropout(x, params);
    let keep: Vec<bool> = if params.training && params.p > 0.0 {
        reference::keep_decisions(params.seed, params.p, params.offset, n)
    } else {
        vec![true; n]
    };
    let want_mask = reference::pack_mask(&keep);

    // Out of place into a NaN-filled, guarded, misaligned window.
    let mut y = Guarded::new(n, misalign, f32::NAN);
    dropout(x, y.window_mut(), params).unwrap();
    assert_eq!(bits(y.window()), bits(&want), "{what}: dropout");
    y.assert_guards(what);

    // In place.
    let mut g = Guarded::from(x, misalign);
    dropout_inplace(g.window_mut(), params).unwrap();
    assert_eq!(bits(g.window()), bits(&want), "{what}: dropout_inplace");
    g.assert_guards(what);

    // With the mask; bytes past mask_len(n) stay untouched.
    let mut y = Guarded::new(n, misalign, f32::NAN);
    let mut mask = vec![0xA5u8; mask_len(n) + 3];
    dropout_with_mask(x, y.window_mut(), &mut mask, params).unwrap();
    assert_eq!(bits(y.window()), bits(&want), "{what}: dropout_with_mask y");
    assert_eq!(mask[..mask_len(n)], want_mask[..], "{what}: mask");
    assert!(
        mask[mask_len(n)..].iter().all(|&b| b == 0xA5),
        "{what}: mask overrun"
    );
    y.assert_guards(what);

    // Backward: regenerated, in place, and from the stored mask all equal the forward on dy.
    let dy = data(n, 99);
    let want_dx = reference::dropout(&dy, params);
    let mut dx = Guarded::new(n, misalign, f32::NAN);
    dropout_backward(&dy, dx.window_mut(), params).unwrap();
    assert_eq!(bits(dx.window()), bits(&want_dx), "{what}: backward");
    let mut d = Guarded::from(&dy, misalign);
    dropout_backward_inplace(d.window_mut(), params).unwrap();
    assert_eq!(bits(d.window()), bits(&want_dx), "{what}: backward_inplace");
    let mut dx = Guarded::new(n, misalign, f32::NAN);
    dropout_backward_with_mask(&dy, &mask, dx.window_mut(), params).unwrap();
    if params.p > 0.0 || !params.training {
        assert_eq!(
            bits(dx.window()),
            bits(&want_dx),
            "{what}: backward_with_mask"
        );
    } else {
        // p = 0 from a mask multiplies by 1.0 instead of copying: equal as values.
        let same = dx
            .window()
            .iter()
            .zip(&want_dx)
            .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
        assert!(same, "{what}: backward_with_mask p=0");
    }
    dx.assert_guards(what);
}

fn every_isa_matches_reference_bit_for_bit() {
    for_each_isa(|isa| {
        for n in lengths() {
            let x = data(n, n as u64);
            for (pi, &p) in PS.iter().enumerate() {
                for &off in &OFFSETS {
                    let params = DropoutParams::new(p, 1234 + pi as u64).with_offset(off);
                    let misalign = (n + pi) % 3;
                    let what = format!("{isa} n={n} p={p} offset={off} misalign={misalign}");
                    check_all_entry_points(&x, &params, misalign, &what);
                }
            }
        }
    });
}

fn eval_mode_and_p0_are_bit_exact_copies() {
    let mut x = data(1000, 5);
    x[3] = f32::from_bits(0x7F80_0001); // signalling NaN: any arithmetic would quiet it
    x[4] = f32::from_bits(0xFFC0_1234); // negative NaN with payload
    x[5] = -0.0;
    for_each_isa(|isa| {
        for params in [
            DropoutParams::new(0.0, 1),
            DropoutParams::new(0.7, 1).with_training(false),
        ] {
            let mut y = vec![f32::NAN; x.len()];
            dropout(&x, &mut y, &params).unwrap();
            assert_eq!(bits(&y), bits(&x), "{isa} {params:?}");
            let mut z = x.clone();
            dropout_inplace(&mut z, &params).unwrap();
            assert_eq!(bits(&z), bits(&x), "{isa} {params:?} in place");
        }
    });
}

fn p1_gives_positive_zeros_and_dropped_specials_give_zero() {
    let x = vec![f32::INFINITY, f32::NAN, -1.0, f32::NEG_INFINITY, -0.0, 5.0];
    for_each_isa(|isa| {
        let mut y = vec![f32::NAN; x.len()];
        let mut mask = vec![0xFFu8; 1];
        dropout_with_mask(&x, &mut y, &mut mask, &DropoutParams::new(1.0, 3)).unwrap();
        assert!(y.iter().all(|v| v.to_bits() == 0), "{isa}: {y:?}");
        assert_eq!(mask, [0]);
        // At p = 0.5 every dropped element is +0.0 whatever it was; kept ones are x * 2.
        let big: Vec<f32> = x.iter().cycle().take(6000).copied().collect();
        let mut y = vec![f32::NAN; big.len()];
        dropout(&big, &mut y, &DropoutParams::new(0.5, 8)).unwrap();
        let keep = reference::keep_decisions(8, 0.5, 0, big.len());
        for i in 0..big.len() {
            if keep[i] {
                assert_eq!(y[i].to_bits(), (big[i] * 2.0).to_bits());
            } else {
                assert_eq!(y[i].to_bits(), 0, "{isa}: dropped {} gave {}", big[i], y[i]);
            }
        }
    });
}

/// Outputs of 36 MiB: past the non-temporal threshold, so the streaming-store path (with its
/// alignment peeling) runs, on a misaligned window and a block-unaligned offset.
fn non_temporal_path_matches_reference() {
    let n = (testing::NT_MIN_BYTES / 4) + 4 * BLOCK + 13;
    let x = data(n, 7);
    for (off, misalign) in [(0u64, 0usize), (12_345, 1)] {
        let params = DropoutParams::new(0.3, 77).with_offset(off);
        let want = reference::dropout(&x, &params);
        for_each_isa(|isa| {
            let mut y = Guarded::new(n, misalign, f32::NAN);
            dropout(&x, y.window_mut(), &params).unwrap();
            assert!(bits(y.window()) == bits(&want), "{isa} offset {off}");
            y.assert_guards("nt");
            let mut mask = vec![0u8; mask_len(n)];
            dropout_with_mask(&x, y.window_mut(), &mut mask, &params).unwrap();
            let keep = reference::keep_decisions(77, 0.3, off, n);
            assert!(mask == reference::pack_mask(&keep), "{isa}: nt mask");
            let mut z = x.clone();
            dropout_inplace(&mut z, &params).unwrap();
            assert!(bits(&z) == bits(&want), "{isa}: nt in place");
        });
    }
}

/// A `len`-float window of a sentinel-filled buffer that starts `phase` floats past a 64-byte
/// boundary, with guards on both sides: (buffer, window start).
fn at_line_phase(len: usize, phase: usize, fill: f32) -> (Vec<f32>, usize) {
    let mut buf = vec![SENTINEL; len + 2 * 16 + 64];
    let to_line = (64 - buf.as_ptr() as usize % 64) % 64 / 4;
    let start = 16 + to_line + phase;
    buf[start..start + len].fill(fill);
    (buf, start)
}

/// Fused dropout makes keep decisions in registers where the output is line-aligned, each
/// vector's draws a window of two streams' (`m` lanes off): the output at each of the 16 float
/// positions of a line, against every stream phase of a block (`offset % 64`), lengths around
/// the unrolled loop's minimum and segments that cross a block, forward out of place, in place
/// and the regenerated backward.
fn every_output_line_phase_and_stream_phase() {
    let lens = [63, 64, 65, 79, 80, 127, 128, 129, 143, 200, 1000];
    let offsets: Vec<u64> = (0..64)
        .chain([BLOCK as u64 - 70, BLOCK as u64 - 112])
        .collect();
    let x = data(1000, 5);
    for_each_isa(|isa| {
        for &off in &offsets {
            let params = DropoutParams::new(0.4, 99).with_offset(off);
            let want = reference::dropout(&x, &params);
            for phase in 0..16 {
                for &n in &lens {
                    let what = format!("{isa} n={n} offset={off} line phase={phase}");
                    let (mut buf, a) = at_line_phase(n, phase, f32::NAN);
                    dropout(&x[..n], &mut buf[a..a + n], &params).unwrap();
                    assert_eq!(bits(&buf[a..a + n]), bits(&want[..n]), "{what}: dropout");
                    let outside = buf[..a].iter().chain(&buf[a + n..]);
                    assert!(
                        outside.into_iter().all(|&v| v == SENTINEL),
                        "{what}: guards"
                    );

                    let (mut buf, a) = at_line_phase(n, phase, 0.0);
                    buf[a..a + n].copy_from_slice(&x[..n]);
                    dropout_backward_inplace(&mut buf[a..a + n], &params).unwrap();
                    assert_eq!(bits(&buf[a..a + n]), bits(&want[..n]), "{what}: in place");
                }
            }
        }
    });
}

main_thread_checks!(
    every_output_line_phase_and_stream_phase,
    every_isa_matches_reference_bit_for_bit,
    eval_mode_and_p0_are_bit_exact_copies,
    p1_gives_positive_zeros_and_dropped_specials_give_zero,
    non_temporal_path_matches_reference,
);
