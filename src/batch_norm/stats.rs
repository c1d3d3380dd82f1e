//! Per-channel batch statistics: computed by the shifted-sum kernels, mergeable across shards.

use super::moments::{
    Geometry, MAX_BLOCK, block_width, count_per_channel, geometry, moments, row_moments_alone,
};
use crate::Element;
use crate::dispatch::active_typed;
use crate::dispatch::channels::for_each_block_read;
use crate::error::check_len;
use crate::parallel::Par;
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
// repr(C): the C API (capi/) passes arrays of these to and from C without a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
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

    /// From the mean and biased variance of `count` values, as the kernels compute them (the
    /// one-call training forward goes through this too, so its constants are those of
    /// `channel_stats` + `apply`).
    pub(crate) fn from_moments(count: usize, mean: f64, var: f64) -> Self {
        ChannelStats {
            count: count as u64,
            mean,
            m2: var * count as f64,
        }
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
/// channel_stats(&x, &mut out, Shape::nc(2, 2), Layout::Nc).unwrap();
/// assert_eq!(out[0].mean, 5.5);
/// assert_eq!(out[1].var(), 81.0);
/// ```
pub fn channel_stats<E: Element>(
    x: &[E],
    out: &mut [ChannelStats],
    shape: Shape,
    layout: Layout,
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
    let k = active_typed::<E>();
    let stats = |(_, mean, var): (f32, f64, f64)| ChannelStats::from_moments(count, mean, var);
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
        Geometry::Rows { c, .. } => row_moments_alone(k, x, c, |c0, _, mean, var| {
            for ((o, &m), &v) in out[c0..].iter_mut().zip(mean).zip(var) {
                *o = ChannelStats::from_moments(count, m, v);
            }
        }),
    }
    Ok(())
}
