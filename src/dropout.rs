//! Inverted dropout: forward, backward, 1-bit masks and channel-wise ("spatial") dropout.
//!
//! Semantics and numerics are documented in the crate docs (`src/lib.rs`).

use crate::Element;
use crate::dispatch::{Kernels, Src, TypedKernels, active_kernels, active_typed};
use crate::error::{check_len, check_min_len};
use crate::parallel::{Par, for_each_chunk, for_each_chunk2};
use crate::rng::{self, BLOCK, GROUP, Threshold};
use crate::{Error, Layout, Shape};

/// Elements per unit of parallel work (and per stack buffer of keep bits).
const CHUNK: usize = BLOCK;
/// u16 words of keep bits for one chunk, with the padding the apply kernel reads past the end.
const CHUNK_WORDS: usize = CHUNK / 16 + 2;

/// The parameters of one dropout call.
///
/// ```
/// use dropnorm::DropoutParams;
/// let params = DropoutParams::new(0.1, 42).with_offset(1 << 20);
/// assert_eq!(params.scale(), 1.0 / 0.9f32);
/// assert!(!params.with_training(false).training);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutParams {
    /// Probability of dropping an element, in `[0, 1]`.
    pub p: f32,
    /// Seed of the random stream.
    pub seed: u64,
    /// Index of the call's first element in the stream (for channel-wise dropout: of its first
    /// `(n, c)` plane). A tensor processed in pieces gets the same mask as processed whole when
    /// each piece passes its own start as `offset`.
    pub offset: u64,
    /// Training mode. In eval mode dropout is the identity.
    pub training: bool,
}

impl DropoutParams {
    /// Training-mode parameters with offset 0.
    ///
    /// ```
    /// use dropnorm::DropoutParams;
    /// let params = DropoutParams::new(0.25, 7);
    /// assert_eq!((params.p, params.seed, params.offset, params.training), (0.25, 7, 0, true));
    /// ```
    pub fn new(p: f32, seed: u64) -> Self {
        DropoutParams {
            p,
            seed,
            offset: 0,
            training: true,
        }
    }

    /// The same parameters with another `offset`.
    ///
    /// ```
    /// use dropnorm::{DropoutParams, dropout};
    /// // Two halves with their own offsets give the mask of the whole.
    /// let params = DropoutParams::new(0.5, 1);
    /// let x = vec![1.0f32; 200];
    /// let mut whole = vec![0.0f32; 200];
    /// dropout(&x, &mut whole, &params)?;
    /// let mut halves = vec![0.0f32; 200];
    /// let (a, b) = halves.split_at_mut(100);
    /// dropout(&x[..100], a, &params)?;
    /// dropout(&x[100..], b, &params.with_offset(100))?;
    /// assert_eq!(whole, halves);
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn with_offset(self, offset: u64) -> Self {
        DropoutParams { offset, ..self }
    }

    /// The same parameters in training (`true`) or eval (`false`) mode.
    ///
    /// ```
    /// use dropnorm::{DropoutParams, dropout};
    /// let x = [1.0f32, 2.0, 3.0];
    /// let mut y = [0.0f32; 3];
    /// dropout(&x, &mut y, &DropoutParams::new(0.9, 1).with_training(false))?;
    /// assert_eq!(y, x); // eval mode: the identity
    /// # Ok::<(), dropnorm::Error>(())
    /// ```
    pub fn with_training(self, training: bool) -> Self {
        DropoutParams { training, ..self }
    }

    /// The factor kept elements are multiplied by: `1/(1-p)` in `f32`, or 0 for `p = 1`.
    ///
    /// ```
    /// use dropnorm::DropoutParams;
    /// assert_eq!(DropoutParams::new(0.5, 0).scale(), 2.0);
    /// assert_eq!(DropoutParams::new(1.0, 0).scale(), 0.0);
    /// ```
    pub fn scale(&self) -> f32 {
        if self.p >= 1.0 {
            0.0
        } else {
            1.0 / (1.0 - self.p)
        }
    }

    fn validate_p(&self) -> Result<(), Error> {
        if (0.0..=1.0).contains(&self.p) {
            Ok(())
        } else {
            Err(Error::InvalidProbability { p: self.p })
        }
    }
}

/// Bytes of a packed mask for `n` elements: `ceil(n / 8)`.
///
/// ```
/// assert_eq!(dropnorm::mask_len(17), 3);
/// ```
pub const fn mask_len(n: usize) -> usize {
    n.div_ceil(8)
}

/// What a validated call does.
#[derive(Clone, Copy)]
enum Plan {
    /// Identity (eval mode, `p = 0`).
    Copy,
    /// All zeros (`p = 1`).
    Zero,
    /// Drop iff draw < `thresh`, scale the rest.
    Drop { thresh: u32, scale: f32 },
}

fn plan(params: &DropoutParams, len: usize) -> Result<Plan, Error> {
    params.validate_p()?;
    if params.offset.checked_add(len as u64).is_none() {
        return Err(Error::OffsetOverflow {
            offset: params.offset,
            len,
        });
    }
    if !params.training {
        return Ok(Plan::Copy);
    }
    Ok(match rng::threshold(params.p) {
        Threshold::KeepAll => Plan::Copy,
        Threshold::DropAll => Plan::Zero,
        Threshold::Below(thresh) => Plan::Drop {
            thresh,
            scale: params.scale(),
        },
    })
}

/// Out-of-place dropout: `y = dropout(x)`.
///
/// ```
/// use dropnorm::{DropoutParams, dropout};
/// let x = vec![1.0f32; 1000];
/// let mut y = vec![0.0f32; 1000];
/// dropout(&x, &mut y, &DropoutParams::new(0.5, 7)).unwrap();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// ```
pub fn dropout<E: Element>(x: &[E], y: &mut [E], params: &DropoutParams) -> Result<(), Error> {
    check_len("y", x.len(), y.len())?;
    run(Src::Slice(x), y, MaskArg::None, params)
}

/// In-place dropout: `x = dropout(x)`. Same bits as [`dropout`].
///
/// ```
/// use dropnorm::{DropoutParams, dropout_inplace};
/// let mut x = vec![3.0f32; 64];
/// dropout_inplace(&mut x, &DropoutParams::new(0.25, 1)).unwrap();
/// assert!(x.iter().all(|&v| v == 0.0 || v == 4.0));
/// ```
pub fn dropout_inplace<E: Element>(x: &mut [E], params: &DropoutParams) -> Result<(), Error> {
    run(Src::InPlace, x, MaskArg::None, params)
}

/// Dropout that also writes the packed keep mask (see [the mask layout](crate#masks)); `mask`
/// needs at least [`mask_len`]`(x.len())` bytes, and only that many are written.
///
/// ```
/// use dropnorm::{DropoutParams, dropout_with_mask, mask_len};
/// let x = vec![1.0f32; 100];
/// let mut y = vec![0.0f32; 100];
/// let mut mask = vec![0u8; mask_len(100)];
/// dropout_with_mask(&x, &mut y, &mut mask, &DropoutParams::new(0.5, 3)).unwrap();
/// for i in 0..100 {
///     assert_eq!(mask[i / 8] >> (i % 8) & 1 == 1, y[i] != 0.0);
/// }
/// ```
pub fn dropout_with_mask<E: Element>(
    x: &[E],
    y: &mut [E],
    mask: &mut [u8],
    params: &DropoutParams,
) -> Result<(), Error> {
    check_len("y", x.len(), y.len())?;
    check_min_len("mask", mask_len(x.len()), mask.len())?;
    run(Src::Slice(x), y, MaskArg::Out(mask), params)
}

/// Backward of dropout, regenerating the mask from `params` (the ones the forward used):
/// `dx = dy * scale` where the forward kept the element, `+0.0` where it dropped it.
///
/// ```
/// use dropnorm::{DropoutParams, dropout, dropout_backward};
/// let params = DropoutParams::new(0.3, 11);
/// let x = vec![1.0f32; 256];
/// let mut y = vec![0.0f32; 256];
/// dropout(&x, &mut y, &params).unwrap();
/// let mut dx = vec![0.0f32; 256];
/// dropout_backward(&x, &mut dx, &params).unwrap(); // dy = 1
/// assert_eq!(dx, y);
/// ```
pub fn dropout_backward<E: Element>(
    dy: &[E],
    dx: &mut [E],
    params: &DropoutParams,
) -> Result<(), Error> {
    check_len("dx", dy.len(), dx.len())?;
    run(Src::Slice(dy), dx, MaskArg::None, params)
}

/// In-place [`dropout_backward`]: the gradient `dy` is overwritten with `dx`.
///
/// ```
/// use dropnorm::{DropoutParams, dropout_backward, dropout_backward_inplace};
/// let params = DropoutParams::new(0.5, 9);
/// let mut g = vec![1.0f32; 100];
/// let mut dx = vec![0.0f32; 100];
/// dropout_backward(&g, &mut dx, &params)?;
/// dropout_backward_inplace(&mut g, &params)?;
/// assert_eq!(g, dx);
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn dropout_backward_inplace<E: Element>(
    dy: &mut [E],
    params: &DropoutParams,
) -> Result<(), Error> {
    run(Src::InPlace, dy, MaskArg::None, params)
}

/// Backward of dropout from a stored packed mask: `dx = dy * params.scale()` where the mask
/// bit is set, `+0.0` elsewhere. `params.seed` and `params.offset` are not used; in eval mode
/// this is the identity.
///
/// ```
/// use dropnorm::{DropoutParams, dropout_backward_with_mask};
/// let dy = [1.0f32, 2.0, 3.0, 4.0];
/// let mut dx = [0.0f32; 4];
/// dropout_backward_with_mask(&dy, &[0b0101], &mut dx, &DropoutParams::new(0.5, 0)).unwrap();
/// assert_eq!(dx, [2.0, 0.0, 6.0, 0.0]);
/// ```
pub fn dropout_backward_with_mask<E: Element>(
    dy: &[E],
    mask: &[u8],
    dx: &mut [E],
    params: &DropoutParams,
) -> Result<(), Error> {
    check_len("dx", dy.len(), dx.len())?;
    check_min_len("mask", mask_len(dy.len()), mask.len())?;
    run(Src::Slice(dy), dx, MaskArg::In(mask), params)
}

enum MaskArg<'a> {
    None,
    Out(&'a mut [u8]),
    In(&'a [u8]),
}

/// The elementwise driver: validates, then runs chunk by chunk (in parallel when large).
fn run<E: Element>(
    x: Src<E>,
    y: &mut [E],
    mask: MaskArg,
    params: &DropoutParams,
) -> Result<(), Error> {
    let n = y.len();
    let plan = match (&mask, plan(params, n)?) {
        // A stored mask decides, whatever the seed says.
        (MaskArg::In(_), Plan::Copy) if params.training => Plan::Drop {
            thresh: 0,
            scale: 1.0,
        },
        (_, plan) => plan,
    };
    let (ks, k) = (active_kernels(), active_typed::<E>());
    let nt = k.use_nt(n);
    // Four 16 Ki chunks per task at least: a task then moves about 512 KiB.
    let par = Par::above_threshold(n, 4);
    let (seed, offset) = (params.seed, params.offset);
    let x_of = |ci: usize, len: usize| x.sub(ci * CHUNK..ci * CHUNK + len);

    match (plan, mask) {
        (Plan::Copy, MaskArg::Out(m)) => {
            copy_or_fill(k, x, y, None, nt, par);
            fill_mask(&mut m[..mask_len(n)], n, 0xFF);
        }
        (Plan::Zero, MaskArg::Out(m)) => {
            copy_or_fill(k, x, y, Some(0.0), nt, par);
            fill_mask(&mut m[..mask_len(n)], n, 0);
        }
        (Plan::Copy, _) => copy_or_fill(k, x, y, None, nt, par),
        (Plan::Zero, _) => copy_or_fill(k, x, y, Some(0.0), nt, par),
        (Plan::Drop { thresh, scale }, MaskArg::None) => {
            for_each_chunk(y, CHUNK, par, |ci, yc| {
                let start = offset + (ci * CHUNK) as u64;
                drop_chunk(
                    (ks, k),
                    seed,
                    thresh,
                    scale,
                    start,
                    x_of(ci, yc.len()),
                    yc,
                    nt,
                    None,
                );
            });
        }
        (Plan::Drop { thresh, scale }, MaskArg::Out(m)) => {
            let m = &mut m[..mask_len(n)];
            for_each_chunk2(y, CHUNK, m, CHUNK / 8, par, |ci, yc, mc| {
                let start = offset + (ci * CHUNK) as u64;
                let x = x_of(ci, yc.len());
                drop_chunk((ks, k), seed, thresh, scale, start, x, yc, nt, Some(mc));
            });
        }
        (Plan::Drop { scale, .. }, MaskArg::In(m)) => {
            for_each_chunk(y, CHUNK, par, |ci, yc| {
                let mut bits = [0u16; CHUNK_WORDS];
                read_mask(&m[ci * CHUNK / 8..], yc.len(), &mut bits);
                k.apply_mask(x_of(ci, yc.len()), yc, &bits, scale, nt);
            });
        }
    }
    Ok(())
}

/// Fused dropout of one chunk whose first element has stream index `start`: one fused
/// segment per RNG block it touches (two at most, when `offset` is not block-aligned). With
/// `mask`, the chunk's keep bits are also written to it (the chunk's `mask_len` bytes).
#[allow(clippy::too_many_arguments)]
fn drop_chunk<E: Element>(
    (ks, k): (&Kernels, &TypedKernels<E>),
    seed: u64,
    thresh: u32,
    scale: f32,
    start: u64,
    x: Src<E>,
    y: &mut [E],
    nt: bool,
    mut mask: Option<&mut [u8]>,
) {
    // Byte-aligned segments copy whole bytes; otherwise bits are ORed into zeroed bytes.
    let bytewise = start.is_multiple_of(8);
    if !bytewise && let Some(m) = mask.as_deref_mut() {
        m.fill(0);
    }
    let mut pos = 0;
    while pos < y.len() {
        let gi = start + pos as u64;
        let j0 = (gi % BLOCK as u64) as usize;
        let seg = (BLOCK - j0).min(y.len() - pos);
        let streams = ks.block_streams(seed, gi / BLOCK as u64);
        let mut bits = [0u16; BLOCK / 16 + 2];
        let ys = &mut y[pos..pos + seg];
        k.dropout_segment(
            &streams,
            j0,
            x.sub(pos..pos + seg),
            ys,
            &mut bits,
            mask.is_some(),
            thresh,
            scale,
            nt,
        );
        if let Some(m) = mask.as_deref_mut() {
            if bytewise {
                copy_mask_bytes(m, pos / 8, &bits, j0 / 8, seg);
            } else {
                or_mask_bits(m, pos, &bits, j0, seg);
            }
        }
        pos += seg;
    }
}

/// `y = x` (`value = None`) or `y = value`, chunked like the rest. The copy is bit for bit:
/// the f32 kernel copies without arithmetic; 16-bit elements are copied as bytes (the
/// kernels' widen-narrow round trip would quiet a signalling NaN).
fn copy_or_fill<E: Element>(
    k: &TypedKernels<E>,
    x: Src<E>,
    y: &mut [E],
    value: Option<f32>,
    nt: bool,
    par: Par,
) {
    for_each_chunk(y, CHUNK, par, |ci, yc| {
        match (value, x.sub(ci * CHUNK..ci * CHUNK + yc.len())) {
            (Some(v), _) => k.fill(yc, v, nt),
            (None, Src::Slice(xc)) if size_of::<E>() == 4 => k.copy(xc, yc, nt),
            (None, Src::Slice(xc)) => yc.copy_from_slice(xc),
            (None, Src::InPlace) => {}
        }
    });
}

/// Writes a constant mask (`0xFF` all kept, `0` all dropped) with zero padding bits.
fn fill_mask(m: &mut [u8], n: usize, byte: u8) {
    m.fill(byte);
    if let Some(last) = m.last_mut()
        && !n.is_multiple_of(8)
    {
        *last &= (1u8 << (n % 8)) - 1;
    }
}

/// Keep bits of global elements `start .. start + len` into `out` (bit `t` = element
/// `start + t`). `out` must be zeroed and hold `4 * ceil(len / 64) + 2` words.
fn keep_bits_range(k: &Kernels, seed: u64, thresh: u32, start: u64, len: usize, out: &mut [u16]) {
    let mut pos = 0;
    while pos < len {
        let gi = start + pos as u64;
        let block = gi / BLOCK as u64;
        let j0 = (gi % BLOCK as u64) as usize;
        let seg = (BLOCK - j0).min(len - pos);
        let (g0, g1) = (j0 / GROUP, (j0 + seg).div_ceil(GROUP));
        let streams = k.block_streams(seed, block);
        if j0.is_multiple_of(GROUP) && pos % GROUP == 0 {
            // Group-aligned on both sides: generate in place. A segment that does not end on a
            // group boundary is the last one, so the extra bits it writes are never read.
            k.keep_bits(&streams, g0, g1 - g0, thresh, &mut out[pos / 16..]);
        } else {
            let mut tmp = [0u16; BLOCK / 16 + 2];
            k.keep_bits(&streams, g0, g1 - g0, thresh, &mut tmp);
            copy_bits(out, pos, &tmp, j0 - g0 * GROUP, seg);
        }
        pos += seg;
    }
}

/// 16 bits of `src` starting at bit `i`, zeros past its end.
fn bits16(src: &[u16], i: usize) -> u16 {
    let lo = src.get(i / 16).copied().unwrap_or(0) as u32;
    let hi = src.get(i / 16 + 1).copied().unwrap_or(0) as u32;
    ((lo | hi << 16) >> (i % 16)) as u16
}

/// ORs `len` bits of `src` from bit `spos` into `dst` from bit `dpos`.
fn copy_bits(dst: &mut [u16], dpos: usize, src: &[u16], spos: usize, len: usize) {
    let mut t = 0;
    while t < len {
        let nb = (len - t).min(16);
        let v = (bits16(src, spos + t) as u32 & ((1u32 << nb) - 1)) << ((dpos + t) % 16);
        let w = (dpos + t) / 16;
        dst[w] |= v as u16;
        if v >> 16 != 0 {
            dst[w + 1] |= (v >> 16) as u16;
        }
        t += nb;
    }
}

/// Byte `b` of a keep-bit buffer (little-endian bytes of its u16 words).
#[cfg(not(target_endian = "little"))]
fn bits_byte(bits: &[u16], b: usize) -> u8 {
    (bits[b / 2] >> (8 * (b % 2))) as u8
}

/// Writes `len` bits of `bits` from byte `src_byte` as mask bytes from `dst_byte`; padding
/// bits past `len` in the last byte are cleared.
fn copy_mask_bytes(m: &mut [u8], dst_byte: usize, bits: &[u16], src_byte: usize, len: usize) {
    let dst = &mut m[dst_byte..dst_byte + mask_len(len)];
    #[cfg(target_endian = "little")]
    {
        let bytes: &[u8] = wide::bytemuck::cast_slice(bits);
        dst.copy_from_slice(&bytes[src_byte..src_byte + dst.len()]);
    }
    #[cfg(not(target_endian = "little"))]
    for (t, d) in dst.iter_mut().enumerate() {
        *d = bits_byte(bits, src_byte + t);
    }
    if !len.is_multiple_of(8)
        && let Some(last) = dst.last_mut()
    {
        *last &= (1u8 << (len % 8)) - 1;
    }
}

/// ORs `len` bits of `bits` from bit `spos` into the (zeroed) mask bytes from bit `dpos`.
fn or_mask_bits(m: &mut [u8], dpos: usize, bits: &[u16], spos: usize, len: usize) {
    let mut t = 0;
    while t < len {
        let nb = (len - t).min(8);
        let v = (bits16(bits, spos + t) as u32 & ((1u32 << nb) - 1)) << ((dpos + t) % 8);
        let b = (dpos + t) / 8;
        m[b] |= v as u8;
        if v >> 8 != 0 {
            m[b + 1] |= (v >> 8) as u8;
        }
        t += nb;
    }
}

/// Unpacks `mask_len(n)` bytes of `m` into `bits`.
fn read_mask(m: &[u8], n: usize, bits: &mut [u16]) {
    for (b, &byte) in m[..mask_len(n)].iter().enumerate() {
        bits[b / 2] |= (byte as u16) << (8 * (b % 2));
    }
}

/// Channel-wise ("spatial", PyTorch `Dropout2d`) dropout: one keep decision per `(n, c)`
/// plane, applied to all of its `H×W` elements. The decision of plane `(n, c)` is the one
/// elementwise dropout makes for stream index `params.offset + n·C + c`.
///
/// For [`Layout::Nc`] every plane is one element, so this equals [`dropout`].
///
/// ```
/// use dropnorm::{DropoutParams, Layout, Shape, dropout_channels};
/// let shape = Shape::nchw(2, 3, 4, 4);
/// let x = vec![1.0f32; 96];
/// let mut y = vec![0.0f32; 96];
/// dropout_channels(&x, &mut y, shape, Layout::Nchw, &DropoutParams::new(0.5, 5)).unwrap();
/// for plane in y.chunks(16) {
///     assert!(plane.iter().all(|&v| v == plane[0]));
/// }
/// ```
pub fn dropout_channels<E: Element>(
    x: &[E],
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &DropoutParams,
) -> Result<(), Error> {
    check_len("x", shape.validate(layout)?, x.len())?;
    check_len("y", x.len(), y.len())?;
    run_channels(Src::Slice(x), y, shape, layout, params)
}

/// In-place [`dropout_channels`].
///
/// ```
/// use dropnorm::{DropoutParams, Layout, Shape, dropout_channels, dropout_channels_inplace};
/// let (shape, params) = (Shape::nchw(2, 3, 2, 2), DropoutParams::new(0.5, 3));
/// let mut x: Vec<f32> = (0..24).map(|i| i as f32).collect();
/// let mut y = vec![0.0f32; 24];
/// dropout_channels(&x, &mut y, shape, Layout::Nhwc, &params)?;
/// dropout_channels_inplace(&mut x, shape, Layout::Nhwc, &params)?;
/// assert_eq!(x, y);
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn dropout_channels_inplace<E: Element>(
    x: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &DropoutParams,
) -> Result<(), Error> {
    check_len("x", shape.validate(layout)?, x.len())?;
    run_channels(Src::InPlace, x, shape, layout, params)
}

/// Backward of [`dropout_channels`] with the same parameters (the mask is regenerated).
///
/// ```
/// use dropnorm::{DropoutParams, Layout, Shape, dropout_channels, dropout_channels_backward};
/// let (shape, params) = (Shape::nchw(1, 8, 3, 3), DropoutParams::new(0.5, 11));
/// let x = vec![2.0f32; 72];
/// let (mut y, mut dx) = (vec![0.0f32; 72], vec![0.0f32; 72]);
/// dropout_channels(&x, &mut y, shape, Layout::Nchw, &params)?;
/// dropout_channels_backward(&vec![1.0; 72], &mut dx, shape, Layout::Nchw, &params)?;
/// for (yi, di) in y.iter().zip(&dx) {
///     assert_eq!(*yi == 0.0, *di == 0.0); // the same planes dropped
/// }
/// # Ok::<(), dropnorm::Error>(())
/// ```
pub fn dropout_channels_backward<E: Element>(
    dy: &[E],
    dx: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &DropoutParams,
) -> Result<(), Error> {
    dropout_channels(dy, dx, shape, layout, params)
}

fn run_channels<E: Element>(
    x: Src<E>,
    y: &mut [E],
    shape: Shape,
    layout: Layout,
    params: &DropoutParams,
) -> Result<(), Error> {
    let (planes, hw) = (shape.planes()?, shape.spatial()?);
    if layout == Layout::Nc || hw == 1 {
        // One element per plane: plane index == element index.
        return run(x, y, MaskArg::None, params);
    }
    let (thresh, scale) = match plan(params, planes)? {
        Plan::Drop { thresh, scale } => (thresh, scale),
        // Identity or all zeros: no decisions to make.
        _ => return run(x, y, MaskArg::None, params),
    };
    let (k, t) = (active_kernels(), active_typed::<E>());
    let n = y.len();
    let nt = t.use_nt(n);
    // Tasks are whole planes or images: one is enough work.
    let par = Par::above_threshold(n, 1);
    let (seed, offset) = (params.seed, params.offset);
    if n == 0 {
        return Ok(());
    }
    match layout {
        Layout::Nchw => {
            // Whole planes per task, at least a chunk's worth of elements.
            let per_task = (CHUNK / hw).clamp(1, CHUNK);
            for_each_chunk(y, per_task * hw, par, |ti, yc| {
                let p0 = ti * per_task;
                let mut bits = [0u16; CHUNK_WORDS];
                keep_bits_range(
                    k,
                    seed,
                    thresh,
                    offset + p0 as u64,
                    yc.len() / hw,
                    &mut bits,
                );
                let e0 = p0 * hw;
                t.scale_planes(x.sub(e0..e0 + yc.len()), yc, hw, &bits, scale, nt);
            });
        }
        Layout::Nhwc | Layout::Nc => {
            let c = shape.c;
            // Whole images per task, at least a chunk's worth of elements (small images: one
            // task per image would cost more to hand out than to compute).
            let image = hw * c;
            let per_task = (CHUNK / image).clamp(1, CHUNK);
            for_each_chunk(y, per_task * image, par, |ti, yc| {
                let img0 = ti * per_task;
                if image <= CHUNK {
                    // Whole images in one chunk: the keep bits of all their planes at once
                    // (one RNG set-up, not one per image), spread over their rows, applied as
                    // one run.
                    let imgs = yc.len() / image;
                    let mut planes = [0u16; CHUNK_WORDS];
                    let start = offset + (img0 * c) as u64;
                    keep_bits_range(k, seed, thresh, start, imgs * c, &mut planes);
                    let mut bits = [0u16; CHUNK_WORDS];
                    for j in 0..imgs {
                        for r in 0..hw {
                            copy_bits(&mut bits, (j * hw + r) * c, &planes, j * c, c);
                        }
                    }
                    let e0 = img0 * image;
                    t.apply_mask(x.sub(e0..e0 + yc.len()), yc, &bits, scale, nt);
                    return;
                }
                let base = img0 * image;
                nhwc_image(
                    t,
                    x.sub(base..base + image),
                    yc,
                    c,
                    nt,
                    |c0, len, bits| {
                        let start = offset + (img0 * c + c0) as u64;
                        keep_bits_range(k, seed, thresh, start, len, bits)
                    },
                    scale,
                );
            });
        }
    }
    Ok(())
}

/// One NHWC image (`rows` rows of `c` channels): channel keep bits come from `keep(c0, len,
/// bits)`, which fills bits for channels `c0 .. c0 + len`.
fn nhwc_image<E: Element>(
    k: &TypedKernels<E>,
    x: Src<E>,
    y: &mut [E],
    c: usize,
    nt: bool,
    keep: impl Fn(usize, usize, &mut [u16]),
    scale: f32,
) {
    if c <= CHUNK / 2 {
        // Tile the channel bits over as many whole rows as fit a chunk (and the image has),
        // and apply the mask to those rows as one contiguous run.
        let rows = (CHUNK / c).min(y.len() / c);
        let mut chan = [0u16; CHUNK_WORDS];
        keep(0, c, &mut chan);
        let mut bits = [0u16; CHUNK_WORDS];
        for r in 0..rows {
            copy_bits(&mut bits, r * c, &chan, 0, c);
        }
        for (t, yr) in y.chunks_mut(rows * c).enumerate() {
            let e0 = t * rows * c;
            k.apply_mask(x.sub(e0..e0 + yr.len()), yr, &bits, scale, nt);
        }
    } else {
        // Wide rows: channel blocks of a chunk, each applied to every row.
        for c0 in (0..c).step_by(CHUNK) {
            let len = CHUNK.min(c - c0);
            let mut bits = [0u16; CHUNK_WORDS];
            keep(c0, len, &mut bits);
            for (r, yr) in y.chunks_mut(c).enumerate() {
                let e0 = r * c + c0;
                k.apply_mask(x.sub(e0..e0 + len), &mut yr[c0..c0 + len], &bits, scale, nt);
            }
        }
    }
}
