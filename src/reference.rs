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
