//! Whole-slice conversions between f32 and an element type, a vector at a time: the
//! conversions every typed kernel makes on load and store, exposed to the tests per ISA.

use crate::simd::elem::Elem;
use crate::simd::{LANES, Simd};

/// `y[i] = x[i]` widened, for `i < n`.
///
/// # Safety
/// `x..x+n` readable, `y..y+n` writable.
#[inline(always)]
pub(crate) unsafe fn widen<S: Simd, E: Elem>(s: S, x: *const E, y: *mut f32, n: usize) {
    let mut i = 0;
    while i + LANES <= n {
        // SAFETY: i + 16 <= n.
        unsafe { s.storeu(y.add(i), E::load(s, x.add(i))) };
        i += LANES;
    }
    for i in i..n {
        // SAFETY: i < n.
        unsafe { *y.add(i) = (*x.add(i)).widen() };
    }
}

/// `y[i] = x[i]` narrowed, for `i < n`.
///
/// # Safety
/// `x..x+n` readable, `y..y+n` writable.
#[inline(always)]
pub(crate) unsafe fn narrow<S: Simd, E: Elem>(s: S, x: *const f32, y: *mut E, n: usize) {
    let mut i = 0;
    while i + LANES <= n {
        // SAFETY: i + 16 <= n.
        unsafe { E::store(s, y.add(i), s.loadu(x.add(i))) };
        i += LANES;
    }
    for i in i..n {
        // SAFETY: i < n.
        unsafe { *y.add(i) = E::narrow(*x.add(i)) };
    }
}
