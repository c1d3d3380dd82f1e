//! Bad input gets a typed error naming the argument, and nothing is written.

#[macro_use]
mod common;
use dropnorm::*;

const S: f32 = 7.5;

fn untouched(v: &[f32]) -> bool {
    v.iter().all(|&x| x == S)
}

fn invalid_probability() {
    let x = vec![1.0f32; 40];
    for p in [f32::NAN, -0.0001, 1.0001, f32::INFINITY, -1.0] {
        let params = DropoutParams::new(p, 1);
        let mut y = vec![S; 40];
        let e = dropout(&x, &mut y, &params).unwrap_err();
        assert!(matches!(e, Error::InvalidProbability { .. }), "{e:?}");
        assert!(e.to_string().contains("probability"), "{e}");
        assert!(untouched(&y));
        let mut z = vec![S; 40];
        assert!(dropout_inplace(&mut z, &params).is_err());
        assert!(untouched(&z));
        let mut m = vec![0x11u8; 5];
        assert!(dropout_with_mask(&x, &mut y, &mut m, &params).is_err());
        assert!(untouched(&y) && m.iter().all(|&b| b == 0x11));
        assert!(dropout_backward(&x, &mut y, &params).is_err());
        assert!(dropout_backward_with_mask(&x, &m, &mut y, &params).is_err());
        assert!(
            dropout_channels(&x, &mut y, Shape::nchw(2, 2, 2, 5), Layout::Nchw, &params).is_err()
        );
        assert!(untouched(&y));
        // Eval mode still validates p: a bad p is a bug in the caller either way.
        assert!(dropout(&x, &mut y, &params.with_training(false)).is_err());
    }
}

fn length_mismatch_names_the_argument() {
    let x = vec![1.0f32; 10];
    let mut y = vec![S; 9];
    let params = DropoutParams::new(0.5, 1);
    let e = dropout(&x, &mut y, &params).unwrap_err();
    assert_eq!(
        e,
        Error::LengthMismatch {
            arg: "y",
            expected: 10,
            actual: 9
        }
    );
    assert!(e.to_string().contains("`y`"));
    assert!(untouched(&y));
    let e = dropout_backward(&x, &mut y, &params).unwrap_err();
    assert!(e.to_string().contains("`dx`"), "{e}");
    let mut m = [0u8; 2];
    assert!(dropout_backward_with_mask(&x, &m, &mut y, &params).is_err());
    assert!(dropout_with_mask(&x, &mut y, &mut m, &params).is_err());
    assert!(untouched(&y));
}

fn mask_too_short() {
    let x = vec![1.0f32; 17];
    let mut y = vec![S; 17];
    let mut m = vec![0x33u8; 2]; // needs 3
    let params = DropoutParams::new(0.5, 1);
    let e = dropout_with_mask(&x, &mut y, &mut m, &params).unwrap_err();
    assert_eq!(
        e,
        Error::BufferTooSmall {
            arg: "mask",
            needed: 3,
            actual: 2
        }
    );
    assert!(e.to_string().contains("`mask`"));
    assert!(untouched(&y) && m == [0x33, 0x33]);
    assert!(dropout_backward_with_mask(&x, &m, &mut y, &params).is_err());
    assert!(untouched(&y));
}

fn offset_overflow() {
    let x = vec![1.0f32; 4];
    let mut y = vec![S; 4];
    let params = DropoutParams::new(0.5, 1).with_offset(u64::MAX - 2);
    let e = dropout(&x, &mut y, &params).unwrap_err();
    assert!(matches!(e, Error::OffsetOverflow { .. }), "{e:?}");
    assert!(untouched(&y));
    // The last representable range is fine.
    let params = DropoutParams::new(0.5, 1).with_offset(u64::MAX - 4);
    dropout(&x, &mut y, &params).unwrap();
}

fn shape_errors() {
    let x = vec![1.0f32; 12];
    let mut y = vec![S; 12];
    let params = DropoutParams::new(0.5, 1);
    let e = dropout_channels(
        &x,
        &mut y,
        Shape::nchw(usize::MAX, 2, 1, 1),
        Layout::Nchw,
        &params,
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeOverflow { .. }), "{e:?}");
    assert!(e.to_string().contains("overflows"));
    let e = dropout_channels(&x, &mut y, Shape::nchw(1, 3, 2, 2), Layout::Nc, &params).unwrap_err();
    assert!(matches!(e, Error::InvalidShape { .. }), "{e:?}");
    let e =
        dropout_channels(&x, &mut y, Shape::nchw(1, 3, 2, 3), Layout::Nchw, &params).unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    let mut z = vec![S; 12];
    assert!(
        dropout_channels_inplace(&mut z, Shape::nchw(2, 3, 2, 3), Layout::Nhwc, &params).is_err()
    );
    assert!(untouched(&y) && untouched(&z));
    // Channel offsets count planes: overflow is checked on them too.
    let far = params.with_offset(u64::MAX - 1);
    let e = dropout_channels(&x, &mut y, Shape::nchw(1, 3, 2, 2), Layout::Nchw, &far).unwrap_err();
    assert!(matches!(e, Error::OffsetOverflow { .. }), "{e:?}");
    assert!(untouched(&y));
}

fn zero_sized_shapes_are_fine() {
    let params = DropoutParams::new(0.5, 1);
    dropout::<f32>(&[], &mut [], &params).unwrap();
    dropout_with_mask::<f32>(&[], &mut [], &mut [], &params).unwrap();
    for shape in [
        Shape::nchw(0, 3, 4, 4),
        Shape::nchw(2, 0, 4, 4),
        Shape::nchw(2, 3, 0, 4),
    ] {
        for layout in [Layout::Nchw, Layout::Nhwc] {
            dropout_channels::<f32>(&[], &mut [], shape, layout, &params).unwrap();
        }
    }
}

fn unavailable_isa() {
    for isa in Isa::ALL {
        assert_eq!(with_isa(isa, || 1).is_ok(), isa.is_available());
        assert_eq!(force_isa(Some(isa)).is_ok(), isa.is_available());
    }
    force_isa(None).unwrap();
    assert_eq!("AVX2".parse::<Isa>(), Ok(Isa::Avx2));
    assert!("sse9".parse::<Isa>().is_err());
}

main_thread_checks!(
    invalid_probability,
    length_mismatch_names_the_argument,
    mask_too_short,
    offset_overflow,
    shape_errors,
    zero_sized_shapes_are_fine,
    unavailable_isa,
);
