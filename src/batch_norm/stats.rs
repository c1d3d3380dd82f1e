//! Per-channel batch statistics: computed by the shifted-sum kernels, mergeable across shards.

use super::rows::row_moments_alone;
use crate::error::check_len;
use crate::isa::active_kernels;
use crate::parallel::Par;
use crate::simd::Kernels;
use crate::simd::channels::{Block, Runs, for_each_block_read};
use crate::{Error, Layout, Shape};

/// Count, mean and sum of squared deviations (`m2`) of one channel: the statistics of a shard
/// of a batch, mergeable with those of other shards (threads, processes, machines) into the
/// statistics of the whole batch — the building block of synchronized batch norm.
///
/// ```
/// use dropnorm::ChannelStats;
/// let a = ChannelStats::from_values(&[1.0, 2.0, 3.0]);
/// let b = ChannelStats::from_values(&[4.0, 5.0]);
/// let all = a.merge(&b)?;
/// assert_eq!(all.count, 5);
/// assert!((all.mean - 3.0).abs() < 1e-12);
/// assert!((all.var() - 2.0).abs() < 1e-12);
/// # Ok::<(), dropnorm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChannelStats {
    /// Number of values (an integer: an `f32` count breaks past 2^24).
    pub count: u64,
    /// Mean of the values.
    pub mean: f64,
    /// `Σ(x − mean)²`.
    pub m2: f64,
}

impl ChannelStats {
    /// Statistics of `values`, by Welford's algorithm in f64 (a reference; the kernels use
    /// [`channel_stats`]).
    ///
    /// ```
    /// use dropnorm::ChannelStats;
    /// let s = ChannelStats::from_values(&[1.0, 2.0, 3.0, 4.0]);
    /// assert_eq!((s.count, s.mean, s.var()), (4, 2.5, 1.25));
    /// ```
    pub fn from_values(values: &[f32]) -> Self {
        let mut s = ChannelStats::default();
        for &v in values {
            s.count += 1;
            let d = v as f64 - s.mean;
            s.mean += d / s.count as f64;
            s.m2 += d * (v as f64 - s.mean);
        }
        s
    }

    /// The statistics of the union of both shards (Chan et al.'s parallel combination);
    /// [`Error::CountOverflow`] when the total count does not fit in `u64`.
    ///
    /// ```
    /// use dropnorm::ChannelStats;
    /// // Statistics of two shards merge into those of the whole (what synchronized BN all-reduces).
    /// let a = ChannelStats::from_values(&[1.0, 2.0]);
    /// let b = ChannelStats::from_values(&[3.0, 4.0, 5.0]);
    /// let whole = ChannelStats::from_values(&[1.0, 2.0, 3.0, 4.0, 5.0]);
    /// let m = a.merge(&b)?;
    /// assert_eq!(m.count, 5);
    /// assert!((m.mean - whole.mean).abs() < 1e-12 && (m.var() - whole.var()).abs() < 1e-12);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn merge(&self, other: &ChannelStats) -> Result<ChannelStats, Error> {
        if self.count == 0 {
            return Ok(*other);
        }
        if other.count == 0 {
            return Ok(*self);
        }
        let count = self
            .count
            .checked_add(other.count)
            .ok_or(Error::CountOverflow)?;
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        Ok(ChannelStats {
            count,
            mean: self.mean + delta * (nb / n),
            m2: self.m2 + other.m2 + delta * delta * (na * nb / n),
        })
    }

    /// Biased variance `m2 / count` (what normalization uses); NaN when empty.
    ///
    /// ```
    /// use dropnorm::ChannelStats;
    /// assert_eq!(ChannelStats::from_values(&[1.0, 3.0]).var(), 1.0);
    /// ```
    pub fn var(&self) -> f64 {
        self.m2 / self.count as f64
    }

    /// Unbiased variance `m2 / (count − 1)` (PyTorch's running variance); NaN below 2 values.
    ///
    /// ```
    /// use dropnorm::ChannelStats;
    /// assert_eq!(ChannelStats::from_values(&[1.0, 3.0]).var_unbiased(), 2.0);
    /// ```
    pub fn var_unbiased(&self) -> f64 {
        if self.count < 2 {
            f64::NAN
        } else {
            self.m2 / (self.count - 1) as f64
        }
    }
}

/// Per-channel statistics of `x` into `out` (one per channel).
///
/// ```
/// use dropnorm::{ChannelStats, Layout, Shape, channel_stats};
/// let x = [1.0f32, 2.0, 10.0, 20.0]; // NC (2, 2): channel 0 = [1, 10], channel 1 = [2, 20]
/// let mut out = [ChannelStats::default(); 2];
/// channel_stats(&x, Shape::nc(2, 2), Layout::Nc, &mut out).unwrap();
/// assert_eq!(out[0].mean, 5.5);
/// assert_eq!(out[1].var(), 81.0);
/// ```
pub fn channel_stats(
    x: &[f32],
    shape: Shape,
    layout: Layout,
    out: &mut [ChannelStats],
) -> Result<(), Error> {
    check_len("x", shape.validate(layout)?, x.len())?;
    check_len("out", shape.c, out.len())?;
    let count = count_per_channel(shape)?;
    if x.is_empty() {
        out.fill(ChannelStats {
            count: count as u64,
            ..Default::default()
        });
        return Ok(());
    }
    let k = active_kernels();
    let stats = |(_, mean, var): (f32, f64, f64)| ChannelStats {
        count: count as u64,
        mean,
        m2: var * count as f64,
    };
    match geometry(shape, layout) {
        Geometry::Runs(geo) => {
            let par = Par::above_threshold(x.len(), 1);
            for_each_block_read(x, geo, block_width(geo), par, out, |block, o| {
                let mut m = [(0.0, 0.0, 0.0); MAX_BLOCK];
                moments(k, &block, count, &mut m);
                for (s, &mi) in o.iter_mut().zip(&m) {
                    *s = stats(mi);
                }
            });
        }
        Geometry::Rows { c, .. } => row_moments_alone(k, x, c, |ch, m| out[ch] = stats(m)),
    }
    Ok(())
}

/// Channels per block at most (the column kernels' 64 lanes).
pub(crate) const MAX_BLOCK: usize = 64;

/// Values per channel, checked (the caller's shape may be one whose element count is 0 but
/// whose `n·h·w` overflows).
pub(crate) fn count_per_channel(shape: Shape) -> Result<usize, Error> {
    shape.per_channel()
}

/// How the channels of a tensor lie in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Geometry {
    /// NCHW: each channel is `n` runs of `h·w`.
    Runs(Runs),
    /// NC and NHWC: each channel is a column of `rows` rows of `c`.
    Rows { rows: usize, c: usize },
}

/// The geometry of a validated `shape`. NCHW with `H·W = 1` is NC.
pub(crate) fn geometry(shape: Shape, layout: Layout) -> Geometry {
    let hw = shape.h * shape.w;
    match layout {
        Layout::Nchw if hw != 1 => Geometry::Runs(Runs {
            n: shape.n,
            c: shape.c,
            hw,
        }),
        _ => Geometry::Rows {
            rows: shape.n * hw,
            c: shape.c,
        },
    }
}

/// Channels per NCHW block (one task). The result does not depend on it (every channel's
/// arithmetic is the same in any block). Channels are pipelined within a block, so blocks are
/// as large as leave every thread two of them.
pub(crate) fn block_width(geo: Runs) -> usize {
    geo.c
        .div_ceil(2 * crate::parallel::threads())
        .clamp(1, MAX_BLOCK)
}

/// `(pivot, mean, biased var)` of each channel of `block`, in f64, into `out`.
///
/// The pivot is the channel's first value; if the mean lies more than 4σ from it (an outlier
/// pivot), the sums are taken again around the mean, so the cancellation in
/// `Σv²/n − (Σv/n)²` never costs more than a factor of 17 in relative precision.
pub(crate) fn moments(k: &Kernels, block: &Block, count: usize, out: &mut [(f32, f64, f64)]) {
    let chans = block.channels();
    let w = chans.len();
    let mut pivots = [0.0f32; MAX_BLOCK];
    for (p, ch) in pivots.iter_mut().zip(chans.clone()) {
        *p = block.first(ch);
    }
    let mut sums = [[0.0f64; 2]; MAX_BLOCK];
    block.sums(k, &pivots[..w], &mut sums[..w]);
    let mut again = false;
    for i in 0..w {
        let (m, better) = from_sums(pivots[i], sums[i], count);
        out[i] = m;
        if let Some(b) = better {
            pivots[i] = b;
            again = true;
        }
    }
    if again {
        block.sums(k, &pivots[..w], &mut sums[..w]);
        for i in 0..w {
            out[i] = from_sums(pivots[i], sums[i], count).0;
        }
    }
}

/// `(pivot, mean, biased var)` from the sums `[Σx, Σ(x − pivot)²]` of `count` values, and a
/// better pivot (the mean) when this one lies more than 4σ away.
///
/// The mean is `Σx / n` from the f64 sum of `x` itself, so it is accurate to f64 rounding
/// whatever the spread; the variance is `Σ(x − K)²/n − (mean − K)²`, whose cancellation the
/// pivot rule bounds.
pub(crate) fn from_sums(
    pivot: f32,
    sums: [f64; 2],
    count: usize,
) -> ((f32, f64, f64), Option<f32>) {
    let n = count as f64;
    let mean = sums[0] / n;
    let d = mean - pivot as f64;
    let var = (sums[1] / n - d * d).max(0.0);
    let better = mean as f32;
    let refine = d * d > 16.0 * var && better.is_finite() && better != pivot;
    ((pivot, mean, var), refine.then_some(better))
}
