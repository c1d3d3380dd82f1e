//! A counting global allocator for the allocation tests: each test crate that declares
//! `mod counting_alloc;` installs it. It counts allocations per thread (`thread_*`, for the
//! sequential path) and across all threads (`all_*`, for the parallel path), each only while
//! its switch is on.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

thread_local! {
    static THREAD_ON: Cell<bool> = const { Cell::new(false) };
    static THREAD_COUNT: Cell<usize> = const { Cell::new(0) };
}
static ALL_ON: AtomicBool = AtomicBool::new(false);
static ALL_COUNT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; the bookkeeping is two atomics and two
// const-initialized thread-locals, none of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if THREAD_ON.with(Cell::get) {
            THREAD_COUNT.with(|c| c.set(c.get() + 1));
        }
        if ALL_ON.load(Ordering::Relaxed) {
            ALL_COUNT.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations on this thread during `calls` calls of `f`, after `warm` uncounted ones.
pub fn on_this_thread(warm: usize, calls: usize, mut f: impl FnMut()) -> usize {
    for _ in 0..warm {
        f();
    }
    THREAD_COUNT.with(|c| c.set(0));
    THREAD_ON.with(|c| c.set(true));
    for _ in 0..calls {
        f();
    }
    THREAD_ON.with(|c| c.set(false));
    THREAD_COUNT.with(Cell::get)
}

/// Allocations on any thread during `calls` calls of `f`, after `warm` uncounted ones. Not
/// meaningful while other tests of the same process run.
pub fn on_any_thread(warm: usize, calls: usize, f: &mut (dyn FnMut() + Send)) -> usize {
    for _ in 0..warm {
        f();
    }
    ALL_COUNT.store(0, Ordering::SeqCst);
    ALL_ON.store(true, Ordering::SeqCst);
    for _ in 0..calls {
        f();
    }
    ALL_ON.store(false, Ordering::SeqCst);
    ALL_COUNT.load(Ordering::SeqCst)
}
