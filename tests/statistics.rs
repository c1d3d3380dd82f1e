//! Statistical properties of the keep decisions, each with a stated bound: counts must lie
//! within 6 standard deviations of their expectation under independent Bernoulli(1-p)
//! decisions (a false alarm has probability < 2e-9 per check).

#[macro_use]
mod common;

use dropnorm::rng::BLOCK;
use dropnorm::{DropoutParams, dropout, dropout_with_mask, mask_len};

const N: usize = 1 << 21;

/// Keep decisions as produced by the real kernels (not the reference).
fn keeps(seed: u64, p: f32, offset: u64, n: usize) -> Vec<bool> {
    let x = vec![1.0f32; n];
    let mut y = vec![0.0f32; n];
    let mut m = vec![0u8; mask_len(n)];
    dropout_with_mask(
        &x,
        &mut y,
        &mut m,
        &DropoutParams::new(p, seed).with_offset(offset),
    )
    .unwrap();
    (0..n).map(|i| m[i / 8] >> (i % 8) & 1 == 1).collect()
}

/// Asserts `count` is within 6σ of a Binomial(n, q) mean.
fn assert_binomial(count: usize, n: usize, q: f64, what: &str) {
    let mean = n as f64 * q;
    let sd = (n as f64 * q * (1.0 - q)).sqrt();
    let z = (count as f64 - mean) / sd;
    assert!(
        z.abs() < 6.0,
        "{what}: count {count}, expected {mean:.0} ± {sd:.0} (z = {z:.2})"
    );
}

fn kept_fraction_within_6_sigma() {
    for p in [0.1f32, 0.5, 0.9] {
        for seed in [1u64, 2] {
            let k = keeps(seed, p, 0, N);
            let kept = k.iter().filter(|&&b| b).count();
            assert_binomial(kept, N, 1.0 - p as f64, &format!("p={p} seed={seed}"));
        }
    }
}

fn mean_of_output_is_the_input_within_6_sigma() {
    let p = 0.3f32;
    let x = vec![1.0f32; N];
    let mut y = vec![0.0f32; N];
    dropout(&x, &mut y, &DropoutParams::new(p, 17)).unwrap();
    let mean: f64 = y.iter().map(|&v| v as f64).sum::<f64>() / N as f64;
    let q = 1.0 - p as f64;
    let sd = (1.0 / q) * (q * (1.0 - q) / N as f64).sqrt();
    assert!((mean - 1.0).abs() < 6.0 * sd, "mean {mean}, sd {sd}");
}

/// Adjacent lanes (lag 1), adjacent streams (lag 16), the next draw of the same lane (lag 64)
/// and other small lags: each of the four (keep_i, keep_i+lag) cells is within 6σ of the count
/// independence predicts.
fn pairs_at_small_lags_are_independent() {
    for p in [0.5f32, 0.1] {
        let k = keeps(7, p, 0, N);
        let q = k.iter().filter(|&&b| b).count() as f64 / N as f64;
        for lag in [1usize, 2, 15, 16, 17, 48, 63, 64, 65, 128] {
            let mut cells = [0usize; 4];
            for i in 0..N - lag {
                cells[(k[i] as usize) << 1 | k[i + lag] as usize] += 1;
            }
            let pairs = N - lag;
            for (c, &count) in cells.iter().enumerate() {
                let qa = if c >> 1 == 1 { q } else { 1.0 - q };
                let qb = if c & 1 == 1 { q } else { 1.0 - q };
                assert_binomial(
                    count,
                    pairs,
                    qa * qb,
                    &format!("p={p} lag={lag} cell={c:02b}"),
                );
            }
        }
    }
}

/// The same position in neighbouring blocks, and the pairs that straddle each block boundary,
/// agree as often as independent decisions would.
fn blocks_are_independent() {
    let blocks = 128;
    let k = keeps(11, 0.5, 0, blocks * BLOCK);
    let mut same_pos = 0;
    for b in 0..blocks - 1 {
        for j in 0..BLOCK {
            same_pos += (k[b * BLOCK + j] == k[(b + 1) * BLOCK + j]) as usize;
        }
    }
    assert_binomial(
        same_pos,
        (blocks - 1) * BLOCK,
        0.5,
        "same position, next block",
    );
    let mut straddle = 0;
    let mut pairs = 0;
    for b in 1..blocks {
        for t in 0..64 {
            straddle += (k[b * BLOCK - 1 - t] == k[b * BLOCK + t]) as usize;
            pairs += 1;
        }
    }
    assert_binomial(straddle, pairs, 0.5, "pairs straddling block boundaries");
}

fn different_seeds_give_different_masks() {
    let n = 1 << 18;
    let base = keeps(1000, 0.5, 0, n);
    for other in [1001u64, 1000 ^ (1 << 63), 0, u64::MAX] {
        let k = keeps(other, 0.5, 0, n);
        let agree = base.iter().zip(&k).filter(|(a, b)| a == b).count();
        assert_binomial(agree, n, 0.5, &format!("seed 1000 vs {other}"));
    }
    // Offsets shift the stream: offset 1 is not offset 0 shifted by nothing.
    let shifted = keeps(1000, 0.5, 1, n);
    let agree = base.iter().zip(&shifted).filter(|(a, b)| a == b).count();
    assert_binomial(
        agree,
        n,
        0.5,
        "offset 0 vs offset 1 at the same slice index",
    );
    assert_eq!(
        base[1..],
        keeps(1000, 0.5, 1, n - 1)[..],
        "offset 1 is the same stream shifted"
    );
}

main_thread_checks!(
    kept_fraction_within_6_sigma,
    mean_of_output_is_the_input_within_6_sigma,
    pairs_at_small_lags_are_independent,
    blocks_are_independent,
    different_seeds_give_different_masks,
);
