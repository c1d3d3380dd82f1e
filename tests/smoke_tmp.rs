mod common;
use common::*;
use dropnorm::*;
#[test]
fn smoke() {
    for_each_isa(|isa| {
        for n in [0usize, 1, 15, 16, 17, 70, 16383, 16384, 16385, 49157] {
            for off in [0u64, 5, 16381] {
                let x = data(n, 3);
                let p = DropoutParams::new(0.3, 99).with_offset(off);
                let mut y = vec![f32::NAN; n];
                dropout(&x, &mut y, &p).unwrap();
                let r = reference::dropout(&x, &p);
                assert_eq!(bits(&y), bits(&r), "{isa} n={n} off={off}");
            }
        }
    });
}
