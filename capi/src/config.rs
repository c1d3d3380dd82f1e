//! Process-wide settings reachable from C: the instruction set and the threads calls run on.

use core::ffi::c_char;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dropnorm::{Isa, force_isa, on_caller_thread};

use crate::status::{CError, DropnormStatus, guard};

/// An instruction set: one of the `DROPNORM_ISA_*` codes.
pub type DropnormIsa = u32;
/// Automatic choice: the best this CPU has (or `DROPNORM_ISA` from the environment).
pub const DROPNORM_ISA_AUTO: DropnormIsa = 0;
/// Portable SIMD (SSE2 on x86_64, NEON on aarch64): always available.
pub const DROPNORM_ISA_PORTABLE: DropnormIsa = 1;
/// x86_64 AVX2 with FMA and F16C.
pub const DROPNORM_ISA_AVX2: DropnormIsa = 2;
/// x86_64 AVX-512 (F, BW, DQ, VL).
pub const DROPNORM_ISA_AVX512: DropnormIsa = 3;

fn isa_of(code: DropnormIsa) -> Result<Option<Isa>, CError> {
    match code {
        DROPNORM_ISA_AUTO => Ok(None),
        DROPNORM_ISA_PORTABLE => Ok(Some(Isa::Portable)),
        DROPNORM_ISA_AVX2 => Ok(Some(Isa::Avx2)),
        DROPNORM_ISA_AVX512 => Ok(Some(Isa::Avx512)),
        value => Err(CError::InvalidEnum { arg: "isa", value }),
    }
}

fn code_of(isa: Isa) -> DropnormIsa {
    match isa {
        Isa::Portable => DROPNORM_ISA_PORTABLE,
        Isa::Avx2 => DROPNORM_ISA_AVX2,
        Isa::Avx512 => DROPNORM_ISA_AVX512,
    }
}

/// Makes every later call in the process use `isa` (`DROPNORM_ISA_AUTO`: back to automatic
/// choice). `DROPNORM_ERR_ISA_UNAVAILABLE` if this CPU lacks it; nothing changes then.
/// Dropout masks are the same on every ISA; batch-norm results may differ by FMA rounding.
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_set_isa(isa: DropnormIsa) -> DropnormStatus {
    guard(|| Ok(force_isa(isa_of(isa)?)?))
}

/// The ISA a call made now on this thread would use (never `DROPNORM_ISA_AUTO`).
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_active_isa() -> DropnormIsa {
    code_of(dropnorm::active_isa())
}

/// 1 if this CPU can run `isa` (always for `DROPNORM_ISA_AUTO` and `DROPNORM_ISA_PORTABLE`),
/// 0 if not or if `isa` is not an ISA code.
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_isa_available(isa: DropnormIsa) -> i32 {
    match isa_of(isa) {
        Ok(None) => 1,
        Ok(Some(i)) => i32::from(i.is_available()),
        Err(_) => 0,
    }
}

/// A static lowercase name: `"auto"`, `"portable"`, `"avx2"`, `"avx512"`, or `"unknown"`.
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_isa_name(isa: DropnormIsa) -> *const c_char {
    match isa_of(isa) {
        Ok(None) => c"auto".as_ptr(),
        Ok(Some(Isa::Portable)) => c"portable".as_ptr(),
        Ok(Some(Isa::Avx2)) => c"avx2".as_ptr(),
        Ok(Some(Isa::Avx512)) => c"avx512".as_ptr(),
        Err(_) => c"unknown".as_ptr(),
    }
}

/// The thread setting: 0 = rayon's global pool, 1 = the caller's thread, n = our pool.
static THREADS: AtomicUsize = AtomicUsize::new(0);
/// The pool of `THREADS >= 2`. Replaced as a whole: a call running on the old one keeps it
/// alive through its `Arc` until it returns.
static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);

/// Below this many elements a call runs on the caller's thread even when a pool is set:
/// handing a job to a pool and waiting costs 12–70 µs (dropnorm's own rule for calls from
/// outside a pool, `COLD_SEQ_THRESHOLD` in src/parallel.rs, measured there).
const POOL_MIN_ELEMENTS: usize = 1 << 18;

/// Where later calls run: `0` on rayon's global pool (its size from `RAYON_NUM_THREADS` or
/// the CPU count; the default), `1` on the calling thread only (no thread is ever started or
/// woken), `n >= 2` on a pool of `n` threads owned by dropnorm (started here; calls under 256 Ki
/// elements still run on the caller's thread, where they are faster). Results are the same
/// bits for every setting. `DROPNORM_ERR_THREAD_POOL` if the threads cannot be started; the
/// setting is unchanged then.
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_set_threads(threads: usize) -> DropnormStatus {
    guard(|| {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if threads >= 2 {
            let new = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("dropnorm-{i}"))
                .build()
                .map_err(|e| CError::ThreadPool(e.to_string()))?;
            // The pool first, then the count: a call that sees the count finds the pool.
            *pool = Some(Arc::new(new));
            THREADS.store(threads, Ordering::Release);
        } else {
            THREADS.store(threads, Ordering::Release);
            *pool = None;
        }
        Ok(())
    })
}

/// The number of threads a large call runs on under the current setting.
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_threads() -> usize {
    match THREADS.load(Ordering::Acquire) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}

/// Runs one kernel call of `elements` elements where [`dropnorm_set_threads`] says.
pub(crate) fn run<R: Send>(elements: usize, f: impl FnOnce() -> R + Send) -> R {
    match THREADS.load(Ordering::Acquire) {
        0 => f(),
        1 => on_caller_thread(f),
        _ if elements < POOL_MIN_ELEMENTS => on_caller_thread(f),
        _ => {
            let pool = POOL.lock().unwrap_or_else(PoisonError::into_inner).clone();
            match pool {
                Some(p) => p.install(f),
                // Set back to 0/1 between the two loads: the new setting's default.
                None => f(),
            }
        }
    }
}
