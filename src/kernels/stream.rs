//! Streaming elementwise kernels: one pass that reads each input once and writes each output
//! once, with plain or non-temporal stores.
//!
//! [`write_stream`] owns the loop structure every such kernel shares: a 4× unrolled main loop,
//! partial vectors through a stack buffer (never reading or writing past the slice), and for
//! non-temporal stores a head peeled until the output is 64-byte aligned (vmovntps faults on
//! unaligned addresses, and large allocations usually start 16 bytes past a page).

use core::ptr;

use crate::simd::{LANES, Simd};

/// Writes `y[i..i+len]` for every piece of `0..n` with the value `f(i, len)`: `len == 16` for
/// full vectors, `len < 16` for the partial head/tail (only the first `len` lanes are stored).
///
/// # Safety
/// `y` must be valid for `n` writes; `f` must be safe to call for every `(i, len)` it receives.
#[inline(always)]
unsafe fn write_stream<S: Simd>(
    s: S,
    y: *mut f32,
    n: usize,
    nt: bool,
    mut f: impl FnMut(usize, usize) -> S::F,
) {
    let mut i = 0;
    // SAFETY (whole body): every store covers y[i..i+len] with i + len <= n.
    unsafe {
        if nt && S::NT {
            let misalign = (y as usize) % 64;
            let head = if misalign == 0 {
                0
            } else {
                ((64 - misalign) / 4).min(n)
            };
            if head > 0 {
                store_partial(s, y, head, f(0, head));
                i = head;
            }
            while i + LANES <= n {
                s.store_nt(y.add(i), f(i, LANES));
                i += LANES;
            }
            if i < n {
                store_partial(s, y.add(i), n - i, f(i, n - i));
            }
            s.fence();
            return;
        }
        while i + 4 * LANES <= n {
            let v0 = f(i, LANES);
            let v1 = f(i + LANES, LANES);
            let v2 = f(i + 2 * LANES, LANES);
            let v3 = f(i + 3 * LANES, LANES);
            s.storeu(y.add(i), v0);
            s.storeu(y.add(i + LANES), v1);
            s.storeu(y.add(i + 2 * LANES), v2);
            s.storeu(y.add(i + 3 * LANES), v3);
            i += 4 * LANES;
        }
        while i + LANES <= n {
            s.storeu(y.add(i), f(i, LANES));
            i += LANES;
        }
        if i < n {
            store_partial(s, y.add(i), n - i, f(i, n - i));
        }
    }
}

/// Loads `x[0..len]` (`len <= 16`); a full vector when `len == 16`, else the first `len`
/// lanes with zeros after them.
///
/// # Safety
/// `x` must be valid for `len` reads.
#[inline(always)]
unsafe fn load<S: Simd>(s: S, x: *const f32, len: usize) -> S::F {
    // SAFETY: forwarded; the partial case copies only `len` floats into a 16-float buffer.
    unsafe {
        if len == LANES {
            s.loadu(x)
        } else {
            let mut buf = [0.0f32; LANES];
            ptr::copy_nonoverlapping(x, buf.as_mut_ptr(), len);
            s.loadu(buf.as_ptr())
        }
    }
}

/// Stores the first `len < 16` lanes of `v` to `y`.
///
/// # Safety
/// `y` must be valid for `len` writes.
#[inline(always)]
unsafe fn store_partial<S: Simd>(s: S, y: *mut f32, len: usize, v: S::F) {
    let mut buf = [0.0f32; LANES];
    // SAFETY: the buffer holds 16 floats; `len` are copied out to `y`.
    unsafe {
        s.storeu(buf.as_mut_ptr(), v);
        ptr::copy_nonoverlapping(buf.as_ptr(), y, len);
    }
}

/// 16 bits of `bits` starting at bit `i` (bit `i` at `bits[i/16] >> (i%16)`).
///
/// # Safety
/// `bits` must be valid for reads at `i/16` and `i/16 + 1`.
#[inline(always)]
unsafe fn bits16(bits: *const u16, i: usize) -> u16 {
    let w = i / 16;
    // SAFETY: forwarded.
    let pair = unsafe { (*bits.add(w) as u32) | ((*bits.add(w + 1) as u32) << 16) };
    (pair >> (i % 16)) as u16
}

/// `y[i] = bit i of bits ? x[i] * scale : +0.0`. `x` may equal `y` (in place).
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes, `bits` for `n / 16 + 2` reads.
#[inline(always)]
pub(crate) unsafe fn apply_mask<S: Simd>(
    s: S,
    x: *const f32,
    y: *mut f32,
    n: usize,
    bits: *const u16,
    scale: f32,
    nt: bool,
) {
    let sv = s.splat(scale);
    // SAFETY: `write_stream` passes i + len <= n, and i / 16 + 1 <= n / 16 + 1.
    unsafe {
        write_stream(s, y, n, nt, |i, len| {
            s.mul_keep(bits16(bits, i), load(s, x.add(i), len), sv)
        })
    }
}

/// `y = x * k`. `x` may equal `y`.
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes.
#[inline(always)]
pub(crate) unsafe fn scale<S: Simd>(s: S, x: *const f32, y: *mut f32, n: usize, k: f32, nt: bool) {
    let kv = s.splat(k);
    // SAFETY: `write_stream` passes i + len <= n.
    unsafe { write_stream(s, y, n, nt, |i, len| s.mul(load(s, x.add(i), len), kv)) }
}

/// `y = x` bit for bit (no arithmetic, so NaN payloads survive).
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes.
#[inline(always)]
pub(crate) unsafe fn copy<S: Simd>(s: S, x: *const f32, y: *mut f32, n: usize, nt: bool) {
    // SAFETY: `write_stream` passes i + len <= n.
    unsafe { write_stream(s, y, n, nt, |i, len| load(s, x.add(i), len)) }
}

/// `y[i] = v`.
///
/// # Safety
/// `y` valid for `n` writes.
#[inline(always)]
pub(crate) unsafe fn fill<S: Simd>(s: S, y: *mut f32, n: usize, v: f32, nt: bool) {
    let vv = s.splat(v);
    // SAFETY: forwarded.
    unsafe { write_stream(s, y, n, nt, |_, _| vv) }
}
