//! Instruction-set selection: detected once at run time, overridable for tests and benches.
//!
//! The ISA used by a call is, in order of precedence:
//! 1. the one set by [`with_isa`] on the calling thread (scoped);
//! 2. the one set by [`force_isa`] (process-wide);
//! 3. the environment variable `DROPNORM_ISA=portable|avx2|avx512`, read once;
//! 4. the best ISA this CPU has.
//!
//! The choice is made once at the start of each public call, on the calling thread, and the
//! whole call (including its rayon tasks) uses it. Dropout masks are identical on every ISA;
//! batch-norm results may differ between ISAs by FMA rounding only.

use core::cell::Cell;
use core::fmt;
use core::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::Error;

/// An instruction set the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable SIMD through the `wide` crate (SSE2 on a default x86_64 build). Always available.
    Portable,
    /// x86_64 AVX2 with FMA and F16C (Intel and AMD AVX2 CPUs have both).
    Avx2,
    /// x86_64 AVX-512 (F, BW, DQ, VL).
    Avx512,
}

impl Isa {
    /// Every ISA, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// Whether this CPU can run this ISA's kernels.
    ///
    /// ```
    /// use dropnorm::Isa;
    /// assert!(Isa::Portable.is_available()); // always
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx512vl")
                    && Isa::Avx2.is_available()
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The ISAs this CPU can run, slowest first.
    ///
    /// ```
    /// use dropnorm::Isa;
    /// for isa in Isa::available() {
    ///     println!("this CPU runs {isa}");
    /// }
    /// assert_eq!(Isa::available().last(), Some(Isa::best()));
    /// ```
    pub fn available() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available())
    }

    /// The fastest ISA this CPU has (cached).
    ///
    /// ```
    /// use dropnorm::Isa;
    /// assert!(Isa::best().is_available());
    /// ```
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| Isa::available().last().unwrap_or(Isa::Portable))
    }

    /// The lowercase name used by `DROPNORM_ISA` and `Display`.
    ///
    /// ```
    /// use dropnorm::Isa;
    /// assert_eq!(Isa::Avx2.name(), "avx2");
    /// assert_eq!("avx2".parse::<Isa>().ok(), Some(Isa::Avx2));
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an unknown ISA name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownIsa(pub String);

impl fmt::Display for UnknownIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown ISA {:?} (expected portable, avx2 or avx512)",
            self.0
        )
    }
}

impl std::error::Error for UnknownIsa {}

impl FromStr for Isa {
    type Err = UnknownIsa;
    fn from_str(s: &str) -> Result<Isa, UnknownIsa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" => Ok(Isa::Portable),
            "avx2" => Ok(Isa::Avx2),
            "avx512" | "avx-512" => Ok(Isa::Avx512),
            _ => Err(UnknownIsa(s.to_string())),
        }
    }
}

const NO_ISA: u8 = u8::MAX;
static FORCED: AtomicU8 = AtomicU8::new(NO_ISA);

thread_local! {
    static SCOPED: Cell<Option<Isa>> = const { Cell::new(None) };
}

fn to_code(isa: Option<Isa>) -> u8 {
    isa.map_or(NO_ISA, |i| i as u8)
}

fn from_code(c: u8) -> Option<Isa> {
    Isa::ALL.into_iter().find(|i| *i as u8 == c)
}

/// The ISA named by `DROPNORM_ISA`, read once. An unknown or unavailable name is ignored (the
/// best ISA is used), so a stale variable never turns into a crash.
fn env_isa() -> Option<Isa> {
    static ENV: OnceLock<Option<Isa>> = OnceLock::new();
    *ENV.get_or_init(|| {
        let isa: Isa = std::env::var("DROPNORM_ISA").ok()?.parse().ok()?;
        isa.is_available().then_some(isa)
    })
}

/// Forces every later call in the process (on threads without a [`with_isa`] scope) to use
/// `isa`; `None` returns to automatic selection.
///
/// ```
/// use dropnorm::{Isa, active_isa, force_isa};
/// force_isa(Some(Isa::Portable)).unwrap();
/// assert_eq!(active_isa(), Isa::Portable);
/// force_isa(None).unwrap();
/// ```
pub fn force_isa(isa: Option<Isa>) -> Result<(), Error> {
    if let Some(i) = isa
        && !i.is_available()
    {
        return Err(Error::IsaUnavailable { isa: i });
    }
    FORCED.store(to_code(isa), Ordering::Relaxed);
    Ok(())
}

/// Runs `f` with every dropnorm call made on this thread using `isa`; the previous choice is
/// restored afterwards (also if `f` panics). Scopes nest.
///
/// ```
/// use dropnorm::{Isa, with_isa, active_isa};
/// let used = with_isa(Isa::Portable, active_isa).unwrap();
/// assert_eq!(used, Isa::Portable);
/// ```
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> Result<R, Error> {
    if !isa.is_available() {
        return Err(Error::IsaUnavailable { isa });
    }
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|s| s.replace(Some(isa))));
    Ok(f())
}

/// The ISA a call made now on this thread would use.
///
/// ```
/// use dropnorm::{Isa, active_isa, with_isa};
/// with_isa(Isa::Portable, || assert_eq!(active_isa(), Isa::Portable))?;
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn active_isa() -> Isa {
    SCOPED
        .with(Cell::get)
        .or_else(|| from_code(FORCED.load(Ordering::Relaxed)))
        .or_else(env_isa)
        .unwrap_or_else(Isa::best)
}
