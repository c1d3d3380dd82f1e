//! Dropout over bf16 and f16 activations on every ISA: the same keep decisions as f32 (the
//! mask is a function of seed, index and p only), kept values `narrow(widen(x) · scale)`
//! bit for bit (f32 arithmetic, one rounding), dropped ones `+0.0`; in place = out of place;
//! backward from the seed and from a stored mask; channel-wise in NCHW and NHWC; `p = 0` a
//! bit-exact copy (signalling NaNs included) and `p = 1` zeros; odd starts and guards; the
//! same bits on 1, 2 and 3 threads.

#[macro_use]
mod common;

use common::*;
use dropnorm::{
    DropoutParams, Isa, Layout, Shape, bf16, dropout, dropout_backward, dropout_backward_with_mask,
    dropout_channels, dropout_inplace, dropout_with_mask, f16, mask_len, with_isa,
};

fn raw<E: Half>(v: &[E]) -> Vec<u16> {
    v.iter().map(|e| e.raw()).collect()
}

/// Test data in `E`: the shared mix of magnitudes and specials, narrowed, with the largest
/// finite value, signalling NaNs (every 53rd element: the kernels' loads may leave them
/// signalling for the multiply to quiet) and subnormals of both signs (every 61st: bf16
/// subnormals stay subnormal in f32, the lanes `vcvtneps2bf16` would flush) among them.
fn data_in<E: Half>(n: usize, salt: u64) -> Vec<E> {
    let mut v: Vec<E> = data(n, salt).into_iter().map(E::of).collect();
    if n > 5 {
        v[3] = E::of(f32::MAX); // ∞ in f16, the largest value rounded up in bf16 (∞ too)
    }
    for i in (5..n).step_by(53) {
        v[i] = E::from_raw(E::SNAN);
    }
    for i in (7..n).step_by(61) {
        let sign = if i % 2 == 0 { 0x8000 } else { 0 };
        v[i] = E::from_raw(sign | (1 + (i % 127) as u16));
    }
    v
}

/// The expected output of dropout from the f32 mask of the same parameters.
fn expected<E: Half>(x: &[E], mask: &[u8], scale: f32) -> Vec<u16> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if mask[i / 8] >> (i % 8) & 1 == 1 {
                E::of(v.wide() * scale).raw()
            } else {
                0
            }
        })
        .collect()
}

/// The f32 mask of `n` elements with `params`.
fn f32_mask(n: usize, params: &DropoutParams) -> Vec<u8> {
    let x = vec![1.0f32; n];
    let mut y = vec![0.0f32; n];
    let mut mask = vec![0u8; mask_len(n)];
    dropout_with_mask(&x, &mut y, &mut mask, params).unwrap();
    mask
}

fn check_type<E: Half>(isa: Isa, name: &str) {
    let lens: Vec<usize> = (0..=70)
        .chain([1 << 14, (1 << 14) + 1, 2 * (1 << 14) + 37])
        .collect();
    for &n in &lens {
        for (p, off) in [(0.3f32, 0u64), (0.5, 12_345), (0.9, 1 << 14)] {
            let params = DropoutParams::new(p, 17).with_offset(off);
            let x = data_in::<E>(n + 1, n as u64);
            let x = &x[1..]; // an odd start: 2 bytes past the allocation's alignment
            let want_mask = f32_mask(n, &params);
            let want = expected(x, &want_mask, params.scale());

            let mut y = vec![E::of(-3.0); n + 2];
            dropout(x, &mut y[1..n + 1], &params).unwrap();
            assert!(raw(&y[1..n + 1]) == want, "{isa} {name} n={n} p={p}");
            assert_eq!(
                (y[0].raw(), y[n + 1].raw()),
                (E::of(-3.0).raw(), E::of(-3.0).raw()),
                "{isa} {name}: guards"
            );

            let mut ym = vec![E::of(0.0); n];
            let mut mask = vec![0u8; mask_len(n)];
            dropout_with_mask(x, &mut ym, &mut mask, &params).unwrap();
            assert_eq!(
                mask, want_mask,
                "{isa} {name} n={n}: the mask is the f32 one"
            );
            assert!(raw(&ym) == want, "{isa} {name} n={n}: with mask");

            let mut z = x.to_vec();
            dropout_inplace(&mut z, &params).unwrap();
            assert!(raw(&z) == want, "{isa} {name} n={n}: in place");

            let mut dx = vec![E::of(0.0); n];
            dropout_backward(x, &mut dx, &params).unwrap();
            assert!(raw(&dx) == want, "{isa} {name} n={n}: backward");
            let mut dx = vec![E::of(0.0); n];
            dropout_backward_with_mask(x, &mask, &mut dx, &params).unwrap();
            assert!(
                raw(&dx) == want,
                "{isa} {name} n={n}: backward from the mask"
            );
        }
        // p = 0 copies the bits (a signalling NaN included); p = 1 writes +0.0.
        let x = data_in::<E>(n, 9);
        let mut y = vec![E::of(1.0); n];
        dropout(&x, &mut y, &DropoutParams::new(0.0, 1)).unwrap();
        assert!(raw(&y) == raw(&x), "{isa} {name} n={n}: p = 0");
        dropout(&x, &mut y, &DropoutParams::new(1.0, 1)).unwrap();
        assert!(y.iter().all(|v| v.raw() == 0), "{isa} {name} n={n}: p = 1");
    }

    // Channel-wise: each plane kept or dropped as the f32 planes are.
    for (shape, layout) in [
        (Shape::nchw(3, 5, 7, 3), Layout::Nchw),
        (Shape::nchw(3, 5, 7, 3), Layout::Nhwc),
        (Shape::nchw(64, 3, 2, 2), Layout::Nhwc),
        (Shape::nchw(2, 70, 1, 1), Layout::Nchw),
    ] {
        let n = shape.numel().unwrap();
        let params = DropoutParams::new(0.4, 23);
        let ones = vec![1.0f32; n];
        let mut kept = vec![0.0f32; n];
        dropout_channels(&ones, &mut kept, shape, layout, &params).unwrap();
        let x = data_in::<E>(n, 4);
        let want: Vec<u16> = x
            .iter()
            .zip(&kept)
            .map(|(&v, &k)| {
                if k != 0.0 {
                    E::of(v.wide() * params.scale()).raw()
                } else {
                    0
                }
            })
            .collect();
        let mut y = vec![E::of(0.0); n];
        dropout_channels(&x, &mut y, shape, layout, &params).unwrap();
        assert!(raw(&y) == want, "{isa} {name} {shape:?} {layout:?}");
    }
}

fn bf16_and_f16_dropout_match_the_reference() {
    for_each_isa(|isa| {
        check_type::<bf16>(isa, "bf16");
        check_type::<f16>(isa, "f16");
    });
}

main_thread_checks!(bf16_and_f16_dropout_match_the_reference);

/// Large enough to go parallel (and through the non-temporal path for f32's 32 MiB: not
/// reached by 16-bit data of this size, whose own threshold is the same bytes).
#[test]
fn typed_dropout_bits_do_not_depend_on_the_thread_count() {
    let n = 3 * (1 << 16) + 77;
    let xb = data_in::<bf16>(n, 1);
    let xh = data_in::<f16>(n, 2);
    let params = DropoutParams::new(0.35, 5).with_offset(999);
    for isa in Isa::available() {
        let run = || {
            with_isa(isa, || {
                let mut yb = vec![bf16::ZERO; n];
                let mut yh = vec![f16::ZERO; n];
                dropout(&xb, &mut yb, &params).unwrap();
                dropout(&xh, &mut yh, &params).unwrap();
                (raw(&yb), raw(&yh))
            })
            .unwrap()
        };
        let one = in_pool(1, run);
        for t in [2, 3] {
            assert!(in_pool(t, run) == one, "{isa}: {t} threads");
        }
    }
}

/// 16-bit outputs of 32 MiB and more take the non-temporal stores (32-byte vectors, a head
/// peeled to their alignment); an odd start makes that head non-empty.
#[test]
fn typed_dropout_non_temporal_path() {
    let n = (dropnorm::testing::NT_MIN_BYTES / 2) + 33;
    let params = DropoutParams::new(0.25, 8);
    let mask = f32_mask(n, &params);
    fn run<E: Half>(n: usize, params: &DropoutParams, mask: &[u8], name: &str) {
        let x = data_in::<E>(n + 1, 6);
        let x = &x[1..];
        let want = expected(x, mask, params.scale());
        for isa in Isa::available() {
            let mut y = vec![E::of(0.0); n + 1];
            with_isa(isa, || dropout(x, &mut y[1..], params).unwrap()).unwrap();
            assert!(raw(&y[1..]) == want, "{isa} {name}: non-temporal dropout");
        }
    }
    run::<bf16>(n, &params, &mask, "bf16");
    run::<f16>(n, &params, &mask, "f16");
}
