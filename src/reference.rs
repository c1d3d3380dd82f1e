//! Scalar references and naive baselines, for tests, benches, fuzzing and the roofline.
//!
//! Not part of the stable API: they are written for obviousness, not speed. The references
//! follow the documented contract (the stream layout of [`crate::rng`], the keep rule, the
//! masking semantics) with `rand_xoshiro`'s scalar generator, independently of the SIMD code.

use rand_xoshiro::Xoshiro128PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

use crate::DropoutParams;
use crate::rng::{self, BLOCK, GROUPS_PER_BLOCK, STREAMS, Threshold};

/// Keep decisions of stream elements `start .. start + len` (true = kept), for training mode
/// with probability `p`.
pub fn keep_decisions(seed: u64, p: f32, start: u64, len: usize) -> Vec<bool> {
    let thresh = rng::threshold(p);
    let mut keep = vec![false; len];
    if len == 0 {
        return keep;
    }
    let end = start + len as u64;
    for block in start / BLOCK as u64..=(end - 1) / BLOCK as u64 {
        let mut gens: Vec<Xoshiro128PlusPlus> = (0..STREAMS * 16)
            .map(|l| Xoshiro128PlusPlus::seed_from_u64(rng::lane_seed(seed, block, l)))
            .collect();
        for g in 0..GROUPS_PER_BLOCK {
            for (l, gen_l) in gens.iter_mut().enumerate() {
                let r = gen_l.next_u32();
                let i = block * BLOCK as u64 + (g * STREAMS * 16 + l) as u64;
                if (start..end).contains(&i) {
                    keep[(i - start) as usize] = match thresh {
                        Threshold::KeepAll => true,
                        Threshold::DropAll => false,
                        Threshold::Below(t) => r >= t,
                    };
                }
            }
        }
    }
    keep
}

/// Reference dropout of `x` under `params` (the forward and the regenerated backward).
pub fn dropout(x: &[f32], params: &DropoutParams) -> Vec<f32> {
    if !params.training || params.p == 0.0 {
        return x.to_vec();
    }
    let keep = keep_decisions(params.seed, params.p, params.offset, x.len());
    apply(x, &keep, params.scale())
}

/// `x * scale` where `keep`, `+0.0` elsewhere.
pub fn apply(x: &[f32], keep: &[bool], scale: f32) -> Vec<f32> {
    x.iter()
        .zip(keep)
        .map(|(&v, &k)| if k { v * scale } else { 0.0 })
        .collect()
}

/// Packs keep decisions like the crate's masks (bit `i` in byte `i/8` at bit `i%8`).
pub fn pack_mask(keep: &[bool]) -> Vec<u8> {
    let mut m = vec![0u8; keep.len().div_ceil(8)];
    for (i, &k) in keep.iter().enumerate() {
        m[i / 8] |= (k as u8) << (i % 8);
    }
    m
}

/// Reference channel-wise dropout of an NCHW (`nhwc = false`) or NHWC tensor with `planes =
/// n·c` planes of `hw` elements and `c` channels.
pub fn dropout_channels(
    x: &[f32],
    c: usize,
    hw: usize,
    nhwc: bool,
    params: &DropoutParams,
) -> Vec<f32> {
    if !params.training || params.p == 0.0 || x.is_empty() {
        return x.to_vec();
    }
    let planes = x.len() / hw;
    let keep = keep_decisions(params.seed, params.p, params.offset, planes);
    let per_elem: Vec<bool> = (0..x.len())
        .map(|i| {
            if nhwc {
                let (img, ch) = (i / (hw * c), i % c);
                keep[img * c + ch]
            } else {
                keep[i / hw]
            }
        })
        .collect();
    apply(x, &per_elem, params.scale())
}

/// The naive baseline: one `rand_xoshiro` call and a branch per element, the way dropout is
/// usually written by hand. Not the crate's stream (one generator for the whole slice).
pub fn dropout_naive(x: &[f32], y: &mut [f32], p: f32, seed: u64) {
    let mut g = Xoshiro128PlusPlus::seed_from_u64(seed);
    let thresh = (p as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    let scale = 1.0 / (1.0 - p);
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = if g.next_u32() < thresh {
            0.0
        } else {
            xi * scale
        };
    }
}

/// Element index of value `j` (`0..n·h·w`) of channel `ch` of a tensor of `shape` in `layout`.
pub fn channel_index(shape: crate::Shape, layout: crate::Layout, ch: usize, j: usize) -> usize {
    let hw = shape.h * shape.w;
    match layout {
        crate::Layout::Nchw => ((j / hw) * shape.c + ch) * hw + j % hw,
        crate::Layout::Nc | crate::Layout::Nhwc => j * shape.c + ch,
    }
}

/// The values of channel `ch`, as f64.
pub fn channel_values(
    x: &[f32],
    shape: crate::Shape,
    layout: crate::Layout,
    ch: usize,
) -> Vec<f64> {
    let count = shape.n * shape.h * shape.w;
    (0..count)
        .map(|j| x[channel_index(shape, layout, ch, j)] as f64)
        .collect()
}

/// Two-pass f64 statistics of a channel: `(mean, biased var)`.
pub fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var)
}

/// Reference training-mode batch norm in f64 (two-pass statistics): returns `y` and per
/// channel `(mean, biased var, invstd)`.
pub fn batch_norm_train(
    x: &[f32],
    shape: crate::Shape,
    layout: crate::Layout,
    eps: f32,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    relu: bool,
) -> (Vec<f64>, Vec<(f64, f64, f64)>) {
    let mut y = vec![0.0f64; x.len()];
    let mut stats = Vec::new();
    for ch in 0..shape.c {
        let v = channel_values(x, shape, layout, ch);
        let (mean, var) = mean_var(&v);
        let denom = var + eps as f64;
        let invstd = if denom == 0.0 {
            0.0
        } else {
            1.0 / denom.sqrt()
        };
        let g = gamma.map_or(1.0, |g| g[ch] as f64);
        let b = beta.map_or(0.0, |b| b[ch] as f64);
        for (j, &xv) in v.iter().enumerate() {
            let o = g * (xv - mean) * invstd + b;
            y[channel_index(shape, layout, ch, j)] = if relu && o < 0.0 { 0.0 } else { o };
        }
        stats.push((mean, var, invstd));
    }
    (y, stats)
}

/// The naive baseline: two passes per channel in scalar f32 (sum, then sum of squared
/// deviations), then `x·a + b` — what a straightforward loop over an NCHW tensor does.
pub fn batch_norm_train_naive(x: &[f32], y: &mut [f32], n: usize, c: usize, hw: usize, eps: f32) {
    let count = (n * hw) as f32;
    for ch in 0..c {
        let runs = || (0..n).map(move |i| (i * c + ch) * hw);
        let mut sum = 0.0f32;
        for r in runs() {
            sum += x[r..r + hw].iter().sum::<f32>();
        }
        let mean = sum / count;
        let mut sq = 0.0f32;
        for r in runs() {
            sq += x[r..r + hw]
                .iter()
                .map(|v| (v - mean) * (v - mean))
                .sum::<f32>();
        }
        let a = 1.0 / (sq / count + eps).sqrt();
        let b = -mean * a;
        for r in runs() {
            for (o, &v) in y[r..r + hw].iter_mut().zip(&x[r..r + hw]) {
                *o = v * a + b;
            }
        }
    }
}

/// The naive baseline for NC/NHWC (`rows` rows of `c` channels): per-channel sums row by
/// row, a second pass for the squared deviations, a third to normalize as `x·a + b`.
pub fn batch_norm_train_naive_cols(x: &[f32], y: &mut [f32], rows: usize, c: usize, eps: f32) {
    let mut mean = vec![0.0f32; c];
    let mut sq = vec![0.0f32; c];
    for row in x.chunks_exact(c).take(rows) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows as f32);
    for row in x.chunks_exact(c).take(rows) {
        for ((s, &m), &v) in sq.iter_mut().zip(&mean).zip(row) {
            *s += (v - m) * (v - m);
        }
    }
    let a: Vec<f32> = sq
        .iter()
        .map(|s| 1.0 / (s / rows as f32 + eps).sqrt())
        .collect();
    for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for (((o, &v), &a), &m) in yr.iter_mut().zip(xr).zip(&a).zip(&mean) {
            *o = v * a - m * a;
        }
    }
}

/// The naive inference baseline: `y = x·a + b` (then `+ r` and ReLU when `r` is given) per
/// element in plain scalar loops over an NCHW (`hw > 1` runs) or row-major (`hw = 1`) tensor.
pub fn batch_norm_infer_naive(
    x: &[f32],
    r: Option<&[f32]>,
    y: &mut [f32],
    c: usize,
    hw: usize,
    a: &[f32],
    b: &[f32],
) {
    for (i, (o, &v)) in y.iter_mut().zip(x).enumerate() {
        let ch = (i / hw) % c;
        let mut t = v * a[ch] + b[ch];
        if let Some(r) = r {
            t = (t + r[i]).max(0.0);
        }
        *o = t;
    }
}

/// The naive backward baseline (γ = 1): per channel the two sums in one scalar loop, then `dx`
/// in another, over an NCHW (`hw > 1`) or row-major (`hw = 1`) tensor.
pub fn batch_norm_backward_naive(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    c: usize,
    hw: usize,
    mean: &[f32],
    invstd: &[f32],
) {
    let mut s1 = vec![0.0f32; c];
    let mut s2 = vec![0.0f32; c];
    for (i, (&xv, &d)) in x.iter().zip(dy).enumerate() {
        let ch = (i / hw) % c;
        s1[ch] += d;
        s2[ch] += d * (xv - mean[ch]);
    }
    let n = (x.len() / c) as f32;
    for (i, (o, (&xv, &d))) in dx.iter_mut().zip(x.iter().zip(dy)).enumerate() {
        let ch = (i / hw) % c;
        let xhat = (xv - mean[ch]) * invstd[ch];
        *o = invstd[ch] / n * (n * d - s1[ch] - xhat * s2[ch] * invstd[ch]);
    }
}
