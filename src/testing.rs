//! Hooks for tests, benches and the roofline example: direct access to per-ISA kernels that
//! the public API only reaches through dispatch. Not part of the stable API.

use crate::dispatch::Kernels;
use crate::rng::StreamState;
use crate::{Error, Isa};

fn kernels(isa: Isa) -> Result<&'static Kernels, Error> {
    Kernels::for_isa(isa).ok_or(Error::IsaUnavailable { isa })
}

/// `draws` draws of the 16 lanes of `st` with `isa`'s xoshiro128++ kernel:
/// `out[16*d + l]` = draw `d` of lane `l`.
pub fn xoshiro_lanes(isa: Isa, st: &StreamState, draws: usize) -> Result<Vec<u32>, Error> {
    let mut out = vec![0u32; 16 * draws];
    kernels(isa)?.random_u32(st, &mut out);
    Ok(out)
}

/// The keep bits of elements `start .. start + 16 * out.len()` of the dropout stream with
/// `seed` at drop probability `p` (bit `t % 16` of `out[t / 16]` = element `start + t`), made
/// with `isa`'s generator alone: the roofline's bound for in-cache dropout, which cannot run
/// faster than it makes its decisions. Panics unless `start` is a multiple of the RNG block
/// and `out.len()` of 4 (whole 64-element groups), or if `p` is not in `(0, 1)`.
pub fn keep_bits(isa: Isa, seed: u64, p: f32, start: u64, out: &mut [u16]) -> Result<(), Error> {
    use crate::rng::{BLOCK, GROUPS_PER_BLOCK, Threshold, threshold};
    assert!(start.is_multiple_of(BLOCK as u64) && out.len().is_multiple_of(4));
    let Threshold::Below(t) = threshold(p) else {
        panic!("keep_bits: p = {p} is not in (0, 1)")
    };
    let k = kernels(isa)?;
    for (b, words) in out.chunks_mut(BLOCK / 16).enumerate() {
        let streams = k.block_streams(seed, start / BLOCK as u64 + b as u64);
        k.keep_bits(
            &streams,
            0,
            (words.len() / 4).min(GROUPS_PER_BLOCK),
            t,
            words,
        );
    }
    Ok(())
}

/// Copies `x` to `y` with `isa`'s streaming copy, with plain (`nt = false`) or non-temporal
/// stores: the roofline's reference bandwidth. Panics if the lengths differ.
pub fn copy(isa: Isa, x: &[f32], y: &mut [f32], nt: bool) -> Result<(), Error> {
    use crate::dispatch::Tables;
    let k = f32::table(isa).ok_or(Error::IsaUnavailable { isa })?;
    k.copy(x, y, nt && k.nt);
    Ok(())
}

/// `y[i] = x[i]` widened with `isa`'s bf16 and f16 loads (whole vectors, then scalar tails).
/// Panics if the lengths differ.
pub fn widen_bf16(isa: Isa, x: &[half::bf16], y: &mut [f32]) -> Result<(), Error> {
    kernels(isa)?.widen_bf16(x, y);
    Ok(())
}

/// As [`widen_bf16`] for f16.
pub fn widen_f16(isa: Isa, x: &[half::f16], y: &mut [f32]) -> Result<(), Error> {
    kernels(isa)?.widen_f16(x, y);
    Ok(())
}

/// `y[i] = x[i]` narrowed with the bf16 stores of `isa`'s kernels (on AVX-512 with BF16,
/// `vcvtneps2bf16` with the integer route for subnormal lanes). Panics if the lengths differ.
pub fn narrow_bf16(isa: Isa, x: &[f32], y: &mut [half::bf16]) -> Result<(), Error> {
    use crate::dispatch::Tables;
    half::bf16::table(isa)
        .ok_or(Error::IsaUnavailable { isa })?
        .narrow(x, y);
    Ok(())
}

/// As [`narrow_bf16`], always by `isa`'s integer rounding (the route of CPUs without
/// AVX-512 BF16, and of subnormal lanes on those with it).
pub fn narrow_bf16_integer(isa: Isa, x: &[f32], y: &mut [half::bf16]) -> Result<(), Error> {
    kernels(isa)?.narrow_bf16(x, y);
    Ok(())
}

/// As [`narrow_bf16`] for f16.
pub fn narrow_f16(isa: Isa, x: &[f32], y: &mut [half::f16]) -> Result<(), Error> {
    use crate::dispatch::Tables;
    half::f16::table(isa)
        .ok_or(Error::IsaUnavailable { isa })?
        .narrow(x, y);
    Ok(())
}

/// Whether `isa` has non-temporal stores.
pub fn has_nt(isa: Isa) -> bool {
    Kernels::for_isa(isa).is_some_and(|k| k.nt)
}

/// Output size (bytes) from which the kernels switch to non-temporal stores.
pub const NT_MIN_BYTES: usize = crate::dispatch::NT_MIN_BYTES;

/// Little reader over fuzzer bytes: missing bytes read as zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
    /// The rest as little-endian f32 (the last one zero-padded), at most `max` of them.
    fn floats(&self, max: usize) -> Vec<f32> {
        self.0
            .chunks(4)
            .take(max)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                f32::from_le_bytes(w)
            })
            .collect()
    }
}

/// Equal bits, any NaN matching any NaN: which operand's payload a NaN result carries is left
/// open by IEEE 754 and by Rust, and differs between the instruction forms the compiler picks
/// (the kernels reach an element through a head, unrolled or tail path that depends on the
/// buffer's alignment).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// The dropout fuzz check, shared by the cargo-fuzz target and the corpus-replay test.
///
/// Decodes `p`, seed, offset, flags, a mask-length adjustment, a shape and the data from
/// `data`, runs every dropout entry point on every available ISA and asserts the invariants:
/// no panic; an `Err` leaves every output untouched; results agree bit for bit across ISAs and
/// with the scalar reference; the mask matches the output.
pub fn fuzz_dropout(data: &[u8]) {
    use crate::{DropoutParams, Layout, Shape, mask_len, reference};
    let mut b = Bytes(data);
    let p = match b.u8() % 4 {
        0 => b.f32(),                 // anything, NaN and out of range too
        1 => (b.u8() as f32) / 255.0, // valid, with 0 and 1
        2 => 0.5,
        _ => f32::from_bits((b.u8() as u32 * 0x0101_0101) & 0x3F7F_FFFF), // in [0, 1)
    };
    let seed = b.u64();
    let offset = match b.u8() % 3 {
        0 => 0,
        1 => b.u64() % (1 << 20),
        _ => b.u64(),
    };
    let flags = b.u8();
    let mask_delta = (b.u8() % 4) as usize; // 0 ⇒ one byte short (when n > 0)
    let (n_, c_, hw) = (
        b.u8() as usize % 5,
        b.u8() as usize % 9,
        b.u8() as usize % 7,
    );
    let x: Vec<f32> = b.floats(20_000);
    let n = x.len();
    let params = DropoutParams::new(p, seed)
        .with_offset(offset)
        .with_training(flags & 1 == 0);
    let valid_p = (0.0..=1.0).contains(&p);
    let fits = offset.checked_add(n as u64).is_some();
    const SENTINEL: u32 = 0x7FC0_0BAD;

    let mut first: Option<(Vec<f32>, Vec<u8>)> = None;
    for isa in crate::Isa::available() {
        crate::with_isa(isa, || {
            let mut y = vec![f32::from_bits(SENTINEL); n];
            let mlen = (mask_len(n) + mask_delta).saturating_sub(1);
            let mut mask = vec![0xC3u8; mlen];
            let r = crate::dropout_with_mask(&x, &mut y, &mut mask, &params);
            let ok = valid_p && fits && mlen >= mask_len(n);
            assert_eq!(r.is_ok(), ok, "{isa}: {r:?}");
            if !ok {
                assert!(
                    y.iter().all(|v| v.to_bits() == SENTINEL),
                    "{isa}: written on error"
                );
                assert!(
                    mask.iter().all(|&m| m == 0xC3),
                    "{isa}: mask written on error"
                );
                return;
            }
            // Same as plain forward, in place, and the reference (small inputs).
            let mut y2 = vec![0.0f32; n];
            crate::dropout(&x, &mut y2, &params).unwrap();
            assert!(same_bits(&y, &y2), "{isa}: with_mask vs plain");
            let mut z = x.clone();
            crate::dropout_inplace(&mut z, &params).unwrap();
            assert!(same_bits(&y, &z), "{isa}: in place");
            if n <= 4096 {
                assert!(
                    same_bits(&y, &reference::dropout(&x, &params)),
                    "{isa}: reference"
                );
            }
            // The mask explains the output: dropped ⇒ +0.0; backward from it == regenerated.
            for i in 0..n {
                if mask[i / 8] >> (i % 8) & 1 == 0 {
                    assert_eq!(y[i].to_bits(), 0, "{isa}: dropped element {i} not +0.0");
                }
            }
            if mlen > mask_len(n) {
                assert!(
                    mask[mask_len(n)..].iter().all(|&m| m == 0xC3),
                    "{isa}: mask overrun"
                );
            }
            check_typed::<half::bf16>(isa, &x, &mask, &params);
            check_typed::<half::f16>(isa, &x, &mask, &params);
            let mut dx = vec![0.0f32; n];
            crate::dropout_backward_with_mask(&x, &mask, &mut dx, &params).unwrap();
            if params.training && p > 0.0 {
                assert!(same_bits(&dx, &y), "{isa}: backward from mask");
            }
            match &first {
                None => first = Some((y, mask)),
                Some((fy, fm)) => {
                    assert!(same_bits(fy, &y), "{isa}: differs from another ISA");
                    assert_eq!(
                        fm[..mask_len(n)],
                        mask[..mask_len(n)],
                        "{isa}: mask differs"
                    );
                }
            }
            // Channel-wise on a shape that may or may not fit the data.
            let shape = Shape::nchw(n_, c_, hw, 1 + (flags as usize >> 4) % 3);
            let layout = if flags & 2 == 0 {
                Layout::Nchw
            } else {
                Layout::Nhwc
            };
            let mut yc = vec![f32::from_bits(SENTINEL); n];
            let r = crate::dropout_channels(&x, &mut yc, shape, layout, &params);
            let fits_shape = shape.numel() == Ok(n)
                && shape
                    .planes()
                    .is_ok_and(|pl| offset.checked_add(pl as u64).is_some());
            assert_eq!(r.is_ok(), fits_shape, "{isa}: channels {shape:?}: {r:?}");
            if r.is_err() {
                assert!(
                    yc.iter().all(|v| v.to_bits() == SENTINEL),
                    "{isa}: channels wrote on error"
                );
            } else if n > 0 {
                let want = reference::dropout_channels(
                    &x,
                    shape.c,
                    shape.h * shape.w,
                    layout == Layout::Nhwc,
                    &params,
                );
                assert!(same_bits(&yc, &want), "{isa}: channels vs reference");
            }
        })
        .expect("available ISA");
    }
}

/// A channel count from one byte: below 200, `byte % modulus` (small counts, partial
/// vectors); from 200, 16, 32, 48 or 64 (whole vectors, the rotated row statistics and the
/// period-64 tiles).
fn channels(byte: u8, modulus: usize) -> usize {
    if byte >= 200 {
        16 * (1 + byte as usize % 4)
    } else {
        byte as usize % modulus
    }
}

/// The batch-norm training-forward fuzz check, shared by the cargo-fuzz target and the
/// corpus-replay test: arbitrary shapes, layouts, parameters and values on every ISA. Asserts
/// no panic; an `Err` exactly for invalid arguments, with every output untouched; in place ==
/// out of place, bit for bit; and finite outputs wherever the inputs and parameters are finite
/// and moderate (|v| <= 1e15, so that no intermediate can overflow f32). NaN results match
/// any NaN (see `same_bits`).
pub fn fuzz_bn_train(data: &[u8]) {
    use crate::{BnParams, Layout, Momentum, RunningStatsMut, SavedStatsMut, Shape};
    let mut b = Bytes(data);
    let dims = [
        b.u8() as usize % 6,
        channels(b.u8(), 9),
        b.u8() as usize % 7,
        b.u8() as usize % 7,
    ];
    let flags = b.u8();
    let layout = [Layout::Nc, Layout::Nchw, Layout::Nhwc][flags as usize % 3];
    let shape = match layout {
        Layout::Nc => Shape::nc(dims[0] * 9 + dims[2], dims[1]),
        _ => Shape::nchw(dims[0], dims[1], dims[2], dims[3]),
    };
    let eps = match b.u8() % 4 {
        0 => b.f32(),
        1 => 0.0,
        _ => 1e-5,
    };
    let m = b.f32();
    // Batches seen before the call: any count, for the cumulative average.
    let (momentum, batches) = match b.u8() % 4 {
        0 => (Momentum::PyTorch(m), 0),
        1 => (Momentum::Onnx(m), 0),
        2 => (Momentum::PyTorchCumulative, b.u8() as u64),
        _ => (Momentum::PyTorch(0.1), 0),
    };
    let len_delta = (b.u8() % 3) as isize - 1; // -1, 0, +1: wrong lengths too
    let rest: Vec<f32> = b.floats(8192);
    let numel = shape.numel().unwrap_or(0);
    let xlen = if flags & 0x80 != 0 {
        (numel as isize + len_delta).max(0) as usize
    } else {
        numel
    };
    let c = shape.c;
    let pick = |i: usize| rest.get(i % rest.len().max(1)).copied().unwrap_or(1.0);
    let x: Vec<f32> = (0..xlen)
        .map(|i| if rest.is_empty() { i as f32 } else { pick(i) })
        .collect();
    let gamma: Vec<f32> = (0..c).map(|i| pick(xlen + i)).collect();
    let beta: Vec<f32> = (0..c).map(|i| pick(xlen + c + i)).collect();
    let epilogue = if flags & 8 != 0 {
        crate::Epilogue::Relu
    } else {
        crate::Epilogue::None
    };
    let mut params = BnParams::new(eps);
    if flags & 16 != 0 {
        params = params.with_affine(&gamma, &beta);
    }
    let moderate = |v: &f32| v.is_finite() && v.abs() <= 1e15;
    let all_moderate = x.iter().all(moderate)
        && (flags & 16 == 0 || gamma.iter().chain(&beta).all(moderate))
        && eps.is_finite();
    const S: u32 = 0x7FC0_0BAD;
    let fresh = |n: usize| vec![f32::from_bits(S); n];
    let untouched = |v: &[f32]| v.iter().all(|e| e.to_bits() == S);
    for isa in crate::Isa::available() {
        crate::with_isa(isa, || {
            let (mut y, mut sm, mut si, mut rm, mut rv) = (
                fresh(xlen),
                fresh(c),
                fresh(c),
                vec![0.0f32; c],
                vec![1.0f32; c],
            );
            let mut nb = batches;
            let r = crate::batch_norm_train(
                &x,
                &mut y,
                shape,
                layout,
                &params,
                epilogue,
                SavedStatsMut {
                    mean: &mut sm,
                    invstd: &mut si,
                },
                Some((
                    RunningStatsMut {
                        mean: &mut rm,
                        var: &mut rv,
                        batches: &mut nb,
                    },
                    momentum,
                )),
            );
            let valid = xlen == numel
                && shape.numel().is_ok()
                && eps.is_finite()
                && eps >= 0.0
                && momentum.weights(batches + 1).is_ok()
                && (c == 0 || numel / c >= 2);
            assert_eq!(
                r.is_ok(),
                valid,
                "{isa}: {shape:?} {layout:?} eps {eps} {momentum:?}: {r:?}"
            );
            if r.is_err() {
                assert!(
                    untouched(&y) && untouched(&sm) && untouched(&si),
                    "{isa}: written on error"
                );
                assert!(rm.iter().all(|&v| v == 0.0) && rv.iter().all(|&v| v == 1.0));
                assert_eq!(nb, batches, "{isa}: batches counted on error");
                return;
            }
            assert_eq!(nb, batches + 1, "{isa}: batches not counted");
            if all_moderate && momentum.weights(batches + 1).is_ok_and(|w| w.0.is_finite()) {
                assert!(
                    y.iter().all(|v| v.is_finite()),
                    "{isa}: non-finite y from finite input"
                );
                assert!(
                    sm.iter()
                        .chain(&si)
                        .chain(&rm)
                        .chain(&rv)
                        .all(|v| v.is_finite()),
                    "{isa}: non-finite stats"
                );
            }
            let mut z = x.clone();
            let (mut sm2, mut si2, mut rm2, mut rv2) =
                (fresh(c), fresh(c), vec![0.0f32; c], vec![1.0f32; c]);
            let mut nb2 = batches;
            crate::batch_norm_train_inplace(
                &mut z,
                shape,
                layout,
                &params,
                epilogue,
                SavedStatsMut {
                    mean: &mut sm2,
                    invstd: &mut si2,
                },
                Some((
                    RunningStatsMut {
                        mean: &mut rm2,
                        var: &mut rv2,
                        batches: &mut nb2,
                    },
                    momentum,
                )),
            )
            .expect("valid in place");
            assert!(
                same_bits(&z, &y) && same_bits(&sm, &sm2) && same_bits(&si, &si2),
                "{isa}: in place differs"
            );
            assert!(
                same_bits(&rm, &rm2) && same_bits(&rv, &rv2),
                "{isa}: running stats differ in place"
            );
            // The split phase on the whole batch: the one call's bits (NaN payloads aside).
            let mut st = vec![crate::ChannelStats::default(); c];
            crate::channel_stats(&x, &mut st, shape, layout).expect("valid stats");
            let (mut y3, mut sm3, mut si3, mut rm3, mut rv3) = (
                fresh(xlen),
                fresh(c),
                fresh(c),
                vec![0.0f32; c],
                vec![1.0f32; c],
            );
            let mut nb3 = batches;
            crate::batch_norm_apply(
                &x,
                &mut y3,
                shape,
                layout,
                &params,
                epilogue,
                &st,
                SavedStatsMut {
                    mean: &mut sm3,
                    invstd: &mut si3,
                },
                Some((
                    RunningStatsMut {
                        mean: &mut rm3,
                        var: &mut rv3,
                        batches: &mut nb3,
                    },
                    momentum,
                )),
            )
            .expect("valid apply");
            assert!(
                same_bits(&y3, &y) && same_bits(&sm3, &sm) && same_bits(&si3, &si),
                "{isa}: stats + apply differs from the one call"
            );
            assert!(
                same_bits(&rm3, &rm) && same_bits(&rv3, &rv) && nb3 == nb,
                "{isa}: running stats differ after stats + apply"
            );
            train_typed::<half::bf16>(isa, &x, shape, layout, &params, epilogue);
            train_typed::<half::f16>(isa, &x, shape, layout, &params, epilogue);
        })
        .expect("available ISA");
    }
}

/// Dropout of `x` narrowed to `E` (valid parameters): the f32 call's mask, kept values
/// `narrow(widen(x) · scale)` and dropped ones `+0.0` (NaN payloads aside), in place too.
fn check_typed<E: crate::Element>(
    isa: crate::Isa,
    x: &[f32],
    mask: &[u8],
    params: &crate::DropoutParams,
) {
    let n = x.len();
    let xe: Vec<E> = x.iter().map(|&v| E::narrow(v)).collect();
    let mut ye = vec![E::narrow(1.0); n];
    let mut me = vec![0u8; crate::mask_len(n)];
    crate::dropout_with_mask(&xe, &mut ye, &mut me, params).unwrap();
    assert_eq!(
        me[..],
        mask[..crate::mask_len(n)],
        "{isa}: 16-bit mask differs"
    );
    let widened = |v: &[E]| v.iter().map(|e| e.widen()).collect::<Vec<f32>>();
    // Eval mode copies (the mask is all ones).
    let scale = if params.training { params.scale() } else { 1.0 };
    let want: Vec<f32> = (0..n)
        .map(|i| {
            if mask[i / 8] >> (i % 8) & 1 == 1 {
                E::narrow(xe[i].widen() * scale).widen()
            } else {
                0.0
            }
        })
        .collect();
    assert!(same_bits(&widened(&ye), &want), "{isa}: 16-bit dropout");
    let mut z = xe.clone();
    crate::dropout_inplace(&mut z, params).unwrap();
    assert!(same_bits(&widened(&z), &want), "{isa}: 16-bit in place");
}

/// The training forward of `x` narrowed to `E` (valid arguments): the f32 kernel's output
/// and saved statistics on the widened data, narrowed (NaN payloads aside).
fn train_typed<E: crate::Element>(
    isa: crate::Isa,
    x: &[f32],
    shape: crate::Shape,
    layout: crate::Layout,
    params: &crate::BnParams,
    epilogue: crate::Epilogue,
) {
    use crate::SavedStatsMut;
    let c = shape.c;
    let xe: Vec<E> = x.iter().map(|&v| E::narrow(v)).collect();
    let xw: Vec<f32> = xe.iter().map(|e| e.widen()).collect();
    let (mut ye, mut yw) = (vec![E::narrow(0.0); x.len()], vec![0.0f32; x.len()]);
    let (mut m1, mut s1, mut m2, mut s2) = (vec![0.0; c], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    let saved = SavedStatsMut {
        mean: &mut m1,
        invstd: &mut s1,
    };
    crate::batch_norm_train(&xe, &mut ye, shape, layout, params, epilogue, saved, None)
        .expect("valid");
    let saved = SavedStatsMut {
        mean: &mut m2,
        invstd: &mut s2,
    };
    crate::batch_norm_train(&xw, &mut yw, shape, layout, params, epilogue, saved, None)
        .expect("valid");
    let narrowed: Vec<f32> = yw.iter().map(|&v| E::narrow(v).widen()).collect();
    let got: Vec<f32> = ye.iter().map(|e| e.widen()).collect();
    assert!(same_bits(&got, &narrowed), "{isa}: 16-bit training output");
    assert!(
        same_bits(&m1, &m2) && same_bits(&s1, &s2),
        "{isa}: 16-bit training statistics"
    );
}

/// Decoded fuzz input for the batch-norm inference/backward checks.
struct BnCase {
    shape: crate::Shape,
    layout: crate::Layout,
    eps: f32,
    relu: bool,
    affine: bool,
    x: Vec<f32>,
    other: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    /// Whether the data are moderate enough that finite outputs can be demanded.
    moderate: bool,
}

fn bn_case(data: &[u8]) -> BnCase {
    use crate::{Layout, Shape};
    let mut b = Bytes(data);
    let dims = [
        b.u8() as usize % 5,
        channels(b.u8(), 8),
        b.u8() as usize % 6,
        b.u8() as usize % 6,
    ];
    let flags = b.u8();
    let layout = [Layout::Nc, Layout::Nchw, Layout::Nhwc][flags as usize % 3];
    let shape = match layout {
        Layout::Nc => Shape::nc(dims[0] * 7 + dims[2], dims[1]),
        _ => Shape::nchw(dims[0], dims[1], dims[2], dims[3]),
    };
    let eps = if flags & 0x40 != 0 { b.f32() } else { 1e-5 };
    let vals: Vec<f32> = b.floats(8192);
    let pick = |i: usize| vals.get(i % vals.len().max(1)).copied().unwrap_or(0.5);
    let n = shape.numel().unwrap_or(0);
    let c = shape.c;
    let short = (flags & 0x80 != 0) as usize;
    let x: Vec<f32> = (0..n.saturating_sub(short)).map(pick).collect();
    let other: Vec<f32> = (0..n).map(|i| pick(i + 7)).collect();
    let gamma: Vec<f32> = (0..c).map(|i| pick(n + i)).collect();
    let beta: Vec<f32> = (0..c).map(|i| pick(n + c + i)).collect();
    let mean: Vec<f32> = (0..c).map(|i| pick(n + 2 * c + i)).collect();
    let var: Vec<f32> = (0..c).map(|i| pick(n + 3 * c + i).abs()).collect();
    let ok = |v: &f32| v.is_finite() && v.abs() <= 1e15;
    let moderate = x
        .iter()
        .chain(&other)
        .chain(&gamma)
        .chain(&beta)
        .chain(&mean)
        .all(ok)
        && var
            .iter()
            .all(|v| v.is_finite() && *v <= 1e15 && *v >= 1e-20)
        && eps.is_finite();
    BnCase {
        shape,
        layout,
        eps,
        relu: flags & 8 != 0,
        affine: flags & 16 != 0,
        x,
        other,
        gamma,
        beta,
        mean,
        var,
        moderate,
    }
}

impl BnCase {
    fn params(&self) -> crate::BnParams<'_> {
        let p = crate::BnParams::new(self.eps);
        if self.affine {
            p.with_affine(&self.gamma, &self.beta)
        } else {
            p
        }
    }
    fn epilogue(&self) -> crate::Epilogue {
        if self.relu {
            crate::Epilogue::Relu
        } else {
            crate::Epilogue::None
        }
    }
    fn valid_shape(&self) -> bool {
        self.shape.numel() == Ok(self.x.len())
    }
    fn valid_eps(&self) -> bool {
        self.eps.is_finite() && self.eps >= 0.0
    }

    /// Whether the running variances are usable (none negative or NaN: a corrupt checkpoint).
    fn valid_var(&self) -> bool {
        self.var.iter().all(|v| *v >= 0.0)
    }
}

/// The inference and add+ReLU fuzz check: no panic; `Err` exactly for invalid arguments, with
/// the output untouched; in place == out of place; add+ReLU outputs are `>= 0` or NaN; finite
/// outputs for moderate inputs.
pub fn fuzz_bn_infer(data: &[u8]) {
    let cs = bn_case(data);
    let stats = crate::RunningStats {
        mean: &cs.mean,
        var: &cs.var,
    };
    let n = cs.x.len();
    const S: u32 = 0x7FC0_0BAD;
    for isa in crate::Isa::available() {
        crate::with_isa(isa, || {
            let mut y = vec![f32::from_bits(S); n];
            let r = crate::batch_norm_infer(
                &cs.x,
                &mut y,
                cs.shape,
                cs.layout,
                &cs.params(),
                cs.epilogue(),
                &stats,
            );
            assert_eq!(
                r.is_ok(),
                cs.valid_shape() && cs.valid_eps() && cs.valid_var(),
                "{isa}: {r:?}"
            );
            if r.is_err() {
                assert!(
                    y.iter().all(|v| v.to_bits() == S),
                    "{isa}: written on error"
                );
                return;
            }
            if cs.moderate {
                assert!(y.iter().all(|v| v.is_finite()), "{isa}: non-finite output");
            }
            let mut z = cs.x.clone();
            crate::batch_norm_infer_inplace(
                &mut z,
                cs.shape,
                cs.layout,
                &cs.params(),
                cs.epilogue(),
                &stats,
            )
            .expect("valid");
            assert!(same_bits(&z, &y), "{isa}: in place differs");
            let mut w = vec![f32::from_bits(S); n];
            crate::batch_norm_add_relu_infer(
                &cs.x,
                &cs.other,
                &mut w,
                cs.shape,
                cs.layout,
                &cs.params(),
                &stats,
            )
            .expect("valid");
            assert!(
                w.iter().all(|v| *v >= 0.0 || v.is_nan()),
                "{isa}: add+relu below zero"
            );
            if cs.moderate {
                assert!(
                    w.iter().all(|v| v.is_finite()),
                    "{isa}: non-finite add+relu output"
                );
            }
            infer_typed::<half::bf16>(isa, &cs, &stats);
            infer_typed::<half::f16>(isa, &cs, &stats);
        })
        .expect("available ISA");
    }
}

/// Inference of the case's data narrowed to `E` (valid arguments): the f32 kernel's output on
/// the widened data, narrowed (NaN payloads aside); add+ReLU likewise.
fn infer_typed<E: crate::Element>(isa: crate::Isa, cs: &BnCase, stats: &crate::RunningStats) {
    let n = cs.x.len();
    let narrow = |v: &[f32]| v.iter().map(|&x| E::narrow(x)).collect::<Vec<E>>();
    let widen = |v: &[E]| v.iter().map(|e| e.widen()).collect::<Vec<f32>>();
    let (xe, re) = (narrow(&cs.x), narrow(&cs.other[..n]));
    let (xw, rw) = (widen(&xe), widen(&re));
    let (p, ep) = (cs.params(), cs.epilogue());
    let mut ye = vec![E::narrow(0.0); n];
    crate::batch_norm_infer(&xe, &mut ye, cs.shape, cs.layout, &p, ep, stats).expect("valid");
    let mut yw = vec![0.0f32; n];
    crate::batch_norm_infer(&xw, &mut yw, cs.shape, cs.layout, &p, ep, stats).expect("valid");
    assert!(
        same_bits(&widen(&ye), &widen(&narrow(&yw))),
        "{isa}: 16-bit inference is not the f32 kernel narrowed"
    );
    crate::batch_norm_add_relu_infer(&xe, &re, &mut ye, cs.shape, cs.layout, &p, stats)
        .expect("valid");
    crate::batch_norm_add_relu_infer(&xw, &rw, &mut yw, cs.shape, cs.layout, &p, stats)
        .expect("valid");
    assert!(
        same_bits(&widen(&ye), &widen(&narrow(&yw))),
        "{isa}: 16-bit add+ReLU is not the f32 kernel narrowed"
    );
}

/// The backward fuzz check: a training forward, then its backward (through the fused ReLU
/// when flagged, and through add+ReLU; also over bf16 and f16): no panic; `Err` exactly for invalid arguments, with
/// every output untouched; finite gradients for moderate inputs.
pub fn fuzz_bn_backward(data: &[u8]) {
    use crate::{BnGrads, SavedStats, SavedStatsMut};
    let cs = bn_case(data);
    let (n, c) = (cs.x.len(), cs.shape.c);
    const S: u32 = 0x7FC0_0BAD;
    let fresh = |len: usize| vec![f32::from_bits(S); len];
    let untouched = |v: &[f32]| v.iter().all(|e| e.to_bits() == S);
    let count = cs.shape.n * cs.shape.h * cs.shape.w;
    for isa in crate::Isa::available() {
        crate::with_isa(isa, || {
            let (mut y, mut m, mut s) = (fresh(n), fresh(c), fresh(c));
            let fwd = crate::batch_norm_train(
                &cs.x,
                &mut y,
                cs.shape,
                cs.layout,
                &cs.params(),
                cs.epilogue(),
                SavedStatsMut {
                    mean: &mut m,
                    invstd: &mut s,
                },
                None,
            );
            let valid = cs.valid_shape() && cs.valid_eps() && (c == 0 || count >= 2);
            assert_eq!(fwd.is_ok(), valid, "{isa}: forward {fwd:?}");
            // Backward with the saved statistics (or, after a refused forward, with arbitrary
            // ones: it must refuse for the same reasons).
            if fwd.is_err() {
                (m, s) = (cs.mean.clone(), cs.var.clone());
            }
            let saved = SavedStats {
                mean: &m,
                invstd: &s,
            };
            let (mut dx, mut dg, mut db) = (fresh(n), fresh(c), fresh(c));
            let grads = BnGrads {
                dx: &mut dx,
                dgamma: &mut dg,
                dbeta: &mut db,
            };
            let yy = cs.relu.then_some(&y[..]);
            let r = crate::batch_norm_backward(
                &cs.x,
                &cs.other[..n],
                yy,
                grads,
                cs.shape,
                cs.layout,
                &cs.params(),
                &saved,
            );
            assert_eq!(r.is_ok(), valid, "{isa}: backward {r:?}");
            if r.is_err() {
                assert!(
                    untouched(&dx) && untouched(&dg) && untouched(&db),
                    "{isa}: written on error"
                );
                return;
            }
            if cs.moderate
                && y.iter().all(|v| v.is_finite())
                && s.iter().all(|v| v.is_finite() && *v <= 1e15)
            {
                assert!(
                    dx.iter().chain(&dg).chain(&db).all(|v| v.is_finite()),
                    "{isa}: non-finite gradient"
                );
            }
            // The split backward on the whole batch: the one call's bits (NaN payloads aside).
            let mut sums = vec![crate::GradSums::default(); c];
            let other = &cs.other[..n];
            let (shape, layout) = (cs.shape, cs.layout);
            crate::batch_norm_backward_sums(&cs.x, other, yy, &mut sums, shape, layout, &saved)
                .expect("valid sums");
            let (mut dx3, mut dg3, mut db3) = (fresh(n), fresh(c), fresh(c));
            let grads = BnGrads {
                dx: &mut dx3,
                dgamma: &mut dg3,
                dbeta: &mut db3,
            };
            let p = cs.params();
            crate::batch_norm_backward_apply(
                &cs.x, other, yy, grads, shape, layout, &p, &saved, &sums,
            )
            .expect("valid backward apply");
            assert!(
                same_bits(&dx3, &dx) && same_bits(&dg3, &dg) && same_bits(&db3, &db),
                "{isa}: backward sums + apply differs from the one call"
            );
            let (mut dr, mut dx2, mut dg2, mut db2) = (fresh(n), fresh(n), fresh(c), fresh(c));
            let grads = crate::AddReluGrads {
                dx: &mut dx2,
                dr: &mut dr,
                dgamma: &mut dg2,
                dbeta: &mut db2,
            };
            crate::batch_norm_add_relu_backward(
                &cs.x,
                &cs.other[..n],
                &y,
                grads,
                cs.shape,
                cs.layout,
                &cs.params(),
                &saved,
            )
            .expect("valid");
            for i in 0..n {
                let want = if y[i] > 0.0 { cs.other[i] } else { 0.0 };
                assert_eq!(dr[i].to_bits(), want.to_bits(), "{isa}: dr[{i}]");
            }
            backward_typed::<half::bf16>(isa, &cs, &y, &saved);
            backward_typed::<half::f16>(isa, &cs, &y, &saved);
        })
        .expect("available ISA");
    }
}

/// Backward (plain or through the fused ReLU, and through add+ReLU) over `x`, `dy` and `y`
/// narrowed to `E` (valid arguments): the f32 kernel's gradients on the widened data, `dx`
/// and `dr` narrowed, `dγ`, `dβ` the same bits (NaN payloads aside).
fn backward_typed<E: crate::Element>(
    isa: crate::Isa,
    cs: &BnCase,
    y: &[f32],
    saved: &crate::SavedStats,
) {
    use crate::{AddReluGrads, BnGrads};
    let (n, c) = (cs.x.len(), cs.shape.c);
    let narrow = |v: &[f32]| v.iter().map(|&f| E::narrow(f)).collect::<Vec<E>>();
    let widen = |v: &[E]| v.iter().map(|e| e.widen()).collect::<Vec<f32>>();
    let (xe, dye, ye) = (narrow(&cs.x), narrow(&cs.other[..n]), narrow(y));
    let (xw, dyw, yw) = (widen(&xe), widen(&dye), widen(&ye));
    let (shape, layout, p) = (cs.shape, cs.layout, cs.params());
    let (mut dxe, mut dg1, mut db1) = (narrow(&vec![0.0; n]), vec![0.0; c], vec![0.0; c]);
    let (mut dxw, mut dg2, mut db2) = (vec![0.0; n], vec![0.0; c], vec![0.0; c]);
    let (yy_e, yy_w) = (cs.relu.then_some(&ye[..]), cs.relu.then_some(&yw[..]));
    let grads = BnGrads {
        dx: &mut dxe,
        dgamma: &mut dg1,
        dbeta: &mut db1,
    };
    crate::batch_norm_backward(&xe, &dye, yy_e, grads, shape, layout, &p, saved).expect("valid");
    let grads = BnGrads {
        dx: &mut dxw,
        dgamma: &mut dg2,
        dbeta: &mut db2,
    };
    crate::batch_norm_backward(&xw, &dyw, yy_w, grads, shape, layout, &p, saved).expect("valid");
    let narrowed = |v: &[f32]| widen(&narrow(v));
    assert!(
        same_bits(&widen(&dxe), &narrowed(&dxw)) && same_bits(&dg1, &dg2) && same_bits(&db1, &db2),
        "{isa}: 16-bit backward"
    );
    let (mut dre, mut drw) = (narrow(&vec![0.0; n]), vec![0.0; n]);
    let grads = AddReluGrads {
        dx: &mut dxe,
        dr: &mut dre,
        dgamma: &mut dg1,
        dbeta: &mut db1,
    };
    crate::batch_norm_add_relu_backward(&xe, &dye, &ye, grads, shape, layout, &p, saved)
        .expect("valid");
    let grads = AddReluGrads {
        dx: &mut dxw,
        dr: &mut drw,
        dgamma: &mut dg2,
        dbeta: &mut db2,
    };
    crate::batch_norm_add_relu_backward(&xw, &dyw, &yw, grads, shape, layout, &p, saved)
        .expect("valid");
    assert!(
        same_bits(&widen(&dxe), &narrowed(&dxw))
            && same_bits(&widen(&dre), &narrowed(&drw))
            && same_bits(&dg1, &dg2)
            && same_bits(&db1, &db2),
        "{isa}: 16-bit add+ReLU backward"
    );
}
