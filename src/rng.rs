//! The dropout random stream: its layout is part of the crate's contract.
//!
//! Element `i` of the global index space (a slice's local index plus the caller's `offset`)
//! belongs to block `b = i / BLOCK`, at position `j = i % BLOCK`. Each block has
//! [`STREAMS`] = 4 independent xoshiro128++ streams of 16 lanes; position `j` is draw
//! `j / 64` of lane `j % 16` of stream `(j % 64) / 16`. Lane `l` of stream `s` of block `b` is
//! `Xoshiro128PlusPlus::seed_from_u64(lane_seed(seed, b, 16*s + l))` from `rand_xoshiro`, so
//! every lane can be checked against that crate bit for bit.
//!
//! The element is dropped iff its draw `r < threshold(p)`. Because the decision depends only
//! on `(seed, i, p)`, the mask is the same for any thread count, any ISA, in place or not,
//! and for a tensor processed whole or in pieces.
//!
//! Four streams rather than one: a single stream's step is a serial chain of dependent
//! operations, which caps one 16-lane stream at about two thirds of copy bandwidth; four
//! independent chains hide that latency on AVX-512.

/// Elements per RNG block. A multiple of [`GROUP`]; large enough that seeding its 64 lanes is
/// noise (64 SplitMix64 seedings per 16 Ki elements), small enough to be a unit of parallel work.
pub const BLOCK: usize = 1 << 14;
/// Independent 16-lane streams per block.
pub const STREAMS: usize = 4;
/// Elements per draw of all streams of a block (`STREAMS × 16`).
pub const GROUP: usize = STREAMS * 16;
/// Groups per block.
pub const GROUPS_PER_BLOCK: usize = BLOCK / GROUP;

/// The state of one 16-lane stream, word-major: `s[k][l]` is word `k` of lane `l`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamState {
    /// Words `s0..s3` of each lane.
    pub s: [[u32; 16]; 4],
}

impl StreamState {
    /// Each lane seeded as `Xoshiro128PlusPlus::seed_from_u64(lane_seed(l))` would seed it.
    ///
    /// That is SplitMix64 from the seed, two outputs read as four little-endian words; it is
    /// written out here because the generic `rand_core` path costs several times more, which
    /// shows at 64 lanes per 16 Ki-element block (the tests compare it with `rand_xoshiro`).
    ///
    /// ```
    /// use dropnorm::rng::{StreamState, lane_seed};
    /// use rand_xoshiro::Xoshiro128PlusPlus;
    /// use rand_xoshiro::rand_core::SeedableRng;
    /// let st = StreamState::from_lane_seeds(|l| lane_seed(42, 0, l));
    /// // Lane 3 starts where rand_xoshiro's generator seeded with the same u64 starts.
    /// let want = Xoshiro128PlusPlus::seed_from_u64(lane_seed(42, 0, 3)).state();
    /// for k in 0..4 {
    ///     assert_eq!(st.s[k][3].to_le_bytes(), want[4 * k..4 * k + 4]);
    /// }
    /// ```
    pub fn from_lane_seeds(lane_seed: impl Fn(usize) -> u64) -> StreamState {
        let mut s = [[0u32; 16]; 4];
        #[allow(clippy::needless_range_loop)] // `l` indexes the second dimension of four rows
        for l in 0..16 {
            let mut x = lane_seed(l);
            let mut next = || {
                x = x.wrapping_add(GAMMA);
                mix64_of_state(x)
            };
            let (a, b) = (next(), next());
            s[0][l] = a as u32;
            s[1][l] = (a >> 32) as u32;
            s[2][l] = b as u32;
            s[3][l] = (b >> 32) as u32;
        }
        StreamState { s }
    }
}

/// The four streams of block `block` of the stream with seed `seed`, lane by lane: the
/// reference for the dispatched `block_streams` kernel (the one dropout calls), which
/// computes the 64 lanes in vectors.
#[cfg(test)]
pub(crate) fn block_streams(seed: u64, block: u64) -> [StreamState; STREAMS] {
    core::array::from_fn(|s| StreamState::from_lane_seeds(|l| lane_seed(seed, block, s * 16 + l)))
}

/// The `u64` that seeds lane `lane` (`0..64`, `16*stream + lane in stream`) of block `block`.
///
/// The block and lane are mixed through the SplitMix64 finalizer (a bijection) before the
/// XOR with the user seed, so neighbouring blocks and lanes get unrelated seeds, and
/// `seed_from_u64` runs SplitMix64 once more on the result.
///
/// ```
/// use dropnorm::rng::lane_seed;
/// assert_ne!(lane_seed(1, 0, 0), lane_seed(1, 0, 1));
/// assert_ne!(lane_seed(1, 0, 0), lane_seed(1, 1, 0));
/// ```
#[inline(always)]
pub fn lane_seed(seed: u64, block: u64, lane: usize) -> u64 {
    seed ^ mix64(block.wrapping_mul(GROUP as u64).wrapping_add(lane as u64))
}

/// One SplitMix64 step from state `x` (a bijection on `u64`).
#[inline(always)]
fn mix64(x: u64) -> u64 {
    mix64_of_state(x.wrapping_add(GAMMA))
}

/// The SplitMix64 increment.
pub(crate) const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function of an already advanced state.
#[inline(always)]
pub(crate) fn mix64_of_state(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a probability becomes a decision on a 32-bit draw `r`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// Keep every element (p = 0).
    KeepAll,
    /// Drop iff `r < t`.
    Below(u32),
    /// Drop every element (p = 1).
    DropAll,
}

/// The decision rule for a validated `p` in `[0, 1]`: drop iff `r < round(p · 2^32)`, so
/// P(drop) is `p` to within 2^-33. `p = 1` drops all (its threshold 2^32 does not fit a `u32`);
/// a `p < 1` that rounds to 2^32 is clamped to `u32::MAX`.
///
/// ```
/// use dropnorm::rng::{Threshold, threshold};
/// assert_eq!(threshold(0.5), Threshold::Below(1 << 31));
/// assert_eq!(threshold(0.0), Threshold::KeepAll);
/// assert_eq!(threshold(1.0), Threshold::DropAll);
/// ```
pub fn threshold(p: f32) -> Threshold {
    if p <= 0.0 {
        Threshold::KeepAll
    } else if p >= 1.0 {
        Threshold::DropAll
    } else {
        let t = (p as f64 * 4_294_967_296.0).round();
        Threshold::Below(if t >= u32::MAX as f64 {
            u32::MAX
        } else {
            t as u32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isa;
    use crate::dispatch::Kernels;

    /// Every ISA's vectorized seeding gives the lane-by-lane streams.
    #[test]
    fn block_streams_kernel_matches_the_lanes_on_every_isa() {
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            for (seed, block) in [(0, 0), (42, 1), (u64::MAX, u64::MAX / 64), (7, 123_456)] {
                assert_eq!(
                    k.block_streams(seed, block),
                    block_streams(seed, block),
                    "{isa} seed {seed} block {block}"
                );
            }
        }
    }
}
