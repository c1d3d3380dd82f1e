//! The roofline: every kernel's throughput against this machine's copy bandwidth, measured in
//! the same process, at the same sizes and thread counts.
//!
//! ```text
//! cargo run --release --example roofline                 # full run, table
//! cargo run --release --example roofline -- --json       # one JSON object per line
//! cargo run --release --example roofline -- --quick      # short smoke run (CI)
//! cargo run --release --example roofline -- --threads 2  # one thread count
//! cargo run --release --example roofline -- --isa avx2   # another ISA than the best
//! cargo run --release --example roofline -- --filter nhwc # rows matching "kernel layout shape"
//! cargo run --release --example roofline -- --budget-ms 100 --no-naive  # faster (compare.py)
//! ```
//!
//! GB/s are of each kernel's minimum traffic (dropout: read x, write y = 8 B/element; with
//! the mask 8 B + 1 bit; batch-norm training forward and inference: 8 B/element; batch norm +
//! residual add + ReLU and batch-norm backward: 12 B/element). `frac` divides by the
//! plain-store copy of the same bytes, `frac_nt` by the non-temporal-store copy; a kernel that
//! skips the read-for-ownership with non-temporal stores can show `frac > 1`. `speedup` is
//! against the naive scalar version (one `rand_xoshiro` call and a branch per element, one
//! thread).
//!
//! Split phase: `bn_stats` is [`channel_stats`](dropnorm::channel_stats) alone (a read of `x`,
//! 4 B/element), `bn_apply` the forward's one-pass second phase (8 B/element) and
//! `bn_backward_apply` the backward's (12 B/element): with the statistics of a tensor at hand
//! (merged from shards, or computed by the kernel that produced it), each crosses memory once.
//!
//! `two_pass_bound` (NC and NHWC shapes) is no kernel: a statistics pass over `x` plus the
//! faster of the two copies, timed in the same run — the best any training forward that reads
//! `x` twice can do there. NC and NHWC read twice: a block of columns over all rows, which a
//! single read needs to keep in cache, is larger than L2 at these sizes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use dropnorm::{
    BnParams, DropoutParams, Isa, Layout, RunningStats, SavedStatsMut, Shape, mask_len, reference,
    testing, with_isa,
};
use rayon::prelude::*;

struct Opts {
    quick: bool,
    json: bool,
    threads: Vec<usize>,
    isa: Isa,
    /// Only rows whose "kernel layout shape" contains this.
    filter: Option<String>,
    /// Time budget of each measurement (default: 400 ms, 30 ms with `--quick`).
    budget: Option<Duration>,
    /// Whether to time the naive scalar baselines.
    naive: bool,
}

impl Opts {
    fn wants(&self, kernel: &str, layout: &str, shape: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| format!("{kernel} {layout} {shape}").contains(f.as_str()))
    }
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        json: false,
        threads: Vec::new(),
        isa: Isa::best(),
        filter: None,
        budget: None,
        naive: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = true,
            "--threads" => {
                let t = args.next().ok_or("--threads needs a number")?;
                o.threads = vec![t.parse().map_err(|_| format!("bad thread count {t:?}"))?];
            }
            "--isa" => {
                let name = args.next().ok_or("--isa needs a name")?;
                o.isa = name.parse().map_err(|e| format!("{e}"))?;
                if !o.isa.is_available() {
                    return Err(format!("{} is not available on this CPU", o.isa));
                }
            }
            "--filter" => o.filter = Some(args.next().ok_or("--filter needs a pattern")?),
            "--budget-ms" => {
                let t = args.next().ok_or("--budget-ms needs a number")?;
                let ms = t.parse().map_err(|_| format!("bad budget {t:?}"))?;
                o.budget = Some(Duration::from_millis(ms));
            }
            "--no-naive" => o.naive = false,
            "-h" | "--help" => {
                println!(
                    "usage: roofline [--quick] [--json] [--threads N] [--isa portable|avx2|avx512] [--filter TEXT] [--budget-ms MS] [--no-naive]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if o.threads.is_empty() {
        let max = std::thread::available_parallelism().map_or(1, |n| n.get());
        o.threads = if max > 1 { vec![1, max] } else { vec![1] };
    }
    Ok(o)
}

/// Seconds of the naive baseline `f`, unless `--no-naive`.
fn naive_secs(o: &Opts, budget: Duration, f: impl FnMut()) -> Option<f64> {
    o.naive.then(|| time(budget, f).as_secs_f64())
}

/// Median wall time of `f` over repetitions filling at least `budget` (at least 5 runs, after
/// one warm-up run).
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let mut runs = Vec::new();
    let start = Instant::now();
    while runs.len() < 5 || start.elapsed() < budget {
        let t = Instant::now();
        f();
        runs.push(t.elapsed());
        if runs.len() >= 1000 {
            break;
        }
    }
    runs.sort();
    runs[runs.len() / 2]
}

/// Copies in the same 16 Ki-element chunks the kernels use, on the current rayon pool.
fn par_copy(isa: Isa, x: &[f32], y: &mut [f32], nt: bool) {
    y.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .with_min_len(4)
        .for_each(|(yc, xc)| testing::copy(isa, xc, yc, nt).expect("isa checked"));
}

/// Plain-store and non-temporal-store copy bandwidth (GB/s of 8 B/element) of `x` into `y`.
fn copy_bandwidth(isa: Isa, x: &[f32], y: &mut [f32], budget: Duration) -> (f64, f64) {
    let bytes = 8.0 * x.len() as f64;
    let copy = time(budget, || par_copy(isa, x, y, false)).as_secs_f64();
    let copy_nt = if testing::has_nt(isa) {
        time(budget, || par_copy(isa, x, y, true)).as_secs_f64()
    } else {
        copy
    };
    (bytes / copy / 1e9, bytes / copy_nt / 1e9)
}

struct Row {
    kernel: &'static str,
    layout: &'static str,
    shape: String,
    elems: usize,
    threads: usize,
    isa: Isa,
    secs: f64,
    bytes: f64,
    copy_gbps: f64,
    copy_nt_gbps: f64,
    naive_secs: Option<f64>,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.bytes / self.secs / 1e9
    }
    fn print(&self, json: bool) {
        let gbps = self.gbps();
        let speedup = self.naive_secs.map(|n| n / self.secs);
        if json {
            println!(
                "{{\"kernel\":\"{}\",\"layout\":\"{}\",\"shape\":\"{}\",\"elems\":{},\"threads\":{},\"isa\":\"{}\",\"ms\":{:.4},\"gbps\":{:.3},\"copy_gbps\":{:.3},\"copy_nt_gbps\":{:.3},\"frac\":{:.4},\"frac_nt\":{:.4},\"speedup\":{}}}",
                self.kernel,
                self.layout,
                self.shape,
                self.elems,
                self.threads,
                self.isa,
                self.secs * 1e3,
                gbps,
                self.copy_gbps,
                self.copy_nt_gbps,
                gbps / self.copy_gbps,
                gbps / self.copy_nt_gbps,
                speedup.map_or("null".to_string(), |s| format!("{s:.2}")),
            );
        } else {
            println!(
                "{:<17} {:<6} {:<12} {:>3} {:<8} {:>9.3} {:>8.2} {:>8.2} {:>6.2} {:>7.2} {:>9}",
                self.kernel,
                self.layout,
                self.shape,
                self.threads,
                self.isa.name(),
                self.secs * 1e3,
                gbps,
                self.copy_gbps,
                gbps / self.copy_gbps,
                gbps / self.copy_nt_gbps,
                speedup.map_or("-".to_string(), |s| format!("{s:.1}x")),
            );
        }
    }
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("roofline: {e}");
            std::process::exit(2);
        }
    };
    let budget = o
        .budget
        .unwrap_or(Duration::from_millis(if o.quick { 30 } else { 400 }));
    let sizes: &[usize] = if o.quick {
        &[1 << 16, 1 << 20]
    } else {
        &[1 << 16, 1 << 20, 1 << 24]
    };
    if !o.json {
        println!(
            "dropnorm roofline — isa {} (best here: {}), non-temporal stores from {} MiB of output",
            o.isa,
            Isa::best(),
            testing::NT_MIN_BYTES >> 20
        );
        println!(
            "{:<17} {:<6} {:<12} {:>3} {:<8} {:>9} {:>8} {:>8} {:>6} {:>7} {:>9}",
            "kernel",
            "layout",
            "shape",
            "thr",
            "isa",
            "ms",
            "GB/s",
            "copyGB/s",
            "frac",
            "frac_nt",
            "vs naive"
        );
    }
    for &threads in &o.threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| {
            with_isa(o.isa, || {
                run_dropout(&o, threads, budget, sizes);
                run_bn_train(&o, threads, budget);
            })
            .expect("isa checked")
        });
    }
}

fn run_dropout(o: &Opts, threads: usize, budget: Duration, sizes: &[usize]) {
    for &n in sizes {
        if !o.wants("dropout", "flat", &format!("[{n}]")) {
            continue;
        }
        let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.001).collect();
        let mut y = vec![0.0f32; n];
        let mut mask = vec![0u8; mask_len(n)];
        let bytes = 8.0 * n as f64;
        let secs = |d: Duration| d.as_secs_f64();

        let (copy_gbps, copy_nt_gbps) = copy_bandwidth(o.isa, &x, &mut y, budget);
        let naive = naive_secs(o, budget, || {
            reference::dropout_naive(black_box(&x), &mut y, 0.5, 1)
        });

        let params = DropoutParams::new(0.5, 42);
        let mut step = 0u64;
        let row = |kernel, bytes: f64, f: &mut dyn FnMut()| {
            let d = secs(time(budget, f));
            Row {
                kernel,
                layout: "flat",
                shape: format!("[{n}]"),
                elems: n,
                threads,
                isa: o.isa,
                secs: d,
                bytes,
                copy_gbps,
                copy_nt_gbps,
                naive_secs: naive,
            }
            .print(o.json);
        };
        row("dropout", bytes, &mut || {
            step += 1;
            dropnorm::dropout(&x, &mut y, &params.with_offset(step << 32)).expect("valid")
        });
        row("dropout_mask", bytes + n as f64 / 8.0, &mut || {
            dropnorm::dropout_with_mask(&x, &mut y, &mut mask, &params).expect("valid")
        });
        row("dropout_backward", bytes, &mut || {
            dropnorm::dropout_backward(&x, &mut y, &params).expect("valid")
        });

        // Channel-wise dropout, NCHW and NHWC: small images (2×2, one channel: one keep
        // decision per 4 values) and 4×4 images of 64 channels.
        for (shape, lname, layout) in [
            (Shape::nchw(n / 4, 1, 2, 2), "nchw", Layout::Nchw),
            (Shape::nchw(n / 4, 1, 2, 2), "nhwc", Layout::Nhwc),
            (Shape::nchw(n / 1024, 64, 4, 4), "nchw", Layout::Nchw),
            (Shape::nchw(n / 1024, 64, 4, 4), "nhwc", Layout::Nhwc),
        ] {
            let sname = format!("({},{},{},{})", shape.n, shape.c, shape.h, shape.w);
            if !o.wants("dropout_channels", lname, &sname) {
                continue;
            }
            let d = secs(time(budget, || {
                dropnorm::dropout_channels(&x, &mut y, shape, layout, &params).expect("valid")
            }));
            Row {
                kernel: "dropout_channels",
                layout: lname,
                shape: sname,
                elems: n,
                threads,
                isa: o.isa,
                secs: d,
                bytes,
                copy_gbps,
                copy_nt_gbps,
                naive_secs: None,
            }
            .print(o.json);
        }
    }
}

/// The batch-norm training-forward shapes of the roofline.
fn bn_shapes(quick: bool) -> Vec<(Shape, Layout)> {
    let nchw: &[(usize, usize, usize, usize)] = if quick {
        &[(8, 32, 28, 28)]
    } else {
        &[(8, 32, 28, 28), (32, 64, 56, 56), (64, 256, 28, 28)]
    };
    let nc: &[(usize, usize)] = if quick {
        &[(256, 4096)]
    } else {
        &[(256, 4096), (4096, 1024)]
    };
    let mut v = Vec::new();
    for &(n, c, h, w) in nchw {
        v.push((Shape::nchw(n, c, h, w), Layout::Nchw));
    }
    for &(n, c) in nc {
        v.push((Shape::nc(n, c), Layout::Nc));
    }
    for &(n, c, h, w) in nchw {
        v.push((Shape::nchw(n, c, h, w), Layout::Nhwc));
    }
    v
}

fn run_bn_train(o: &Opts, threads: usize, budget: Duration) {
    for (shape, layout) in bn_shapes(o.quick) {
        let n = shape.numel().expect("fixed shapes");
        let c = shape.c;
        let (lname, sname) = (layout_name(layout), shape_name(shape, layout));
        if ![
            "bn_train",
            "bn_stats",
            "bn_apply",
            "bn_infer",
            "bn_add_relu",
            "bn_backward",
            "bn_backward_apply",
            "two_pass_bound",
        ]
        .iter()
        .any(|k| o.wants(k, lname, &sname))
        {
            continue;
        }
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01 + 3.0)
            .collect();
        let mut y = vec![0.0f32; n];
        let (copy_gbps, copy_nt_gbps) = copy_bandwidth(o.isa, &x, &mut y, budget);
        let naive = naive_secs(o, budget, || match layout {
            Layout::Nchw => {
                reference::batch_norm_train_naive(&x, &mut y, shape.n, c, shape.h * shape.w, 1e-5)
            }
            _ => reference::batch_norm_train_naive_cols(&x, &mut y, n / c, c, 1e-5),
        });
        let gamma = vec![1.5f32; c];
        let beta = vec![0.25f32; c];
        let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
        let (mut mean, mut invstd) = (vec![0.0f32; c], vec![0.0f32; c]);
        let d = time(budget, || {
            let saved = SavedStatsMut {
                mean: &mut mean,
                invstd: &mut invstd,
            };
            dropnorm::batch_norm_train(
                &x,
                &mut y,
                shape,
                layout,
                &params,
                dropnorm::Epilogue::None,
                saved,
                None,
            )
            .expect("valid")
        });
        let row = |kernel, secs: f64, bytes: f64, naive: Option<f64>| Row {
            kernel,
            layout: lname,
            shape: sname.clone(),
            elems: n,
            threads,
            isa: o.isa,
            secs,
            bytes,
            copy_gbps,
            copy_nt_gbps,
            naive_secs: naive,
        };
        row("bn_train", d.as_secs_f64(), 8.0 * n as f64, naive).print(o.json);

        // Split phase: the statistics alone (a read of x, 4 B/element), then `apply` with
        // them (read x, write y: one pass, what a synchronized batch norm runs per shard).
        let mut st = vec![dropnorm::ChannelStats::default(); c];
        let d = time(budget, || {
            dropnorm::channel_stats(&x, &mut st, shape, layout).expect("valid")
        });
        row("bn_stats", d.as_secs_f64(), 4.0 * n as f64, None).print(o.json);
        let d = time(budget, || {
            let saved = SavedStatsMut {
                mean: &mut mean,
                invstd: &mut invstd,
            };
            let ep = dropnorm::Epilogue::None;
            dropnorm::batch_norm_apply(&x, &mut y, shape, layout, &params, ep, &st, saved, None)
                .expect("valid")
        });
        row("bn_apply", d.as_secs_f64(), 8.0 * n as f64, None).print(o.json);

        // The ceiling of any kernel that reads x twice (statistics, then normalization): this
        // crate's statistics loop over x (as 64 NCHW channels, so every thread reads) plus
        // the faster copy of x, timed here. NC and NHWC training (and, with a second input,
        // backward) take that road when a column block does not fit in L2.
        if layout != Layout::Nchw && o.wants("two_pass_bound", lname, &sname) {
            let mut st = vec![dropnorm::ChannelStats::default(); 64];
            let flat = Shape::nchw(1, 64, 1, n / 64);
            let read = time(budget, || {
                dropnorm::channel_stats(&x, &mut st, flat, Layout::Nchw).expect("valid")
            });
            let copy = 8.0 * n as f64 / copy_gbps.max(copy_nt_gbps) / 1e9;
            row(
                "two_pass_bound",
                read.as_secs_f64() + copy,
                8.0 * n as f64,
                None,
            )
            .print(o.json);
        }

        // Inference and the fused residual add + ReLU (the batch statistics serve as the
        // running ones). `frac` compares rates, so it holds for 12 B/element too.
        let stats = RunningStats {
            mean: &mean,
            var: &invstd,
        };
        let hw = if layout == Layout::Nchw {
            shape.h * shape.w
        } else {
            1
        };
        let (a, b) = (vec![0.5f32; c], vec![0.1f32; c]);
        let res: Vec<f32> = x.iter().rev().copied().collect();
        let naive = naive_secs(o, budget, || {
            reference::batch_norm_infer_naive(&x, None, &mut y, c, hw, &a, &b)
        });
        let d = time(budget, || {
            dropnorm::batch_norm_infer(
                &x,
                &mut y,
                shape,
                layout,
                &params,
                dropnorm::Epilogue::None,
                &stats,
            )
            .expect("valid")
        });
        let bytes = 8.0 * n as f64;
        row("bn_infer", d.as_secs_f64(), bytes, naive).print(o.json);
        let naive = naive_secs(o, budget, || {
            reference::batch_norm_infer_naive(&x, Some(&res), &mut y, c, hw, &a, &b)
        });
        let d = time(budget, || {
            dropnorm::batch_norm_add_relu_infer(&x, &res, &mut y, shape, layout, &params, &stats)
                .expect("valid")
        });
        let bytes = 12.0 * n as f64;
        row("bn_add_relu", d.as_secs_f64(), bytes, naive).print(o.json);

        // Backward (12 B/element: read x and dy, write dx), against a naive two-pass loop.
        let dy = res;
        let (mut dg, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
        let saved = dropnorm::SavedStats {
            mean: &mean,
            invstd: &invstd,
        };
        let naive = naive_secs(o, budget, || {
            reference::batch_norm_backward_naive(&x, &dy, &mut y, c, hw, &mean, &invstd)
        });
        let d = time(budget, || {
            let grads = dropnorm::BnGrads {
                dx: &mut y,
                dgamma: &mut dg,
                dbeta: &mut db,
            };
            dropnorm::batch_norm_backward(&x, &dy, None, grads, shape, layout, &params, &saved)
                .expect("valid")
        });
        row("bn_backward", d.as_secs_f64(), bytes, naive).print(o.json);

        // The split backward's second phase: dx from merged sums, one pass over x and dy.
        let mut sums = vec![dropnorm::GradSums::default(); c];
        dropnorm::batch_norm_backward_sums(&x, &dy, None, &mut sums, shape, layout, &saved)
            .expect("valid");
        let d = time(budget, || {
            let grads = dropnorm::BnGrads {
                dx: &mut y,
                dgamma: &mut dg,
                dbeta: &mut db,
            };
            let p = &params;
            dropnorm::batch_norm_backward_apply(
                &x, &dy, None, grads, shape, layout, p, &saved, &sums,
            )
            .expect("valid")
        });
        row("bn_backward_apply", d.as_secs_f64(), bytes, None).print(o.json);
    }
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Nc => "nc",
        Layout::Nchw => "nchw",
        Layout::Nhwc => "nhwc",
    }
}

fn shape_name(shape: Shape, layout: Layout) -> String {
    match layout {
        Layout::Nc => format!("({},{})", shape.n, shape.c),
        _ => format!("({},{},{},{})", shape.n, shape.c, shape.h, shape.w),
    }
}
