//! Chunking rules. Where a split fixes the order of a reduction (the batch-norm statistics'
//! row chunks, dropout's RNG blocks), it depends only on the shape, never on the thread count,
//! so results are identical for any number of threads; elsewhere the thread count may size
//! the work units (e.g. channels per NCHW block), which changes scheduling only, never a
//! value. With the `rayon` feature the chunks run on rayon's current pool (callers can
//! `ThreadPool::install` their own); without it, below the thresholds of
//! [`Par::above_threshold`], or on a pool of one thread, on the caller's thread.

/// Below this many elements a call made on a pool's worker thread runs sequentially: the
/// fork/join costs more than it saves.
pub(crate) const SEQ_THRESHOLD: usize = 1 << 16;

/// The same for a call from a thread outside the pool (an application's main thread, say).
/// Such a call hands its job to a sleeping worker and blocks until it is done, which cost
/// 12 µs per call with two workers and 60–70 µs with one on the project machine (against
/// 0.02 µs for a join inside the pool); below 256 Ki elements the caller does the work faster
/// itself (measured on NHWC inference and dropout).
#[cfg_attr(not(feature = "rayon"), allow(dead_code))]
pub(crate) const COLD_SEQ_THRESHOLD: usize = 1 << 18;

/// How a chunked loop runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Par {
    /// On the caller's thread.
    Seq,
    /// On rayon's pool, each task taking at least this many consecutive chunks (it affects
    /// scheduling only, never results).
    Tasks(usize),
}

impl Par {
    /// `Tasks(min_chunks)` when `n` elements are worth the fork/join, else `Seq`: sequential on
    /// a one-thread pool, and below [`SEQ_THRESHOLD`] elements ([`COLD_SEQ_THRESHOLD`] when
    /// called from outside the pool).
    pub(crate) fn above_threshold(n: usize, min_chunks: usize) -> Par {
        if threads() > 1 && n >= seq_threshold() {
            Par::Tasks(min_chunks)
        } else {
            Par::Seq
        }
    }
}

/// The size below which a call runs on the caller's thread (see [`Par::above_threshold`]).
pub(crate) fn seq_threshold() -> usize {
    #[cfg(feature = "rayon")]
    if rayon::current_thread_index().is_none() {
        return COLD_SEQ_THRESHOLD;
    }
    SEQ_THRESHOLD
}

/// Calls `f(k, chunk)` for each `chunk` of `y` of `chunk_len` elements (the last may be
/// shorter), `k` being its index, as `par` says.
pub(crate) fn for_each_chunk<T: Send>(
    y: &mut [T],
    chunk_len: usize,
    par: Par,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    #[cfg(feature = "rayon")]
    if let Par::Tasks(min) = par {
        use rayon::prelude::*;
        y.par_chunks_mut(chunk_len)
            .enumerate()
            .with_min_len(min.max(1))
            .for_each(|(k, c)| f(k, c));
        return;
    }
    let _ = par;
    y.chunks_mut(chunk_len)
        .enumerate()
        .for_each(|(k, c)| f(k, c));
}

/// Like [`for_each_chunk`] over two slices cut into the same number of chunks (`a` in chunks
/// of `a_len`, `b` of `b_len`).
pub(crate) fn for_each_chunk2<A: Send, B: Send>(
    a: &mut [A],
    a_len: usize,
    b: &mut [B],
    b_len: usize,
    par: Par,
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
) {
    debug_assert_eq!(a.len().div_ceil(a_len), b.len().div_ceil(b_len));
    #[cfg(feature = "rayon")]
    if let Par::Tasks(min) = par {
        use rayon::prelude::*;
        a.par_chunks_mut(a_len)
            .zip(b.par_chunks_mut(b_len))
            .enumerate()
            .with_min_len(min.max(1))
            .for_each(|(k, (ca, cb))| f(k, ca, cb));
        return;
    }
    let _ = par;
    a.chunks_mut(a_len)
        .zip(b.chunks_mut(b_len))
        .enumerate()
        .for_each(|(k, (ca, cb))| f(k, ca, cb));
}

thread_local! {
    static CALLER_ONLY: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Runs `f` with every dropnorm call made on this thread running on this thread alone: no
/// rayon task is started, whatever the size of the call. The previous setting is restored
/// afterwards (also if `f` panics). Results are the same bits as on any pool.
///
/// For callers that must not wake a pool (a real-time thread, an engine with threads of its
/// own); without the `rayon` feature every call runs this way.
///
/// ```
/// use dropnorm::{DropoutParams, dropout, on_caller_thread};
/// let x = vec![1.0f32; 1 << 20];
/// let mut y = vec![0.0; x.len()];
/// on_caller_thread(|| dropout(&x, &mut y, &DropoutParams::new(0.5, 7)))?;
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn on_caller_thread<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CALLER_ONLY.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CALLER_ONLY.with(|c| c.replace(true)));
    f()
}

/// Threads of the current pool (1 without rayon, or inside [`on_caller_thread`]). Only used
/// to size work units and to decide whether to fork, never how anything is computed.
pub(crate) fn threads() -> usize {
    if CALLER_ONLY.with(core::cell::Cell::get) {
        return 1;
    }
    #[cfg(feature = "rayon")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "rayon"))]
    1
}

/// Calls `f(i)` for `i` in `0..n`, as `par` says (one index per task at least).
pub(crate) fn for_each_index(n: usize, par: Par, f: impl Fn(usize) + Sync + Send) {
    #[cfg(feature = "rayon")]
    if let Par::Tasks(min) = par {
        use rayon::prelude::*;
        (0..n).into_par_iter().with_min_len(min.max(1)).for_each(f);
        return;
    }
    let _ = par;
    (0..n).for_each(f);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_caller_thread_sets_one_thread_and_restores_it() {
        let before = threads();
        assert_eq!(before, rayon_threads_or_one());
        assert_eq!(on_caller_thread(threads), 1);
        assert_eq!(
            on_caller_thread(|| on_caller_thread(threads) + threads()),
            2
        );
        assert_eq!(threads(), before);
        let caught = std::panic::catch_unwind(|| on_caller_thread(|| panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(threads(), before, "the setting outlived a panic");
    }

    fn rayon_threads_or_one() -> usize {
        #[cfg(feature = "rayon")]
        return rayon::current_num_threads();
        #[cfg(not(feature = "rayon"))]
        1
    }
}
