mod common;
use common::*;
use dropnorm::*;
#[test]
fn smoke() {
    for_each_isa(|isa| {
        for (shape, layout) in [(Shape::nchw(2,3,4,5), Layout::Nchw), (Shape::nchw(4,37,3,3), Layout::Nhwc), (Shape::nc(50, 70), Layout::Nc), (Shape::nchw(8,32,28,28), Layout::Nchw)] {
            let len = shape.numel().unwrap();
            let x: Vec<f32> = data(len, 5).iter().map(|v| if v.is_finite() { *v + 100.0 } else { 1.0 }).collect();
            let mut y = vec![f32::NAN; len];
            let c = shape.c;
            let (mut m, mut is) = (vec![0.0; c], vec![0.0; c]);
            batch_norm_train(&x, &mut y, shape, layout, &BnParams::new(1e-5), SavedStats { mean: &mut m, invstd: &mut is }, None).unwrap();
            let (want, st) = reference::batch_norm_train(&x, shape, layout, 1e-5, None, None, false);
            let mut maxerr = 0.0f64;
            for i in 0..len { maxerr = maxerr.max((y[i] as f64 - want[i]).abs()); }
            for ch in 0..c { assert!((m[ch] as f64 - st[ch].0).abs() < 1e-4, "{isa} mean {} {}", m[ch], st[ch].0); assert!((is[ch] as f64 / st[ch].2 - 1.0).abs() < 1e-5, "{isa} invstd {} {}", is[ch], st[ch].2); }
            assert!(maxerr < 1e-5, "{isa} {shape:?} {layout:?} maxerr {maxerr}");
        }
    });
}
