//! The f32 ↔ bf16/f16 conversions of every ISA against the `half` crate, bit for bit:
//! widening on all 2^16 inputs, narrowing on every exponent and sign with ties, subnormals,
//! ±0, ±inf, signalling and quiet NaNs with payloads, and pseudo-random mantissas; at every
//! length up to 70 and at odd starts, with the elements around the output untouched.

#[macro_use]
mod common;

use common::*;
use dropnorm::{Isa, testing};
use half::{bf16, f16};

/// Every 16-bit pattern.
fn all_u16() -> Vec<u16> {
    (0..=u16::MAX).collect()
}

/// f32 inputs for narrowing: for each sign and exponent, mantissas at and around every
/// rounding boundary of both formats (bf16 keeps 7 bits; f16 10, fewer for its subnormals),
/// the extremes, and pseudo-random ones.
fn narrowing_inputs() -> Vec<f32> {
    let mut mantissas: Vec<u32> = vec![0, 1, 0x7F_FFFF, 0x40_0000, 0x3F_FFFF, 0x40_0001];
    for k in 0..23 {
        for m in [1u32 << k, (1 << k) - 1, (1 << k) + 1, 3 << k, (3 << k) - 1] {
            mantissas.push(m & 0x7F_FFFF);
        }
    }
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..48 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        mantissas.push((s >> 20) as u32 & 0x7F_FFFF);
    }
    let mut v = Vec::new();
    for sign in [0u32, 1 << 31] {
        for exp in 0..=255u32 {
            for &m in &mantissas {
                v.push(f32::from_bits(sign | exp << 23 | m));
            }
        }
    }
    v
}

/// Fails naming the first index where `got` and `want` differ (not the whole vectors).
fn first_difference(got: &[u32], want: &[u32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!("{what}: [{i}] = {:#010x}, want {:#010x}", got[i], want[i]);
    }
}

fn widening_matches_half_on_every_input() {
    let h = all_u16();
    let (bf, hf): (Vec<bf16>, Vec<f16>) = h
        .iter()
        .map(|&b| (bf16::from_bits(b), f16::from_bits(b)))
        .unzip();
    let want_bf: Vec<u32> = bf.iter().map(|v| v.to_f32().to_bits()).collect();
    let want_hf: Vec<u32> = hf.iter().map(|v| v.to_f32().to_bits()).collect();
    for isa in Isa::available() {
        // Whole, and from an odd start (a 16-bit tensor may start at any 2-byte boundary).
        for start in [0, 1, 7] {
            let mut y = vec![f32::NAN; h.len() - start];
            testing::widen_bf16(isa, &bf[start..], &mut y).unwrap();
            first_difference(
                &bits(&y),
                &want_bf[start..],
                &format!("{isa}: bf16 from {start}"),
            );
            testing::widen_f16(isa, &hf[start..], &mut y).unwrap();
            first_difference(
                &bits(&y),
                &want_hf[start..],
                &format!("{isa}: f16 from {start}"),
            );
        }
    }
}

type NarrowBf16 = fn(Isa, &[f32], &mut [bf16]) -> Result<(), dropnorm::Error>;

fn narrowing_matches_half() {
    let x = narrowing_inputs();
    let want_bf: Vec<u16> = x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    let want_hf: Vec<u16> = x.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    for isa in Isa::available() {
        for start in [0, 3] {
            // The kernels' narrowing (on AVX-512 with BF16, vcvtneps2bf16 for vectors without
            // subnormal lanes — the inputs go by exponent, so most vectors have none — and
            // the integer route for the others) and the integer route on its own.
            for (route, narrow) in [
                ("kernels'", testing::narrow_bf16 as NarrowBf16),
                ("integer", testing::narrow_bf16_integer),
            ] {
                let mut y = vec![bf16::from_bits(0x1234); x.len() - start];
                narrow(isa, &x[start..], &mut y).unwrap();
                for (i, (g, w)) in y.iter().zip(&want_bf[start..]).enumerate() {
                    let v = x[start + i];
                    assert_eq!(
                        g.to_bits(),
                        *w,
                        "{isa} {route}: bf16 of {v:e} ({:#010x})",
                        v.to_bits()
                    );
                }
            }
            let mut y = vec![f16::from_bits(0x1234); x.len() - start];
            testing::narrow_f16(isa, &x[start..], &mut y).unwrap();
            for (i, (g, w)) in y.iter().zip(&want_hf[start..]).enumerate() {
                let v = x[start + i];
                assert_eq!(
                    g.to_bits(),
                    *w,
                    "{isa}: f16 of {v:e} ({:#010x})",
                    v.to_bits()
                );
            }
        }
    }
}

/// Every length up to 70 (whole vectors and every tail), outputs inside guard elements that
/// must stay as they were.
fn every_length_and_guards() {
    let x = data(70, 3);
    for isa in Isa::available() {
        for n in 0..=70 {
            let mut y = vec![bf16::from_bits(0xABCD); n + 2];
            testing::narrow_bf16(isa, &x[..n], &mut y[1..n + 1]).unwrap();
            assert_eq!(
                (y[0].to_bits(), y[n + 1].to_bits()),
                (0xABCD, 0xABCD),
                "{isa} {n}"
            );
            for i in 0..n {
                assert_eq!(
                    y[i + 1].to_bits(),
                    bf16::from_f32(x[i]).to_bits(),
                    "{isa} {n}: [{i}]"
                );
            }
            let mut w = vec![-7.0f32; n + 2];
            testing::widen_bf16(isa, &y[1..n + 1], &mut w[1..n + 1]).unwrap();
            assert_eq!((w[0], w[n + 1]), (-7.0, -7.0), "{isa} {n}: widen guards");
            for i in 0..n {
                assert_eq!(w[i + 1].to_bits(), y[i + 1].to_f32().to_bits(), "{isa} {n}");
            }
            let mut h = vec![f16::from_bits(0xABCD); n + 2];
            testing::narrow_f16(isa, &x[..n], &mut h[1..n + 1]).unwrap();
            assert_eq!(
                (h[0].to_bits(), h[n + 1].to_bits()),
                (0xABCD, 0xABCD),
                "{isa} {n}"
            );
            for i in 0..n {
                assert_eq!(
                    h[i + 1].to_bits(),
                    f16::from_f32(x[i]).to_bits(),
                    "{isa} {n}"
                );
            }
            testing::widen_f16(isa, &h[1..n + 1], &mut w[1..n + 1]).unwrap();
            assert_eq!((w[0], w[n + 1]), (-7.0, -7.0), "{isa} {n}: widen guards");
        }
    }
}

main_thread_checks!(
    widening_matches_half_on_every_input,
    narrowing_matches_half,
    every_length_and_guards,
);
