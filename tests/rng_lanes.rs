//! The SIMD xoshiro128++ lanes equal `rand_xoshiro`'s scalar generator bit for bit, on every
//! ISA this CPU has, and the fast lane seeding equals `seed_from_u64`.

#[macro_use]
mod common;

use dropnorm::rng::{self, StreamState, Threshold};
use dropnorm::{Isa, reference, testing};
use rand_xoshiro::Xoshiro128PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

fn lane_seeds(base: u64) -> impl Fn(usize) -> u64 {
    move |l| {
        base.wrapping_mul(31)
            .wrapping_add(l as u64 * 0x1234_5678_9ABC)
    }
}

fn lane_seeding_matches_rand_xoshiro() {
    for base in [0u64, 1, 42, u64::MAX, 0xDEAD_BEEF_0000_0001] {
        let st = StreamState::from_lane_seeds(lane_seeds(base));
        for l in 0..16 {
            let want = Xoshiro128PlusPlus::seed_from_u64(lane_seeds(base)(l)).state();
            for k in 0..4 {
                let w = u32::from_le_bytes(want[4 * k..4 * k + 4].try_into().unwrap());
                assert_eq!(st.s[k][l], w, "base {base} lane {l} word {k}");
            }
        }
    }
}

fn every_isa_lane_equals_rand_xoshiro() {
    let draws = 1000;
    for isa in Isa::available() {
        for base in [3u64, 77, u64::MAX - 5] {
            let st = StreamState::from_lane_seeds(lane_seeds(base));
            let got = testing::xoshiro_lanes(isa, &st, draws).unwrap();
            let mut gens: Vec<_> = (0..16)
                .map(|l| Xoshiro128PlusPlus::seed_from_u64(lane_seeds(base)(l)))
                .collect();
            for d in 0..draws {
                for (l, g) in gens.iter_mut().enumerate() {
                    assert_eq!(got[16 * d + l], g.next_u32(), "{isa}: draw {d} lane {l}");
                }
            }
        }
    }
}

fn unavailable_isa_is_an_error() {
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        let st = StreamState::from_lane_seeds(|l| l as u64);
        assert!(testing::xoshiro_lanes(isa, &st, 1).is_err());
    }
}

fn threshold_is_round_p_times_2_pow_32() {
    assert_eq!(rng::threshold(0.0), Threshold::KeepAll);
    assert_eq!(rng::threshold(1.0), Threshold::DropAll);
    assert_eq!(rng::threshold(0.5), Threshold::Below(1 << 31));
    assert_eq!(rng::threshold(0.25), Threshold::Below(1 << 30));
    // Largest f32 below 1 rounds to 2^32 - 2^8, still below u32::MAX.
    let below_one = f32::from_bits(1.0f32.to_bits() - 1);
    assert_eq!(rng::threshold(below_one), Threshold::Below(u32::MAX - 255));
    // Tiny p: never drops, but still the drop path (scale 1).
    assert_eq!(rng::threshold(1e-12), Threshold::Below(0));
    let p = 0.1f32;
    let Threshold::Below(t) = rng::threshold(p) else {
        panic!()
    };
    assert!((t as f64 / 4_294_967_296.0 - p as f64).abs() <= 2f64.powi(-33));
}

fn lane_seeds_differ_across_blocks_and_lanes() {
    let mut seen = std::collections::HashSet::new();
    for block in 0..64u64 {
        for lane in 0..64 {
            assert!(
                seen.insert(rng::lane_seed(9, block, lane)),
                "duplicate lane seed"
            );
        }
    }
}

/// The roofline's `rng_bound` generator makes the dropout's keep decisions, block by block.
fn keep_bits_hook_makes_the_keep_decisions() {
    let n = 2 * rng::BLOCK + 192;
    for isa in Isa::available() {
        for (seed, p, start) in [(3u64, 0.5f32, 0u64), (77, 0.1, 5 * rng::BLOCK as u64)] {
            let mut words = vec![0u16; n / 16];
            testing::keep_bits(isa, seed, p, start, &mut words).unwrap();
            let want = reference::keep_decisions(seed, p, start, n);
            let got: Vec<bool> = (0..n).map(|t| words[t / 16] >> (t % 16) & 1 == 1).collect();
            assert!(got == want, "{isa} seed {seed} start {start}");
        }
    }
}

main_thread_checks!(
    keep_bits_hook_makes_the_keep_decisions,
    lane_seeding_matches_rand_xoshiro,
    every_isa_lane_equals_rand_xoshiro,
    unavailable_isa_is_an_error,
    threshold_is_round_p_times_2_pow_32,
    lane_seeds_differ_across_blocks_and_lanes,
);
