//! Channel-wise dropout, NCHW and NHWC, every ISA against the reference, bit for bit.

#[macro_use]
mod common;

use common::*;
use dropnorm::*;

const SHAPES: [(usize, usize, usize, usize); 9] = [
    (2, 3, 4, 4),
    (1, 1, 1, 5),
    (3, 5, 1, 1),
    (4, 64, 7, 7),
    (2, 17, 3, 1),
    (1, 3, 130, 131),
    (2, 9000, 1, 3),  // NHWC: channels tiled over fewer than two rows per chunk
    (2, 20000, 2, 1), // NHWC: rows wider than a chunk
    (5, 1000, 1, 40), // NCHW: many small planes per task
];

fn every_isa_matches_reference() {
    for_each_isa(|isa| {
        for (si, &(n, c, h, w)) in SHAPES.iter().enumerate() {
            let shape = Shape::nchw(n, c, h, w);
            let len = shape.numel().unwrap();
            let x = data(len, si as u64);
            for layout in [Layout::Nchw, Layout::Nhwc] {
                for (p, off) in [(0.5f32, 0u64), (0.2, 13), (1.0, 0), (0.0, 0)] {
                    let params = DropoutParams::new(p, 31 + si as u64).with_offset(off);
                    let want =
                        reference::dropout_channels(&x, c, h * w, layout == Layout::Nhwc, &params);
                    let what = format!("{isa} {layout:?} {shape:?} p={p} off={off}");
                    let mut y = Guarded::new(len, si % 3, f32::NAN);
                    dropout_channels(&x, y.window_mut(), shape, layout, &params).unwrap();
                    assert!(bits(y.window()) == bits(&want), "{what}");
                    y.assert_guards(&what);
                    let mut z = Guarded::from(&x, 1);
                    dropout_channels_inplace(z.window_mut(), shape, layout, &params).unwrap();
                    assert!(bits(z.window()) == bits(&want), "{what} in place");
                    z.assert_guards(&what);
                    let mut dx = vec![f32::NAN; len];
                    dropout_channels_backward(&x, &mut dx, shape, layout, &params).unwrap();
                    assert!(bits(&dx) == bits(&want), "{what} backward");
                }
            }
        }
    });
}

fn whole_planes_are_kept_or_dropped() {
    let shape = Shape::nchw(8, 16, 5, 5);
    let x = vec![1.0f32; shape.numel().unwrap()];
    let mut y = vec![0.0f32; x.len()];
    dropout_channels(&x, &mut y, shape, Layout::Nchw, &DropoutParams::new(0.5, 3)).unwrap();
    let mut kept = 0;
    for plane in y.chunks(25) {
        assert!(plane.iter().all(|&v| v == plane[0]));
        kept += (plane[0] == 2.0) as usize;
    }
    assert!(kept > 0 && kept < 128);
    // NC: one element per plane, the same as elementwise dropout.
    let nc = Shape::nc(8, 16);
    let x = data(128, 4);
    let (mut a, mut b) = (vec![0.0f32; 128], vec![0.0f32; 128]);
    let params = DropoutParams::new(0.3, 9).with_offset(5);
    dropout_channels(&x, &mut a, nc, Layout::Nc, &params).unwrap();
    dropout(&x, &mut b, &params).unwrap();
    assert_eq!(bits(&a), bits(&b));
}

/// Past the non-temporal threshold (planes of a length that is not a multiple of 16, so each
/// plane starts at another alignment): the streaming path, fenced once per call.
fn non_temporal_matches_reference() {
    let (n, c, h, w) = (8, 16, 257, 257);
    let shape = Shape::nchw(n, c, h, w);
    let len = shape.numel().unwrap();
    assert!(len * 4 >= testing::NT_MIN_BYTES);
    let x = data(len, 77);
    let params = DropoutParams::new(0.4, 5).with_offset(3);
    let want = reference::dropout_channels(&x, c, h * w, false, &params);
    for_each_isa(|isa| {
        let mut y = vec![f32::NAN; len];
        dropout_channels(&x, &mut y, shape, Layout::Nchw, &params).unwrap();
        assert!(bits(&y) == bits(&want), "{isa}");
    });
}

main_thread_checks!(
    every_isa_matches_reference,
    whole_planes_are_kept_or_dropped,
    non_temporal_matches_reference,
);
