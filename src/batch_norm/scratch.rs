//! Per-thread scratch buffers: the kernels' temporaries (sums, pivots, tiles of constants)
//! without an allocation per call.

use core::cell::RefCell;

macro_rules! scratch_fn {
    ($name:ident, $t:ty) => {
        /// Runs `f` on a scratch buffer of `len` values, reused across calls on this thread
        /// (contents unspecified: callers write before they read). The thread keeps a stack
        /// of buffers, one per level of nesting — a call made from a rayon task that a worker
        /// picked up while an outer call on that thread holds its buffer takes the next — so
        /// nothing is allocated once the deepest nesting and largest size have been seen.
        pub(crate) fn $name<R>(len: usize, f: impl FnOnce(&mut [$t]) -> R) -> R {
            thread_local! {
                static FREE: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) };
            }
            // The stack is borrowed only to pop and push, never across `f`.
            let mut buf = FREE
                .try_with(|s| s.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_default();
            if buf.len() < len {
                buf.resize(len, 0 as $t);
            }
            let r = f(&mut buf[..len]);
            // During thread teardown the stack may be gone: the buffer is then just dropped.
            // (`borrow_mut` cannot fail: no borrow outlives these two statements.)
            let _ = FREE.try_with(|s| s.borrow_mut().push(buf));
            r
        }
    };
}
scratch_fn!(scratch_f64, f64);
scratch_fn!(scratch_f32, f32);
// The tiled constants, taken while `scratch_f32` may be in use by the caller.
scratch_fn!(scratch_tiles, f32);
