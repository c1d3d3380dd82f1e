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
//! Each row times the kernel and the copy of its input into its output alternately, pair
//! by pair (7 pairs, 3 with `--quick`, each member the median of the runs filling its slice
//! of the budget): this machine's copy bandwidth drifts by up to 2× within a run, and a copy
//! timed once per size against a kernel timed later reads that drift as speed. `frac` is the
//! median of the per-pair ratios, `IQR` their interquartile range (JSON: `frac_q1`,
//! `frac_q3`); `ms`, `GB/s`, `Gelem/s` and `copyGB/s` are medians too.
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
//! `rng_bound` (dropout sizes) is no kernel either: the keep decisions alone (xoshiro128++
//! draws compared with the threshold, one bit stored per element) timed as if they moved
//! dropout's 8 B/element — the most any dropout with this mask can reach. In cache it, not the
//! copy, is the limit on some machines.
//!
//! `two_pass_bound` (NC and NHWC shapes) is no kernel: a statistics pass over `x` plus the
//! faster of the two copies, timed in the same run — the best any training forward that reads
//! `x` twice can do there. NC and NHWC read twice: a block of columns over all rows, which a
//! single read needs to keep in cache, is larger than L2 at these sizes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use dropnorm::rng::BLOCK;
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

/// A kernel timed against the copy of `x` into `y`, alternately, pair by pair: drift in this
/// machine's bandwidth (up to 2× within a run) hits both members of a pair, so the ratio of
/// each pair holds where a copy timed once per size and a kernel timed later do not.
struct Measured {
    /// Median kernel time.
    secs: f64,
    /// Median plain-store and non-temporal copy bandwidth (GB/s of 8 B/element).
    copy_gbps: f64,
    copy_nt_gbps: f64,
    /// Quartiles (q1, median, q3) of the per-pair ratios kernel GB/s ÷ copy GB/s.
    frac: [f64; 3],
    /// The same against the non-temporal copy.
    frac_nt: [f64; 3],
}

/// Quartiles of `v` (sorted here): the lower and upper medians' midpoints.
fn quartiles(v: &mut [f64]) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = q * (v.len() - 1) as f64;
        let (lo, hi) = (i.floor() as usize, i.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (i - lo as f64)
    };
    [at(0.25), at(0.5), at(0.75)]
}

/// Median of `v` (sorted here).
fn median(v: &mut [f64]) -> f64 {
    quartiles(v)[1]
}

/// `f(y)` (a kernel moving `bytes`, writing into `y`) and the plain and non-temporal copies of
/// `x` into `y`, timed in turn `pairs` times — each the median of the runs that fill a slice
/// of `budget` — after one warm-up run of each.
fn measure(
    o: &Opts,
    budget: Duration,
    x: &[f32],
    y: &mut [f32],
    bytes: f64,
    f: &mut dyn FnMut(&mut [f32]),
) -> Measured {
    let pairs = if o.quick { 3 } else { 7 };
    let nt = testing::has_nt(o.isa);
    let slice = budget / (pairs * if nt { 3 } else { 2 });
    let copy_bytes = 8.0 * x.len() as f64;
    let isa = o.isa;
    f(y);
    par_copy(isa, x, y, false);
    let (mut ks, mut cs, mut cns, mut fr, mut fr_nt) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..pairs {
        let k = time_slice(slice, &mut || f(y));
        let c = time_slice(slice, &mut || par_copy(isa, x, y, false));
        let cn = if nt {
            time_slice(slice, &mut || par_copy(isa, x, y, true))
        } else {
            c
        };
        fr.push((bytes / k) / (copy_bytes / c));
        fr_nt.push((bytes / k) / (copy_bytes / cn));
        ks.push(k);
        cs.push(c);
        cns.push(cn);
    }
    Measured {
        secs: median(&mut ks),
        copy_gbps: copy_bytes / median(&mut cs) / 1e9,
        copy_nt_gbps: copy_bytes / median(&mut cns) / 1e9,
        frac: quartiles(&mut fr),
        frac_nt: quartiles(&mut fr_nt),
    }
}

/// Median seconds of `f` over the runs filling `slice` (at least 3).
fn time_slice(slice: Duration, f: &mut dyn FnMut()) -> f64 {
    let mut runs = Vec::new();
    let start = Instant::now();
    while runs.len() < 3 || start.elapsed() < slice {
        let t = Instant::now();
        f();
        runs.push(t.elapsed().as_secs_f64());
        if runs.len() >= 1000 {
            break;
        }
    }
    median(&mut runs)
}

struct Row {
    kernel: &'static str,
    /// Element type of the activations.
    dtype: &'static str,
    layout: &'static str,
    shape: String,
    elems: usize,
    threads: usize,
    isa: Isa,
    bytes: f64,
    m: Measured,
    naive_secs: Option<f64>,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.bytes / self.m.secs / 1e9
    }
    fn print(&self, json: bool) {
        let (gbps, m) = (self.gbps(), &self.m);
        let gelems = self.elems as f64 / m.secs / 1e9;
        let speedup = self.naive_secs.map(|n| n / m.secs);
        if json {
            println!(
                "{{\"kernel\":\"{}\",\"layout\":\"{}\",\"shape\":\"{}\",\"dtype\":\"{}\",\"elems\":{},\"threads\":{},\"isa\":\"{}\",\"ms\":{:.4},\"gbps\":{:.3},\"gelems\":{:.4},\"copy_gbps\":{:.3},\"copy_nt_gbps\":{:.3},\"frac\":{:.4},\"frac_q1\":{:.4},\"frac_q3\":{:.4},\"frac_nt\":{:.4},\"frac_nt_q1\":{:.4},\"frac_nt_q3\":{:.4},\"speedup\":{}}}",
                self.kernel,
                self.layout,
                self.shape,
                self.dtype,
                self.elems,
                self.threads,
                self.isa,
                m.secs * 1e3,
                gbps,
                gelems,
                m.copy_gbps,
                m.copy_nt_gbps,
                m.frac[1],
                m.frac[0],
                m.frac[2],
                m.frac_nt[1],
                m.frac_nt[0],
                m.frac_nt[2],
                speedup.map_or("null".to_string(), |s| format!("{s:.2}")),
            );
        } else {
            println!(
                "{:<17} {:<4} {:<6} {:<15} {:>3} {:<8} {:>9.3} {:>7.2} {:>7.3} {:>8.2} {:>5.2} {:>5.2} {:>7.2} {:>9}",
                self.kernel,
                self.dtype,
                self.layout,
                self.shape,
                self.threads,
                self.isa.name(),
                m.secs * 1e3,
                gbps,
                gelems,
                m.copy_gbps,
                m.frac[1],
                m.frac[2] - m.frac[0],
                m.frac_nt[1],
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
            "{:<17} {:<4} {:<6} {:<15} {:>3} {:<8} {:>9} {:>7} {:>7} {:>8} {:>5} {:>5} {:>7} {:>9}",
            "kernel",
            "type",
            "layout",
            "shape",
            "thr",
            "isa",
            "ms",
            "GB/s",
            "Gelem/s",
            "copyGB/s",
            "frac",
            "IQR",
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

        let naive = naive_secs(o, budget, || {
            reference::dropout_naive(black_box(&x), &mut y, 0.5, 1)
        });

        let params = DropoutParams::new(0.5, 42);
        let mut step = 0u64;
        let mut row =
            |kernel, layout, shape: String, bytes: f64, naive, f: &mut dyn FnMut(&mut [f32])| {
                let m = measure(o, budget, &x, &mut y, bytes, f);
                Row {
                    kernel,
                    dtype: "f32",
                    layout,
                    shape,
                    elems: n,
                    threads,
                    isa: o.isa,
                    bytes,
                    m,
                    naive_secs: naive,
                }
                .print(o.json);
            };
        let flat = || format!("[{n}]");
        row("dropout", "flat", flat(), bytes, naive, &mut |y| {
            step += 1;
            dropnorm::dropout(&x, y, &params.with_offset(step << 32)).expect("valid")
        });
        row(
            "dropout_mask",
            "flat",
            flat(),
            bytes + n as f64 / 8.0,
            naive,
            &mut |y| dropnorm::dropout_with_mask(&x, y, &mut mask, &params).expect("valid"),
        );
        row("dropout_backward", "flat", flat(), bytes, naive, &mut |y| {
            dropnorm::dropout_backward(&x, y, &params).expect("valid")
        });
        // No kernel: the keep decisions alone, made as the dropout kernels make them and
        // counted as dropout's 8 B/element, in the same 16 Ki-element pieces (4 per task).
        let mut bits = vec![0u16; n / 16];
        row("rng_bound", "flat", flat(), bytes, None, &mut |_| {
            bits.par_chunks_mut(BLOCK / 16)
                .with_min_len(4)
                .enumerate()
                .for_each(|(b, w)| {
                    testing::keep_bits(o.isa, 42, 0.5, (b * BLOCK) as u64, w).expect("isa checked")
                })
        });

        let bf16 = (
            "bf16",
            dropnorm::bf16::from_f32 as fn(f32) -> dropnorm::bf16,
        );
        typed_dropout_rows(o, threads, budget, n, bf16);
        let f16 = ("f16", dropnorm::f16::from_f32 as fn(f32) -> dropnorm::f16);
        typed_dropout_rows(o, threads, budget, n, f16);

        // Channel-wise dropout (the typed rows above take the same shapes).
        for (shape, lname, layout) in channel_shapes(n) {
            let sname = format!("({},{},{},{})", shape.n, shape.c, shape.h, shape.w);
            if !o.wants("dropout_channels", lname, &sname) {
                continue;
            }
            row("dropout_channels", lname, sname, bytes, None, &mut |y| {
                dropnorm::dropout_channels(&x, y, shape, layout, &params).expect("valid")
            });
        }
    }
}

/// Dropout rows over `n` elements of a 16-bit type: `frac` against the copy of the same
/// bytes (`n/2` f32, in buffers of their own), elements/s to compare with the f32 rows.
fn typed_dropout_rows<E: dropnorm::Element>(
    o: &Opts,
    threads: usize,
    budget: Duration,
    n: usize,
    (dtype, of): (&'static str, fn(f32) -> E),
) {
    let x: Vec<E> = (0..n).map(|i| of((i % 1000) as f32 * 0.001)).collect();
    let mut y = vec![of(0.0); n];
    let mut mask = vec![0u8; mask_len(n)];
    let (cx, mut cy) = (vec![1.0f32; n / 2], vec![0.0f32; n / 2]);
    let params = DropoutParams::new(0.5, 42);
    let bytes = 2.0 * 2.0 * n as f64;
    let mut row = |kernel, layout, shape, bytes: f64, f: &mut dyn FnMut()| {
        let m = measure(o, budget, &cx, &mut cy, bytes, &mut |_| f());
        Row {
            kernel,
            dtype,
            layout,
            shape,
            elems: n,
            threads,
            isa: o.isa,
            bytes,
            m,
            naive_secs: None,
        }
        .print(o.json);
    };
    let flat = || format!("[{n}]");
    let mut step = 0u64;
    row("dropout", "flat", flat(), bytes, &mut || {
        step += 1;
        dropnorm::dropout(&x, &mut y, &params.with_offset(step << 32)).expect("valid")
    });
    row(
        "dropout_mask",
        "flat",
        flat(),
        bytes + n as f64 / 8.0,
        &mut || dropnorm::dropout_with_mask(&x, &mut y, &mut mask, &params).expect("valid"),
    );
    row("dropout_backward", "flat", flat(), bytes, &mut || {
        dropnorm::dropout_backward(&x, &mut y, &params).expect("valid")
    });
    for (shape, lname, layout) in channel_shapes(n) {
        let sname = format!("({},{},{},{})", shape.n, shape.c, shape.h, shape.w);
        if !o.wants("dropout_channels", lname, &sname) {
            continue;
        }
        row("dropout_channels", lname, sname, bytes, &mut || {
            dropnorm::dropout_channels(&x, &mut y, shape, layout, &params).expect("valid")
        });
    }
}

/// The channel-wise dropout shapes over `n` elements, NCHW and NHWC: small images (2×2, one
/// channel: one keep decision per 4 values) and 4×4 images of 64 channels.
fn channel_shapes(n: usize) -> [(Shape, &'static str, Layout); 4] {
    [
        (Shape::nchw(n / 4, 1, 2, 2), "nchw", Layout::Nchw),
        (Shape::nchw(n / 4, 1, 2, 2), "nhwc", Layout::Nhwc),
        (Shape::nchw(n / 1024, 64, 4, 4), "nchw", Layout::Nchw),
        (Shape::nchw(n / 1024, 64, 4, 4), "nhwc", Layout::Nhwc),
    ]
}

/// Every batch-norm row over a 16-bit type (training forward, the split phase's statistics
/// and apply, inference, add+ReLU, backward and its split apply): `frac` against the copy of the same bytes
/// (half as many f32, in buffers of their own), elements/s to compare with the f32 rows.
fn typed_bn_rows<E: dropnorm::Element>(
    o: &Opts,
    threads: usize,
    budget: Duration,
    (shape, layout, lname, sname): (Shape, Layout, &'static str, &str),
    (dtype, of): (&'static str, fn(f32) -> E),
    params: &BnParams,
    stats: &RunningStats,
) {
    let n = shape.numel().expect("fixed shapes");
    let x: Vec<E> = (0..n)
        .map(|i| of(((i * 7919) % 1000) as f32 * 0.01 + 3.0))
        .collect();
    let res: Vec<E> = x.iter().rev().copied().collect();
    let mut y = vec![of(0.0); n];
    let (cx, mut cy) = (vec![1.0f32; n / 2], vec![0.0f32; n / 2]);
    let none = dropnorm::Epilogue::None;
    let mut row = |kernel, bytes: f64, f: &mut dyn FnMut()| {
        if !o.wants(kernel, lname, sname) {
            return;
        }
        let m = measure(o, budget, &cx, &mut cy, bytes, &mut |_| f());
        Row {
            kernel,
            dtype,
            layout: lname,
            shape: sname.to_string(),
            elems: n,
            threads,
            isa: o.isa,
            bytes,
            m,
            naive_secs: None,
        }
        .print(o.json);
    };
    let c = shape.c;
    let (mut mean, mut invstd) = (vec![0.0f32; c], vec![0.0f32; c]);
    row("bn_train", 4.0 * n as f64, &mut || {
        let saved = SavedStatsMut {
            mean: &mut mean,
            invstd: &mut invstd,
        };
        dropnorm::batch_norm_train(&x, &mut y, shape, layout, params, none, saved, None)
            .expect("valid")
    });
    // The split phase: statistics alone (a read of x: 2 B/element), then `apply`.
    // Taken once outside the rows too, so that `apply` has valid statistics when a filter
    // leaves the `bn_stats` row out.
    let mut st = vec![dropnorm::ChannelStats::default(); c];
    dropnorm::channel_stats(&x, &mut st, shape, layout).expect("valid");
    row("bn_stats", 2.0 * n as f64, &mut || {
        dropnorm::channel_stats(&x, &mut st, shape, layout).expect("valid")
    });
    row("bn_apply", 4.0 * n as f64, &mut || {
        let saved = SavedStatsMut {
            mean: &mut mean,
            invstd: &mut invstd,
        };
        dropnorm::batch_norm_apply(&x, &mut y, shape, layout, params, none, &st, saved, None)
            .expect("valid")
    });
    row("bn_infer", 4.0 * n as f64, &mut || {
        dropnorm::batch_norm_infer(&x, &mut y, shape, layout, params, none, stats).expect("valid")
    });
    row("bn_add_relu", 6.0 * n as f64, &mut || {
        dropnorm::batch_norm_add_relu_infer(&x, &res, &mut y, shape, layout, params, stats)
            .expect("valid")
    });
    // Backward with the statistics of the training row (x, dy → dx: 6 B/element).
    let (mut dg, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
    let saved = dropnorm::SavedStats {
        mean: &mean,
        invstd: &invstd,
    };
    row("bn_backward", 6.0 * n as f64, &mut || {
        let grads = dropnorm::BnGrads {
            dx: &mut y,
            dgamma: &mut dg,
            dbeta: &mut db,
        };
        dropnorm::batch_norm_backward(&x, &res, None, grads, shape, layout, params, &saved)
            .expect("valid")
    });
    // The split backward's second phase, from the whole batch's sums.
    let mut sums = vec![dropnorm::GradSums::default(); c];
    dropnorm::batch_norm_backward_sums(&x, &res, None, &mut sums, shape, layout, &saved)
        .expect("valid");
    row("bn_backward_apply", 6.0 * n as f64, &mut || {
        let grads = dropnorm::BnGrads {
            dx: &mut y,
            dgamma: &mut dg,
            dbeta: &mut db,
        };
        dropnorm::batch_norm_backward_apply(
            &x, &res, None, grads, shape, layout, params, &saved, &sums,
        )
        .expect("valid")
    });
}

/// The batch-norm training-forward shapes of the roofline.
fn bn_shapes(quick: bool) -> Vec<(Shape, Layout)> {
    let nchw: &[(usize, usize, usize, usize)] = if quick {
        &[(8, 32, 28, 28)]
    } else {
        &[(8, 32, 28, 28), (32, 64, 56, 56), (64, 256, 28, 28)]
    };
    // Wide NC shapes (a classifier head, an MLP layer: few rows, many columns) beside the
    // tall one.
    let nc: &[(usize, usize)] = if quick {
        &[(256, 4096)]
    } else {
        &[(256, 4096), (64, 4096), (1024, 2048), (4096, 1024)]
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
        let hw = if layout == Layout::Nchw {
            shape.h * shape.w
        } else {
            1
        };
        let mut row = |kernel, bytes: f64, naive, f: &mut dyn FnMut(&mut [f32])| {
            let m = measure(o, budget, &x, &mut y, bytes, f);
            let best_copy_nt = m.copy_nt_gbps > m.copy_gbps;
            Row {
                kernel,
                dtype: "f32",
                layout: lname,
                shape: sname.clone(),
                elems: n,
                threads,
                isa: o.isa,
                bytes,
                m,
                naive_secs: naive,
            }
            .print(o.json);
            best_copy_nt
        };
        let mut scratch = vec![0.0f32; n];
        let naive = naive_secs(o, budget, || match layout {
            Layout::Nchw => {
                reference::batch_norm_train_naive(&x, &mut scratch, shape.n, c, hw, 1e-5)
            }
            _ => reference::batch_norm_train_naive_cols(&x, &mut scratch, n / c, c, 1e-5),
        });
        let gamma = vec![1.5f32; c];
        let beta = vec![0.25f32; c];
        let params = BnParams::new(1e-5).with_affine(&gamma, &beta);
        let (mut mean, mut invstd) = (vec![0.0f32; c], vec![0.0f32; c]);
        let none = dropnorm::Epilogue::None;
        let bytes = 8.0 * n as f64;
        let best_copy_nt = row("bn_train", bytes, naive, &mut |y| {
            let saved = SavedStatsMut {
                mean: &mut mean,
                invstd: &mut invstd,
            };
            dropnorm::batch_norm_train(&x, y, shape, layout, &params, none, saved, None)
                .expect("valid")
        });

        // Split phase: the statistics alone (a read of x, 4 B/element), then `apply` with
        // them (read x, write y: one pass, what a synchronized batch norm runs per shard).
        let mut st = vec![dropnorm::ChannelStats::default(); c];
        row("bn_stats", 4.0 * n as f64, None, &mut |_| {
            dropnorm::channel_stats(&x, &mut st, shape, layout).expect("valid")
        });
        row("bn_apply", bytes, None, &mut |y| {
            let saved = SavedStatsMut {
                mean: &mut mean,
                invstd: &mut invstd,
            };
            dropnorm::batch_norm_apply(&x, y, shape, layout, &params, none, &st, saved, None)
                .expect("valid")
        });

        // The ceiling of any kernel that reads x twice (statistics, then normalization): this
        // crate's statistics loop over x (as 64 NCHW channels, so every thread reads) plus
        // the faster copy of x (as the training row measured it), timed together here. NC
        // and NHWC training (and, with a second input, backward) take that road when a column
        // block does not fit in L2.
        if layout != Layout::Nchw && o.wants("two_pass_bound", lname, &sname) {
            let mut st = vec![dropnorm::ChannelStats::default(); 64];
            let flat = Shape::nchw(1, 64, 1, n / 64);
            row("two_pass_bound", bytes, None, &mut |y| {
                dropnorm::channel_stats(&x, &mut st, flat, Layout::Nchw).expect("valid");
                par_copy(o.isa, &x, y, best_copy_nt);
            });
        }

        // Inference and the fused residual add + ReLU (the batch statistics serve as the
        // running ones). `frac` compares rates, so it holds for 12 B/element too.
        let stats = RunningStats {
            mean: &mean,
            var: &invstd,
        };
        let (a, b) = (vec![0.5f32; c], vec![0.1f32; c]);
        let res: Vec<f32> = x.iter().rev().copied().collect();
        let naive = naive_secs(o, budget, || {
            reference::batch_norm_infer_naive(&x, None, &mut scratch, c, hw, &a, &b)
        });
        row("bn_infer", bytes, naive, &mut |y| {
            dropnorm::batch_norm_infer(&x, y, shape, layout, &params, none, &stats).expect("valid")
        });
        let naive = naive_secs(o, budget, || {
            reference::batch_norm_infer_naive(&x, Some(&res), &mut scratch, c, hw, &a, &b)
        });
        let bytes = 12.0 * n as f64;
        row("bn_add_relu", bytes, naive, &mut |y| {
            dropnorm::batch_norm_add_relu_infer(&x, &res, y, shape, layout, &params, &stats)
                .expect("valid")
        });

        let (lo, so) = (lname, sname.clone());
        let bf16 = (
            "bf16",
            dropnorm::bf16::from_f32 as fn(f32) -> dropnorm::bf16,
        );
        typed_bn_rows(
            o,
            threads,
            budget,
            (shape, layout, lo, &so),
            bf16,
            &params,
            &stats,
        );
        let f16 = ("f16", dropnorm::f16::from_f32 as fn(f32) -> dropnorm::f16);
        typed_bn_rows(
            o,
            threads,
            budget,
            (shape, layout, lo, &so),
            f16,
            &params,
            &stats,
        );

        // Backward (12 B/element: read x and dy, write dx), against a naive two-pass loop.
        let dy = res;
        let (mut dg, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
        let saved = dropnorm::SavedStats {
            mean: &mean,
            invstd: &invstd,
        };
        let naive = naive_secs(o, budget, || {
            reference::batch_norm_backward_naive(&x, &dy, &mut scratch, c, hw, &mean, &invstd)
        });
        row("bn_backward", bytes, naive, &mut |y| {
            let grads = dropnorm::BnGrads {
                dx: y,
                dgamma: &mut dg,
                dbeta: &mut db,
            };
            dropnorm::batch_norm_backward(&x, &dy, None, grads, shape, layout, &params, &saved)
                .expect("valid")
        });

        // The split backward's second phase: dx from merged sums, one pass over x and dy.
        let mut sums = vec![dropnorm::GradSums::default(); c];
        dropnorm::batch_norm_backward_sums(&x, &dy, None, &mut sums, shape, layout, &saved)
            .expect("valid");
        row("bn_backward_apply", bytes, None, &mut |y| {
            let grads = dropnorm::BnGrads {
                dx: y,
                dgamma: &mut dg,
                dbeta: &mut db,
            };
            let p = &params;
            dropnorm::batch_norm_backward_apply(
                &x, &dy, None, grads, shape, layout, p, &saved, &sums,
            )
            .expect("valid")
        });
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
