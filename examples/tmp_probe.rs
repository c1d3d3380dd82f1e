use dropnorm::*;
use std::time::Instant;
fn main() {
    let shapes = [
        (Shape::nchw(64, 256, 28, 28), Layout::Nchw),
        (Shape::nchw(32, 64, 56, 56), Layout::Nchw),
        (Shape::nchw(8, 32, 28, 28), Layout::Nchw),
        (Shape::nc(4096, 1024), Layout::Nc),
        (Shape::nc(256, 4096), Layout::Nc),
        (Shape::nchw(8, 32, 28, 28), Layout::Nhwc),
        (Shape::nchw(32, 64, 56, 56), Layout::Nhwc),
    ];
    let t: usize = std::env::var("T").map(|v| v.parse().unwrap()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .build()
        .unwrap();
    pool.install(|| {
        for (shape, layout) in shapes {
            let n = shape.numel().unwrap();
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 * 0.01 + 3.0)
                .collect();
            let mut y = vec![0.0f32; n];
            let reps = (2e8 as usize / n).max(3);
            let t = Instant::now();
            for _ in 0..reps {
                testing::copy(Isa::Avx512, &x, &mut y, false).unwrap();
            }
            let tc = t.elapsed().as_secs_f64() / reps as f64;
            let (mut m, mut v) = (vec![0.0; shape.c], vec![0.0; shape.c]);
            let t = Instant::now();
            for _ in 0..reps {
                batch_norm_train(
                    &x,
                    &mut y,
                    shape,
                    layout,
                    &BnParams::new(1e-5),
                    SavedStats {
                        mean: &mut m,
                        invstd: &mut v,
                    },
                    None,
                )
                .unwrap();
            }
            let tb = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{:?} {layout:?}: copy {:.1} GB/s(8B), bn {:.1} GB/s(8B) = {:.2}",
                (shape.n, shape.c, shape.h, shape.w),
                8.0 * n as f64 / tc / 1e9,
                8.0 * n as f64 / tb / 1e9,
                tc / tb
            );
        }
    });
}
