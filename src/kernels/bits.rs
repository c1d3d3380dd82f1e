//! Random draws and keep bits from interleaved 16-lane xoshiro128++ streams.

use crate::rng::{GAMMA, GROUP, GROUPS_PER_BLOCK, STREAMS, StreamState, lane_seed, mix64_of_state};
use crate::simd::Simd;

/// The four streams of block `block` (`rng::block_streams`' bits): each of the 64 lanes
/// seeded as `Xoshiro128PlusPlus::seed_from_u64(lane_seed(seed, block, lane))` would be.
///
/// Plain `u64` code in lane loops, compiled inside each ISA's entry point so that LLVM
/// vectorizes it (AVX-512DQ multiplies 8 lanes at once): lane by lane, the 192 SplitMix64
/// rounds of a block cost about a sixth of an in-cache dropout of it.
///
/// # Safety
/// `out` must be valid for one write.
#[inline(always)]
pub(crate) unsafe fn block_streams<S: Simd>(
    _: S,
    seed: u64,
    block: u64,
    out: *mut [StreamState; STREAMS],
) {
    let mut a = [0u64; GROUP];
    let mut b = [0u64; GROUP];
    for l in 0..GROUP {
        let x = lane_seed(seed, block, l).wrapping_add(GAMMA);
        a[l] = mix64_of_state(x);
        b[l] = mix64_of_state(x.wrapping_add(GAMMA));
    }
    let mut st = [StreamState { s: [[0; 16]; 4] }; STREAMS];
    for (k, stream) in st.iter_mut().enumerate() {
        for l in 0..16 {
            let (a, b) = (a[16 * k + l], b[16 * k + l]);
            stream.s[0][l] = a as u32;
            stream.s[1][l] = (a >> 32) as u32;
            stream.s[2][l] = b as u32;
            stream.s[3][l] = (b >> 32) as u32;
        }
    }
    // SAFETY: forwarded.
    unsafe { out.write(st) };
}

/// One xoshiro128++ step of 16 lanes; returns the output and advances the state: the
/// values of `rand_xoshiro::Xoshiro128PlusPlus::next_u32`, whose update
/// `s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11)` is regrouped as
/// three-way XORs of the old words: 9 vector operations instead of 10 where one instruction
/// does a three-way XOR (in cache, fewer instructions were worth up to 6 %: paired roofline).
#[inline(always)]
fn step<S: Simd>(s: S, st: &mut [S::U; 4]) -> S::U {
    let [s0, s1, s2, s3] = *st;
    let r = s.add_u(s.rotl_u::<7>(s.add_u(s0, s3)), s0);
    let t = s.shl_u::<9>(s1);
    let s3x = s.xor_u(s3, s1);
    let n1 = s.xor3_u(s1, s2, s0);
    let n0 = s.xor_u(s0, s3x);
    let n2 = s.xor3_u(s2, s0, t);
    *st = [n0, n1, n2, s.rotl_u::<11>(s3x)];
    r
}

#[inline(always)]
fn load_state<S: Simd>(s: S, st: &StreamState) -> [S::U; 4] {
    // SAFETY: each word row is 16 u32. (No `array::from_fn`: its closure may stay out of line.)
    unsafe {
        [
            s.loadu_u(st.s[0].as_ptr()),
            s.loadu_u(st.s[1].as_ptr()),
            s.loadu_u(st.s[2].as_ptr()),
            s.loadu_u(st.s[3].as_ptr()),
        ]
    }
}

#[inline(always)]
fn load_streams<S: Simd, const K: usize>(s: S, st: &[StreamState]) -> [[S::U; 4]; K] {
    let mut v = [load_state(s, &st[0]); K];
    for (k, vk) in v.iter_mut().enumerate().skip(1) {
        *vk = load_state(s, &st[k]);
    }
    v
}

/// `out[16*d + l]` = draw `d` of lane `l`, for `d < draws`.
///
/// # Safety
/// `out` must be valid for `16 * draws` writes.
#[inline(always)]
pub(crate) unsafe fn random_u32<S: Simd>(s: S, st: &StreamState, draws: usize, out: *mut u32) {
    let mut v = load_state(s, st);
    for d in 0..draws {
        let r = step(s, &mut v);
        // SAFETY: d < draws, so 16*d + 16 <= 16*draws.
        unsafe { s.storeu_u(out.add(16 * d), r) };
    }
}

/// Keep bits of groups `first .. first + groups` of one block: `out[4*(g-first) + s]` gets the
/// 16 keep bits (bit `l` = lane `l`, set iff draw >= `thresh`) of stream `s` at draw `g`.
///
/// The streams are stepped all four together (`S::INTERLEAVE == 4`, AVX-512) or one at a time
/// (every other backend): the result is the same either way, only the number of dependency
/// chains in flight changes.
///
/// # Safety
/// `out` must be valid for `4 * groups` writes.
#[inline(always)]
pub(crate) unsafe fn keep_bits<S: Simd>(
    s: S,
    st: &[StreamState; STREAMS],
    first: usize,
    groups: usize,
    thresh: u32,
    out: *mut u16,
) {
    // SAFETY: (both arms) forwarded from the caller.
    unsafe {
        match S::INTERLEAVE {
            4 => keep_bits_pass::<S, 4>(s, st, 0, first, groups, thresh, out),
            _ => {
                for k in 0..STREAMS {
                    keep_bits_pass::<S, 1>(s, st, k, first, groups, thresh, out);
                }
            }
        }
    }
}

/// Streams `s0 .. s0 + K` of [`keep_bits`], stepped together.
#[inline(always)]
unsafe fn keep_bits_pass<S: Simd, const K: usize>(
    s: S,
    st: &[StreamState; STREAMS],
    s0: usize,
    first: usize,
    groups: usize,
    thresh: u32,
    out: *mut u16,
) {
    let mut v: [[S::U; 4]; K] = load_streams(s, &st[s0..]);
    // Skipping draws before `first` costs one step each, less than producing them; at most a
    // block's worth when a piece starts mid-block.
    for _ in 0..first {
        for vk in v.iter_mut() {
            step(s, vk);
        }
    }
    let t = s.splat_u(thresh);
    for g in 0..groups {
        for (k, vk) in v.iter_mut().enumerate() {
            let r = step(s, vk);
            // SAFETY: g < groups and s0 + k < 4, so the index is < 4 * groups.
            unsafe { *out.add(4 * g + s0 + k) = s.ge_bits(r, t) };
        }
    }
}

/// Keep bits of one block produced on demand, one group (all four streams, four independent
/// dependency chains) at a time, so that a fused kernel interleaves random generation with
/// its loads and stores instead of running the two in separate phases.
pub(crate) struct KeepGen<S: Simd> {
    v: [[S::U; 4]; STREAMS],
    t: S::U,
    next: usize,
}

// By hand: a derive would ask `S: Copy` of the token type through its bounds, not of `S::U`.
impl<S: Simd> Clone for KeepGen<S> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Simd> Copy for KeepGen<S> {}

impl<S: Simd> KeepGen<S> {
    /// A generator positioned at group `first` of the block whose streams are `st`.
    #[inline(always)]
    pub(crate) fn new(s: S, st: &[StreamState; STREAMS], first: usize, thresh: u32) -> Self {
        let mut v: [[S::U; 4]; STREAMS] = load_streams(s, st);
        for _ in 0..first {
            for vk in v.iter_mut() {
                step(s, vk);
            }
        }
        KeepGen {
            v,
            t: s.splat_u(thresh),
            next: first,
        }
    }

    /// Steps every stream until the next group to generate is `g` (no-op if it is past it).
    #[inline(always)]
    pub(crate) fn skip_to(&mut self, s: S, g: usize) {
        while self.next < g {
            for vk in self.v.iter_mut() {
                step(s, vk);
            }
            self.next += 1;
        }
    }

    /// The next raw draw of stream `K` (16 lanes), advancing that stream alone: for a caller
    /// that makes keep decisions in registers. The group count `ensure` keeps no longer
    /// describes the streams after this.
    #[inline(always)]
    pub(crate) fn draw<const K: usize>(&mut self, s: S) -> S::U {
        step(s, &mut self.v[K])
    }

    /// The threshold as a vector: a lane is kept iff its draw is `>=` it.
    #[inline(always)]
    pub(crate) fn thresh(&self) -> S::U {
        self.t
    }

    /// Makes sure the bits of block positions below `upto` (capped at the block's end) are in
    /// `bits` (block-indexed: `bits[4*g + s]` for group `g`, stream `s`).
    ///
    /// # Safety
    /// `bits` must be valid for writes of `4 * GROUPS_PER_BLOCK` u16.
    #[inline(always)]
    pub(crate) unsafe fn ensure(&mut self, s: S, bits: *mut u16, upto: usize) {
        while self.next * GROUP < upto && self.next < GROUPS_PER_BLOCK {
            for (k, vk) in self.v.iter_mut().enumerate() {
                let r = step(s, vk);
                // SAFETY: next < GROUPS_PER_BLOCK and k < 4.
                unsafe { *bits.add(4 * self.next + k) = s.ge_bits(r, self.t) };
            }
            self.next += 1;
        }
    }
}
