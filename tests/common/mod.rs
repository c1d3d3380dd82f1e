//! Helpers shared by the integration tests.
#![allow(dead_code)]

use dropnorm::{Isa, with_isa};

mod half;
#[allow(unused_imports)]
pub use half::Half;

/// Bit patterns, so NaNs compare and +0.0 differs from -0.0.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs `f` once per ISA this CPU has, with that ISA forced on this thread.
pub fn for_each_isa(mut f: impl FnMut(Isa)) {
    for isa in Isa::available() {
        with_isa(isa, || f(isa)).unwrap();
    }
}

/// Deterministic test data: a mix of magnitudes and signs, with a few specials.
pub fn data(n: usize, salt: u64) -> Vec<f32> {
    let mut s = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match i % 97 {
                13 => f32::INFINITY,
                29 => f32::NEG_INFINITY,
                41 => f32::NAN,
                _ => ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0,
            }
        })
        .collect()
}

/// A buffer with `guard` sentinel elements on both sides of an `n`-element window that starts
/// `misalign` elements past the guard (to exercise unaligned starts).
pub struct Guarded {
    pub buf: Vec<f32>,
    pub start: usize,
    pub n: usize,
}

pub const SENTINEL: f32 = -12345.678;

impl Guarded {
    pub fn new(n: usize, misalign: usize, fill: f32) -> Self {
        let guard = 37;
        let mut buf = vec![SENTINEL; n + 2 * guard + misalign];
        let start = guard + misalign;
        buf[start..start + n].fill(fill);
        Guarded { buf, start, n }
    }
    pub fn from(x: &[f32], misalign: usize) -> Self {
        let mut g = Guarded::new(x.len(), misalign, 0.0);
        g.window_mut().copy_from_slice(x);
        g
    }
    pub fn window(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.n]
    }
    pub fn window_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.n]
    }
    pub fn assert_guards(&self, what: &str) {
        let outside = self.buf[..self.start]
            .iter()
            .chain(&self.buf[self.start + self.n..]);
        for v in outside {
            assert_eq!(
                v.to_bits(),
                SENTINEL.to_bits(),
                "{what}: guard band overwritten"
            );
        }
    }
}

/// Deterministic standard normal samples (Box–Muller over a xorshift stream).
pub fn normals(n: usize, salt: u64) -> Vec<f64> {
    let mut s = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

/// Everything a training-mode batch-norm call writes.
#[derive(Debug, Clone, PartialEq)]
pub struct BnOut {
    pub y: Vec<f32>,
    pub mean: Vec<f32>,
    pub invstd: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

impl BnOut {
    pub fn bits(&self) -> [Vec<u32>; 5] {
        [
            bits(&self.y),
            bits(&self.mean),
            bits(&self.invstd),
            bits(&self.running_mean),
            bits(&self.running_var),
        ]
    }
}

/// Runs `batch_norm_train` (out of place, NaN-prefilled output) with running statistics
/// starting at mean 0.5, var 2.0, as the first batch.
pub fn run_bn(
    x: &[f32],
    shape: dropnorm::Shape,
    layout: dropnorm::Layout,
    params: &dropnorm::BnParams,
    epilogue: dropnorm::Epilogue,
    momentum: dropnorm::Momentum,
) -> BnOut {
    run_bn_after(x, shape, layout, params, epilogue, momentum, 0)
}

/// [`run_bn`] after `before` batches (the running statistics' batch count; checks that the
/// call adds one).
pub fn run_bn_after(
    x: &[f32],
    shape: dropnorm::Shape,
    layout: dropnorm::Layout,
    params: &dropnorm::BnParams,
    epilogue: dropnorm::Epilogue,
    momentum: dropnorm::Momentum,
    before: u64,
) -> BnOut {
    let mut batches = before;
    let c = shape.c;
    let mut o = BnOut {
        y: vec![f32::NAN; x.len()],
        mean: vec![f32::NAN; c],
        invstd: vec![f32::NAN; c],
        running_mean: vec![0.5; c],
        running_var: vec![2.0; c],
    };
    dropnorm::batch_norm_train(
        x,
        &mut o.y,
        shape,
        layout,
        params,
        epilogue,
        dropnorm::SavedStatsMut {
            mean: &mut o.mean,
            invstd: &mut o.invstd,
        },
        Some((
            dropnorm::RunningStatsMut {
                mean: &mut o.running_mean,
                var: &mut o.running_var,
                batches: &mut batches,
            },
            momentum,
        )),
    )
    .unwrap();
    assert_eq!(batches, before + 1, "the batch count");
    o
}

/// An NCHW shape `(8, 16, h, 130)` with at least `min` elements: large enough for the
/// non-temporal paths, whatever their threshold.
pub fn shape_with_at_least(min: usize) -> dropnorm::Shape {
    dropnorm::Shape::nchw(8, 16, min.div_ceil(8 * 16 * 130), 130)
}

/// Registers checks (plain `fn()`s of the calling file) that need no second thread: each
/// becomes a libtest test (`main_thread_tests::NAME`), and `MAIN_THREAD` lists them for
/// `tests/main_thread.rs`, which runs them where libtest cannot (aarch64 under qemu: no thread
/// starts there). One list, so a check cannot be in one and missing from the other.
#[allow(unused_macros)]
macro_rules! main_thread_checks {
    ($($name:ident),* $(,)?) => {
        /// The checks of this file that run on the main thread alone.
        #[allow(dead_code)]
        pub const MAIN_THREAD: &[(&str, fn())] = &[$((stringify!($name), $name as fn())),*];

        #[cfg(test)]
        mod main_thread_tests {
            $(
                #[test]
                fn $name() {
                    super::$name()
                }
            )*
        }
    };
}

/// The epilogue of a fused ReLU or none.
pub fn epilogue(relu: bool) -> dropnorm::Epilogue {
    if relu {
        dropnorm::Epilogue::Relu
    } else {
        dropnorm::Epilogue::None
    }
}

/// `f` on a fresh rayon pool of `threads` threads.
pub fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}
