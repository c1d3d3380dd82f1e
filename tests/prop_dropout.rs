//! Property tests over lengths, probabilities, seeds, offsets and values.

mod common;

use common::*;
use dropnorm::*;
use proptest::prelude::*;

fn prob() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), Just(1.0f32), Just(0.5f32), 0.0f32..1.0]
}

fn values(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            8 => -1e3f32..1e3,
            1 => any::<f32>(),
            1 => prop::num::f32::INFINITE | prop::num::f32::QUIET_NAN | prop::num::f32::ZERO,
        ],
        0..max_len,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn elementwise_matches_reference_on_every_isa(
        x in prop_oneof![4 => values(300), 1 => values(40_000)],
        p in prob(),
        seed in any::<u64>(),
        offset in prop_oneof![Just(0u64), 0u64..100_000, 0u64..(1u64 << 62)],
        misalign in 0usize..4,
    ) {
        let params = DropoutParams::new(p, seed).with_offset(offset);
        let want = reference::dropout(&x, &params);
        let keep = reference::keep_decisions(seed, p, offset, x.len());
        for isa in Isa::available() {
            with_isa(isa, || -> Result<(), TestCaseError> {
                let mut y = Guarded::new(x.len(), misalign, f32::NAN);
                let mut mask = vec![0u8; mask_len(x.len())];
                dropout_with_mask(&x, y.window_mut(), &mut mask, &params).unwrap();
                prop_assert_eq!(bits(y.window()), bits(&want), "{}", isa);
                y.assert_guards("prop");
                if p > 0.0 {
                    prop_assert_eq!(&mask, &reference::pack_mask(&keep));
                }
                // Backward from the stored mask == backward regenerated == forward on dy.
                let dy: Vec<f32> = x.iter().map(|v| v * 0.5 + 1.0).collect();
                let mut a = vec![f32::NAN; x.len()];
                let mut b = vec![f32::NAN; x.len()];
                dropout_backward(&dy, &mut a, &params).unwrap();
                dropout_backward_with_mask(&dy, &mask, &mut b, &params).unwrap();
                if p > 0.0 {
                    prop_assert_eq!(bits(&a), bits(&b));
                }
                prop_assert_eq!(bits(&a), bits(&reference::dropout(&dy, &params)));
                Ok(())
            }).unwrap()?;
        }
    }

    #[test]
    fn channels_match_reference_on_every_isa(
        (n, c, h, w) in (0usize..4, 1usize..40, 1usize..9, 1usize..9),
        p in prob(),
        seed in any::<u64>(),
        offset in 0u64..1000,
        nhwc in any::<bool>(),
    ) {
        let shape = Shape::nchw(n, c, h, w);
        let len = shape.numel().unwrap();
        let x = data(len, seed);
        let layout = if nhwc { Layout::Nhwc } else { Layout::Nchw };
        let params = DropoutParams::new(p, seed).with_offset(offset);
        let want = reference::dropout_channels(&x, c, h * w, nhwc, &params);
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; len];
            with_isa(isa, || dropout_channels(&x, &mut y, shape, layout, &params)).unwrap().unwrap();
            prop_assert_eq!(bits(&y), bits(&want), "{} {:?}", isa, shape);
        }
    }
}
