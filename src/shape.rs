//! Tensor shapes and memory layouts.

use crate::Error;

/// How a 2-D or 4-D tensor is laid out in its slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Fully connected: `N` rows of `C` features (`h = w = 1`).
    Nc,
    /// Convolutional, channels first: `N` images of `C` planes of `H×W`.
    Nchw,
    /// Channels last: `N·H·W` rows of `C` channels.
    Nhwc,
}

/// The logical dimensions of a tensor: batch `n`, channels `c`, height `h`, width `w`.
///
/// For [`Layout::Nc`] use [`Shape::nc`], which sets `h = w = 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Batch size.
    pub n: usize,
    /// Channels (features for NC).
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Shape {
    /// A 4-D shape `(n, c, h, w)`.
    ///
    /// ```
    /// use dropnorm::Shape;
    /// let s = Shape::nchw(32, 64, 56, 56); // also the dimensions of an NHWC tensor
    /// assert_eq!(s.numel()?, 32 * 64 * 56 * 56);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub const fn nchw(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }

    /// A 2-D shape `(n, c)`: `h = w = 1`.
    ///
    /// ```
    /// use dropnorm::Shape;
    /// assert_eq!(Shape::nc(8, 3), Shape::nchw(8, 3, 1, 1));
    /// ```
    pub const fn nc(n: usize, c: usize) -> Self {
        Shape { n, c, h: 1, w: 1 }
    }

    /// Number of elements, or [`Error::ShapeOverflow`] if the product overflows `usize`.
    ///
    /// ```
    /// # use dropnorm::Shape;
    /// assert_eq!(Shape::nchw(2, 3, 4, 5).numel().unwrap(), 120);
    /// assert!(Shape::nchw(usize::MAX, 2, 1, 1).numel().is_err());
    /// ```
    pub fn numel(&self) -> Result<usize, Error> {
        self.planes()?
            .checked_mul(self.spatial()?)
            .ok_or(self.overflow())
    }

    /// Number of `(n, c)` planes, `n·c`.
    ///
    /// ```
    /// assert_eq!(dropnorm::Shape::nchw(2, 3, 4, 5).planes()?, 6);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn planes(&self) -> Result<usize, Error> {
        self.n.checked_mul(self.c).ok_or(self.overflow())
    }

    /// Elements per plane, `h·w`.
    ///
    /// ```
    /// assert_eq!(dropnorm::Shape::nchw(2, 3, 4, 5).spatial()?, 20);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn spatial(&self) -> Result<usize, Error> {
        self.h.checked_mul(self.w).ok_or(self.overflow())
    }

    /// Checks that the shape fits `layout` and that its element count fits in `usize`;
    /// returns the element count.
    ///
    /// ```
    /// use dropnorm::{Layout, Shape};
    /// assert_eq!(Shape::nc(4, 3).validate(Layout::Nc)?, 12);
    /// assert!(Shape::nchw(4, 3, 2, 2).validate(Layout::Nc).is_err()); // NC needs h = w = 1
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn validate(&self, layout: Layout) -> Result<usize, Error> {
        if layout == Layout::Nc && (self.h != 1 || self.w != 1) {
            return Err(Error::InvalidShape {
                reason: "layout Nc needs h = w = 1 (use Shape::nc)",
            });
        }
        // With c = 0 the element count is 0 whatever n·h·w is, but batch norm still computes
        // the per-channel count: it must fit too.
        self.per_channel()?;
        self.numel()
    }

    /// Values per channel, `n·h·w` (what batch norm's statistics are taken over).
    ///
    /// ```
    /// use dropnorm::Shape;
    /// assert_eq!(Shape::nchw(2, 3, 4, 5).per_channel()?, 40);
    /// assert!(Shape::nchw(usize::MAX, 0, 2, 1).per_channel().is_err());
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn per_channel(&self) -> Result<usize, Error> {
        self.n.checked_mul(self.spatial()?).ok_or(self.overflow())
    }

    fn overflow(&self) -> Error {
        Error::ShapeOverflow {
            dims: [self.n, self.c, self.h, self.w],
        }
    }
}
