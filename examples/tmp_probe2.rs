use dropnorm::*;
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (shape, layout) = if args.len() == 2 {
        (Shape::nc(args[0], args[1]), Layout::Nc)
    } else {
        (
            Shape::nchw(args[0], args[1], args[2], args[3]),
            Layout::Nhwc,
        )
    };
    let n = shape.numel().unwrap();
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 0.01 + 3.0)
        .collect();
    let mut y = vec![0.0f32; n];
    let (mut m, mut v) = (vec![0.0; shape.c], vec![0.0; shape.c]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        for _ in 0..(1e10 as usize / n) {
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
    });
}
