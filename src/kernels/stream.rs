//! Streaming elementwise kernels: one pass that reads each input once and writes each output
//! once, with plain or non-temporal stores.
//!
//! [`write_stream`] owns the loop structure every such kernel shares: a 4× unrolled main loop,
//! partial vectors through a stack buffer (never reading or writing past the slice), and for
//! non-temporal stores a head peeled until the output is 64-byte aligned (vmovntps faults on
//! unaligned addresses, and large allocations usually start 16 bytes past a page).

use crate::kernels::bits::{KeepGen, keep_bits};
use crate::rng::{GROUP, GROUPS_PER_BLOCK, STREAMS, StreamState};
use crate::simd::elem::Elem;
use crate::simd::{LANES, Simd};

/// The value of output elements `i .. i + len` of a streaming kernel (`len == 16` for full
/// vectors, `len < 16` for a partial head or tail, of which only `len` lanes are stored).
///
/// A trait with `#[inline(always)]` implementations rather than a closure: closures carry no
/// inline attribute on stable, and one left out of line would also take the intrinsics inside
/// it out of the `#[target_feature]` context, turning each into a call.
pub(crate) trait Lanes<S: Simd> {
    /// Whether [`write_stream`] should prefetch the output for writing ahead of its plain
    /// stores. It pays for kernels whose values take a few dependent operations to compute:
    /// their stores reach the head of the queue late and the read-for-ownership starts late
    /// (in-cache inference 27 → 22 µs at 200 Ki values); a plain copy gets slower with it.
    const PREFETCH_W: bool = false;

    /// # Safety
    /// `i + len` must not exceed the `n` the kernel was called with.
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F;

    /// [`Lanes::at`] for a whole vector in slot `U` of [`write_stream`]'s 4× unrolled plain
    /// loop, which visits `i = plain_head(y, n) + 64m + 16U`: kernels whose operands repeat
    /// with that period can keep them in registers per slot.
    ///
    /// # Safety
    /// As [`Lanes::at`] with `len == 16`.
    #[inline(always)]
    unsafe fn at_slot<const U: usize>(&mut self, s: S, i: usize) -> S::F {
        // SAFETY: forwarded.
        unsafe { self.at(s, i, LANES) }
    }
}

/// Elements [`write_stream`] writes before its first plain-store vector: up to the output's
/// next vector boundary (64 bytes for f32; none for outputs shorter than the unrolled loop).
#[inline(always)]
pub(crate) fn plain_head<E>(y: *const E, n: usize) -> usize {
    if n >= 4 * LANES { nt_head(y, n) } else { 0 }
}

/// Per-element constants of period 64 — `R` rows of a tile of 64 values plus 16 repeating
/// the first (so a vector starting anywhere below 64 reads contiguously) — read at element
/// `i` of a stream, and held in registers for the four slots of [`write_stream`]'s unrolled
/// loop, which always sit at the same offsets in the tile.
pub(crate) struct Tile64<S: Simd, const R: usize> {
    aff: *const f32,
    slots: [[S::F; R]; 4],
}

/// Length of a row of a [`Tile64`].
pub(crate) const TILE64_ROW: usize = 64 + LANES;

impl<S: Simd, const R: usize> Tile64<S, R> {
    /// The tile at `aff` (`R` rows of [`TILE64_ROW`]) for a stream of `n` values written at
    /// `y`.
    ///
    /// # Safety
    /// `aff` valid for `R · TILE64_ROW` reads.
    #[inline(always)]
    pub(crate) unsafe fn new<E>(s: S, aff: *const f32, y: *const E, n: usize) -> Self {
        let head = plain_head(y, n);
        let mut slots = [[s.splat(0.0); R]; 4];
        for (u, slot) in slots.iter_mut().enumerate() {
            let j = (head + u * LANES) % 64;
            for (row, v) in slot.iter_mut().enumerate() {
                // SAFETY: j < 64, so j + 16 fits the row.
                *v = unsafe { s.loadu(aff.add(row * TILE64_ROW + j)) };
            }
        }
        Tile64 { aff, slots }
    }

    /// The constants of elements `i .. i + len`.
    ///
    /// # Safety
    /// `len <= 16`.
    #[inline(always)]
    pub(crate) unsafe fn at(&self, s: S, i: usize, len: usize) -> [S::F; R] {
        let j = i % 64;
        // A loop, not `array::from_fn`: its closure stayed out of line in some instances (AVX2
        // f16 tiled normalize and backward), each load a call compiled without AVX2.
        let mut v = [s.splat(0.0); R];
        for (row, vr) in v.iter_mut().enumerate() {
            // SAFETY: j < 64 and len <= 16 stay inside each row.
            *vr = unsafe { load(s, self.aff.add(row * TILE64_ROW + j), len) };
        }
        v
    }

    /// The constants of slot `U` of the unrolled loop.
    #[inline(always)]
    pub(crate) fn slot<const U: usize>(&self) -> [S::F; R] {
        self.slots[U]
    }
}

/// A kernel's value of elements `i .. i + len` from its per-element constants.
pub(crate) trait WithConsts<S: Simd, const R: usize> {
    /// # Safety
    /// As [`Lanes::at`].
    unsafe fn apply(&self, s: S, i: usize, len: usize, consts: [S::F; R]) -> S::F;
}

/// A [`WithConsts`] kernel over a [`Tile64`]: the constants from registers in the unrolled
/// loop's slots, from the tile elsewhere.
pub(crate) struct OverTile64<S: Simd, const R: usize, K> {
    pub(crate) kernel: K,
    pub(crate) tile: Tile64<S, R>,
}

impl<S: Simd, const R: usize, K: WithConsts<S, R>> Lanes<S> for OverTile64<S, R, K> {
    // Like the tiled kernels they replace: a few dependent operations per value.
    const PREFETCH_W: bool = true;

    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        // SAFETY: forwarded; len <= 16.
        unsafe { self.kernel.apply(s, i, len, self.tile.at(s, i, len)) }
    }

    #[inline(always)]
    unsafe fn at_slot<const U: usize>(&mut self, s: S, i: usize) -> S::F {
        // SAFETY: forwarded.
        unsafe { self.kernel.apply(s, i, LANES, self.tile.slot::<U>()) }
    }
}

/// Elements ahead of the plain stores that [`Lanes::PREFETCH_W`] kernels prefetch.
pub(crate) const PREFETCH_W_AHEAD: usize = 256;

/// Writes `y[i..i+len]` for every piece of `0..n` with the value `f.at(i, len)`, in order,
/// then (non-temporal stores only) fences.
///
/// # Safety
/// `y` must be valid for `n` writes; `f` must be safe to call for every `(i, len)` with
/// `i + len <= n`.
#[inline(always)]
pub(crate) unsafe fn write_stream<S: Simd, E: Elem>(
    s: S,
    y: *mut E,
    n: usize,
    nt: bool,
    f: impl Lanes<S>,
) {
    // SAFETY: forwarded.
    unsafe { write_stream_unfenced(s, y, n, nt, f) };
    if nt {
        s.fence();
    }
}

/// [`write_stream`] without the closing fence, for kernels that write many short runs: an
/// `sfence` per run drains the write-combining buffers every few kilobytes and halved the
/// NCHW inference kernel at 28×28 planes. The caller must call `s.fence()` after its last
/// run when `nt`.
///
/// # Safety
/// As [`write_stream`].
#[inline(always)]
pub(crate) unsafe fn write_stream_unfenced<S: Simd, E: Elem, F: Lanes<S>>(
    s: S,
    y: *mut E,
    n: usize,
    nt: bool,
    mut f: F,
) {
    let mut i = 0;
    // SAFETY: (whole body) every store covers y[i..i+len] with i + len <= n.
    unsafe {
        if nt && S::NT {
            // Streaming stores in whole cache lines only, plain ones around them (see
            // `line_head`).
            let head = line_head(y, n);
            let end = head + line_body::<E>(n - head);
            while i < head {
                let len = (head - i).min(LANES);
                store(s, y.add(i), len, f.at(s, i, len));
                i += len;
            }
            while i < end {
                E::store_nt(s, y.add(i), f.at(s, i, LANES));
                i += LANES;
            }
            while i < n {
                let len = (n - i).min(LANES);
                store(s, y.add(i), len, f.at(s, i, len));
                i += len;
            }
            return;
        }
        // Plain stores start at a 64-byte boundary too: outputs and inputs usually share their
        // offset from it (large allocations start 16 bytes past a page), and a load or store
        // split across two lines costs two L1 accesses, which halves in-cache reads.
        let head = plain_head(y, n);
        if head > 0 {
            store_partial(s, y, head, f.at(s, 0, head));
            i = head;
        }
        while i + 4 * LANES <= n {
            if F::PREFETCH_W {
                for u in 0..4 {
                    s.prefetch_w(y.wrapping_add(i + PREFETCH_W_AHEAD + u * LANES).cast());
                }
            }
            let v0 = f.at_slot::<0>(s, i);
            let v1 = f.at_slot::<1>(s, i + LANES);
            let v2 = f.at_slot::<2>(s, i + 2 * LANES);
            let v3 = f.at_slot::<3>(s, i + 3 * LANES);
            E::store(s, y.add(i), v0);
            E::store(s, y.add(i + LANES), v1);
            E::store(s, y.add(i + 2 * LANES), v2);
            E::store(s, y.add(i + 3 * LANES), v3);
            i += 4 * LANES;
        }
        while i + LANES <= n {
            E::store(s, y.add(i), f.at(s, i, LANES));
            i += LANES;
        }
        if i < n {
            store_partial(s, y.add(i), n - i, f.at(s, i, n - i));
        }
    }
}

/// Elements before the first one at `p` aligned to a whole vector's bytes (at most `len`):
/// the head a streaming store (which needs that alignment) must peel.
#[inline(always)]
pub(crate) fn nt_head<E>(p: *const E, len: usize) -> usize {
    // A vector's bytes: 64 for f32 (a cache line), 32 for 16-bit elements, which is what
    // their streaming store needs — and keeps the head below one vector.
    let align = LANES * size_of::<E>();
    let misalign = p as usize % align;
    if misalign == 0 {
        0
    } else {
        // An element type's slices are aligned to its size, so this divides exactly.
        ((align - misalign) / size_of::<E>()).min(len)
    }
}

/// Elements before the first one at `p` on a cache-line (64-byte) boundary, at most `len`:
/// the plain-store head of a run written with streaming stores. A streaming store to a line
/// that a plain store has just brought into the cache forces that line out first: for f32 a
/// vector is a line, so aligning to vectors kept the two apart, but a 16-bit vector is half a
/// line, and with the output 16 bytes past a line (where large allocations start) every NCHW
/// run began and ended with such a shared line — measured on NCHW (64,256,28,28) bf16
/// add+ReLU, 1 thread: 1.2 Gelem/s, against 3.6–4.1 with the output on a 32-byte boundary.
#[inline(always)]
pub(crate) fn line_head<E>(p: *const E, len: usize) -> usize {
    let misalign = p as usize % 64;
    if misalign == 0 {
        0
    } else {
        // An element type's slices are aligned to its size, so this divides exactly.
        ((64 - misalign) / size_of::<E>()).min(len)
    }
}

/// The most elements of `len`, from a cache-line boundary, that fill whole lines (a
/// multiple of 16 for f32, of 32 for 16-bit types).
#[inline(always)]
pub(crate) fn line_body<E>(len: usize) -> usize {
    let per_line = 64 / size_of::<E>();
    len / per_line * per_line
}

/// Loads `x[0..len]` (`len <= 16`); a full vector when `len == 16`, else the first `len`
/// lanes with zeros after them.
///
/// # Safety
/// `x` must be valid for `len` reads.
#[inline(always)]
pub(crate) unsafe fn load<S: Simd, E: Elem>(s: S, x: *const E, len: usize) -> S::F {
    // SAFETY: forwarded; the partial load reads only `len` elements.
    unsafe {
        if len == LANES {
            E::load(s, x)
        } else {
            E::load_partial(s, x, len)
        }
    }
}

/// [`load`] for lanes that only feed f32 arithmetic ([`Elem::load_for_arith`]): a
/// signalling NaN may stay signalling.
///
/// # Safety
/// `x` must be valid for `len` reads.
#[inline(always)]
pub(crate) unsafe fn load_for_arith<S: Simd, E: Elem>(s: S, x: *const E, len: usize) -> S::F {
    // SAFETY: forwarded; the partial load reads only `len` elements.
    unsafe {
        if len == LANES {
            E::load_for_arith(s, x)
        } else {
            E::load_partial(s, x, len)
        }
    }
}

/// Stores the first `len < 16` lanes of `v` to `y`.
///
/// # Safety
/// `y` must be valid for `len` writes.
#[inline(always)]
pub(crate) unsafe fn store_partial<S: Simd, E: Elem>(s: S, y: *mut E, len: usize, v: S::F) {
    // SAFETY: forwarded.
    unsafe { E::store_partial(s, y, len, v) }
}

/// Stores the first `len <= 16` lanes of `v` at `y` (a full vector when `len == 16`).
///
/// # Safety
/// `y` must be valid for `len` writes.
#[inline(always)]
pub(crate) unsafe fn store<S: Simd, E: Elem>(s: S, y: *mut E, len: usize, v: S::F) {
    // SAFETY: forwarded.
    unsafe {
        if len == LANES {
            E::store(s, y, v);
        } else {
            E::store_partial(s, y, len, v);
        }
    }
}

/// 16 bits of `bits` starting at bit `i` (bit `i` at `bits[i/16] >> (i%16)`).
///
/// # Safety
/// `bits` must be valid for reads at `i/16` and `i/16 + 1`.
#[inline(always)]
unsafe fn bits16(bits: *const u16, i: usize) -> u16 {
    let w = i / 16;
    // SAFETY: forwarded.
    let pair = unsafe { (*bits.add(w) as u32) | ((*bits.add(w + 1) as u32) << 16) };
    (pair >> (i % 16)) as u16
}

/// Masked scale: `bit i of bits ? x[i] * scale : +0.0`.
struct MaskedScale<S: Simd, E> {
    x: *const E,
    bits: *const u16,
    /// Bit of element 0.
    j0: usize,
    sv: S::F,
}

impl<S: Simd, E: Elem> Lanes<S> for MaskedScale<S, E> {
    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        // SAFETY: the kernel's contract covers x[i..i+len] and the bit window at j0 + i.
        unsafe {
            let keep = bits16(self.bits, self.j0 + i);
            // The multiply quiets a signalling NaN (dropped lanes are +0.0 whatever x is).
            s.mul_keep(keep, load_for_arith(s, self.x.add(i), len), self.sv)
        }
    }
}

/// `y[i] = bit i of bits ? x[i] * scale : +0.0`. `x` may equal `y` (in place).
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes, `bits` for `n / 16 + 2` reads.
#[inline(always)]
pub(crate) unsafe fn apply_mask<S: Simd, E: Elem>(
    s: S,
    x: *const E,
    y: *mut E,
    n: usize,
    bits: *const u16,
    scale: f32,
    nt: bool,
) {
    let f = MaskedScale::<S, E> {
        x,
        bits,
        j0: 0,
        sv: s.splat(scale),
    };
    // SAFETY: `write_stream` passes i + len <= n, and i / 16 + 1 <= n / 16 + 1.
    unsafe { write_stream(s, y, n, nt, f) }
}

/// How far (elements) keep-bit generation runs ahead of its use. Reading a 16-bit window that
/// spans two u16 stores still in the store buffer cannot be forwarded and stalls for the
/// store to commit; a lead of a few groups lets the stores reach L1 first.
const GEN_LEAD: usize = 4 * GROUP;

/// Elements ahead of the current read that fused dropout prefetches into L1: 512 floats =
/// 2 KiB = 32 lines, about what one core reads in one DRAM latency (~100 ns at ~20 GB/s), so
/// a line is requested roughly when it is needed minus that latency. Picked by measurement in
/// an earlier session, not re-tuned since.
const PREFETCH: usize = 512;

/// Dropout with keep bits generated ahead of their use.
struct FusedDropout<S: Simd, E> {
    keep: KeepGen<S>,
    j0: usize,
    x: *const E,
    bits: *mut u16,
    sv: S::F,
}

impl<S: Simd, E: Elem> Lanes<S> for FusedDropout<S, E> {
    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        let p = self.j0 + i;
        // SAFETY: `dropout_segment`'s contract: the bit window at p lies in the padded block
        // buffer, and `ensure` has generated every bit of it below the block's end.
        unsafe {
            s.prefetch(self.x.wrapping_add(i + PREFETCH).cast());
            self.keep.ensure(s, self.bits, p + LANES + GEN_LEAD);
            s.mul_keep(
                bits16(self.bits, p),
                load_for_arith(s, self.x.add(i), len),
                self.sv,
            )
        }
    }

    /// The unrolled loop's 64 elements take one group of bits: generate it once per
    /// iteration, in slot 0, rather than testing in every slot whether one is due. The loop
    /// had ~110 instructions per 64 elements (counted in its machine code) and the three tests
    /// saved were a fifth of them; in cache that gave f32 ×1.17 (paired roofline).
    #[inline(always)]
    unsafe fn at_slot<const U: usize>(&mut self, s: S, i: usize) -> S::F {
        let p = self.j0 + i;
        // SAFETY: as in `at`; slot 0 of an iteration ensures the bits below
        // p + 4·LANES + GEN_LEAD, which covers every window the iteration's slots read
        // (slot U reads positions below p + 16U + 32).
        unsafe {
            s.prefetch(self.x.wrapping_add(i + PREFETCH).cast());
            if U == 0 {
                self.keep.ensure(s, self.bits, p + 4 * LANES + GEN_LEAD);
            }
            s.mul_keep(
                bits16(self.bits, p),
                E::load_for_arith(s, self.x.add(i)),
                self.sv,
            )
        }
    }
}

/// Fused dropout of `n` elements that sit at block positions `j0 .. j0 + n` of the block whose
/// streams are `st`, so that random generation overlaps the loads and stores. `x` may equal
/// `y`. With `store_bits` the block-indexed keep bits of the segment are left in `bits` for
/// callers that store the mask; without it `bits` is scratch.
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes, `bits` for `BLOCK / 16 + 2` reads and writes,
/// `j0 + n <= BLOCK`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dropout_segment<S: Simd, E: Elem>(
    s: S,
    st: &[StreamState; STREAMS],
    j0: usize,
    x: *const E,
    y: *mut E,
    n: usize,
    bits: *mut u16,
    store_bits: bool,
    thresh: u32,
    scale: f32,
    nt: bool,
) {
    // Every element type. (16-bit types once took the general path: an early measurement
    // had it 12–14 % faster for f16 at 1 Mi. Against the current general path, paired
    // roofline on the AMD EPYC machine, 64 Ki and 1 Mi: f16 0.96–1.55 on 1 thread from one
    // run to the next, ×1.27–1.48 on 2; bf16 ×1.06–1.25; DRAM sizes take streaming stores,
    // not this path. For f32 this path was 5–7 % faster in cache.)
    if S::INTERLEAVE == STREAMS && !nt && !store_bits {
        // SAFETY: forwarded.
        if unsafe { dropout_in_registers(s, st, j0, x, y, n, bits, thresh, scale) } {
            return;
        }
    }
    if S::INTERLEAVE < STREAMS {
        // Four streams' state does not fit this backend's registers (AVX2: 32 ymm of state in
        // 16 registers), and stepping them together spilled it every group, which left AVX2
        // no faster than portable code. Generate the segment's bits a stream at a time with
        // the state in registers, then apply them: the bits are in L1 by then.
        let (first, end) = (j0 / GROUP, (j0 + n).div_ceil(GROUP).min(GROUPS_PER_BLOCK));
        // SAFETY: groups first .. end of the block: 4·end <= BLOCK / 16 words of `bits`.
        unsafe { keep_bits(s, st, first, end - first, thresh, bits.add(4 * first)) };
        let f = MaskedScale::<S, E> {
            x,
            bits,
            j0,
            sv: s.splat(scale),
        };
        // SAFETY: forwarded; `write_stream` passes i + len <= n; the bit windows at
        // j0 + i lie in the padded block buffer, generated above.
        return unsafe { write_stream(s, y, n, nt, f) };
    }
    let f = FusedDropout {
        keep: KeepGen::new(s, st, j0 / GROUP, thresh),
        j0,
        x,
        bits,
        sv: s.splat(scale),
    };
    // SAFETY: forwarded; `write_stream` passes i + len <= n.
    unsafe { write_stream(s, y, n, nt, f) }
}

/// Fused dropout with its keep decisions made in registers, for plain stores and no stored
/// mask: returns `false`, having written nothing, when the segment is too short for its
/// unrolled loop (the caller then takes the general path).
///
/// Stream `k` of group `g` gives the draws of block positions `64g + 16k ..` lane by lane, but
/// the loop's vectors start where the output is 64-byte aligned, `m = (j0 + i) % 16` lanes off
/// those boundaries; so each vector's draws are the window `lo[m..16] ++ hi[0..m]` of two
/// consecutive streams' draws (one `vpermt2d`), compared with the threshold into the store's
/// mask. Generating the bits into memory and reading them back at a bit offset instead (the
/// general path) costs ~40 scalar instructions per 64 elements beside the ~50 vector ones,
/// which left in-cache dropout bound by instruction issue. The mask is the same either way:
/// every lane's draw comes from the same stream, lane and step.
///
/// # Safety
/// As [`dropout_segment`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dropout_in_registers<S: Simd, E: Elem>(
    s: S,
    st: &[StreamState; STREAMS],
    j0: usize,
    x: *const E,
    y: *mut E,
    n: usize,
    bits: *mut u16,
    thresh: u32,
    scale: f32,
) -> bool {
    let head = plain_head(y, n);
    // The unrolled loop starts output-aligned (i ≡ head mod 16) at stream 0 of a group
    // (block position ≡ m mod 64): up to three more vectors after the head.
    let q = (j0 + head) % GROUP / LANES;
    let main = head + (STREAMS - q) % STREAMS * LANES;
    if main + GROUP > n {
        return false;
    }
    let sv = s.splat(scale);
    let mut keep = KeepGen::new(s, st, j0 / GROUP, thresh);
    // The head's bits through memory, from a copy of the generator (at most two groups).
    let mut head_gen = keep;
    // SAFETY: `bits` is the padded block buffer; positions below j0 + main <= BLOCK.
    unsafe { head_gen.ensure(s, bits, j0 + main) };
    let mut f = MaskedScale::<S, E> { x, bits, j0, sv };
    let mut i = 0;
    while i < main {
        let len = if i < head { head } else { LANES };
        // SAFETY: i + len <= main <= n; the bit windows below j0 + main were generated.
        unsafe { store(s, y.add(i), len, f.at(s, i, len)) };
        i += len;
    }
    keep.skip_to(s, (j0 + main) / GROUP);
    // SAFETY: forwarded; i = main, at stream 0 of a group, with i + 64 <= n.
    unsafe {
        let m = (j0 + main) % LANES;
        if m == 0 {
            windowed_loop::<S, E, false>(s, keep, m, x, y, i, n, sv)
        } else {
            windowed_loop::<S, E, true>(s, keep, m, x, y, i, n, sv)
        }
    }
    true
}

/// The unrolled loop of [`dropout_in_registers`] from `i` (block position `64g + m`, `keep` at
/// group `g`) to the end, the last partial group included. `SHIFTED` is `m != 0`.
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes, `i + 64 <= n`; the block positions of
/// `i .. n` lie in `keep`'s block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn windowed_loop<S: Simd, E: Elem, const SHIFTED: bool>(
    s: S,
    mut keep: KeepGen<S>,
    m: usize,
    x: *const E,
    y: *mut E,
    mut i: usize,
    n: usize,
    sv: S::F,
) {
    let t = keep.thresh();
    let idx = s.window_index(m);
    // Stream 0's draw of the current group, carried: the last vector of a group needs the
    // next group's.
    let mut r0 = keep.draw::<0>(s);
    // SAFETY: (both loops) every access is to x[i + 16u ..] / y[i + 16u ..] below n.
    unsafe {
        while i + GROUP <= n {
            for u in 0..4 {
                s.prefetch(x.wrapping_add(i + PREFETCH + u * LANES).cast());
            }
            let w = group_windows::<S, SHIFTED>(s, &mut keep, &mut r0, idx);
            let mut v = [sv; 4];
            for (u, (vu, wu)) in v.iter_mut().zip(w).enumerate() {
                *vu = s.mul_keep(
                    s.ge_bits(wu, t),
                    E::load_for_arith(s, x.add(i + u * LANES)),
                    sv,
                );
            }
            E::store_x4(s, y.add(i), v);
            i += GROUP;
        }
        if i < n {
            // The last partial group: the same windows, partial loads and stores. Its
            // draws past the segment are made and never used.
            let w = group_windows::<S, SHIFTED>(s, &mut keep, &mut r0, idx);
            for (u, wu) in w.into_iter().enumerate() {
                let at = i + u * LANES;
                if at >= n {
                    break;
                }
                let len = (n - at).min(LANES);
                let v = s.mul_keep(s.ge_bits(wu, t), load_for_arith(s, x.add(at), len), sv);
                store(s, y.add(at), len, v);
            }
        }
    }
}

/// The draws of the four vectors of one group of [`windowed_loop`], from stream 0's draw
/// `r0` of this group (replaced by the next group's, which the last vector needs).
#[inline(always)]
fn group_windows<S: Simd, const SHIFTED: bool>(
    s: S,
    keep: &mut KeepGen<S>,
    r0: &mut S::U,
    idx: S::U,
) -> [S::U; 4] {
    let r1 = keep.draw::<1>(s);
    let r2 = keep.draw::<2>(s);
    let r3 = keep.draw::<3>(s);
    let r4 = keep.draw::<0>(s);
    let w = [
        window::<S, SHIFTED>(s, *r0, r1, idx),
        window::<S, SHIFTED>(s, r1, r2, idx),
        window::<S, SHIFTED>(s, r2, r3, idx),
        window::<S, SHIFTED>(s, r3, r4, idx),
    ];
    *r0 = r4;
    w
}

/// Draws of a vector that starts in stream `lo`'s span and ends in `hi`'s (a function, not a
/// closure: closures may stay out of line).
#[inline(always)]
fn window<S: Simd, const SHIFTED: bool>(s: S, lo: S::U, hi: S::U, idx: S::U) -> S::U {
    if SHIFTED { s.window_u(lo, hi, idx) } else { lo }
}

/// `x * k`.
struct Scale<S: Simd, E> {
    x: *const E,
    kv: S::F,
}

impl<S: Simd, E: Elem> Lanes<S> for Scale<S, E> {
    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        // SAFETY: the kernel's contract covers x[i..i+len].
        unsafe { s.mul(load(s, self.x.add(i), len), self.kv) }
    }
}

/// Channel-wise dropout of `planes` planes of `len` elements: plane `j` scaled by `k` where
/// bit `j` of `bits` is set, `+0.0` elsewhere; one fence at the end (one per plane drained
/// the write-combining buffers every plane, as in the NCHW batch-norm kernels).
///
/// # Safety
/// `x` valid for `planes·len` reads, `y` for as many writes, `bits` for `ceil(planes/16)`
/// reads. `x` may equal `y`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn scale_planes<S: Simd, E: Elem>(
    s: S,
    x: *const E,
    y: *mut E,
    planes: usize,
    len: usize,
    bits: *const u16,
    k: f32,
    nt: bool,
) {
    let kv = s.splat(k);
    for j in 0..planes {
        // SAFETY: plane j is [j·len, (j + 1)·len) of both slices; bit j is in word j / 16.
        unsafe {
            let (xp, yp) = (x.add(j * len), y.add(j * len));
            if (*bits.add(j / 16) >> (j % 16)) & 1 == 1 {
                write_stream_unfenced(s, yp, len, nt, Scale::<S, E> { x: xp, kv });
            } else {
                write_stream_unfenced(s, yp, len, nt, Splat::<S>(s.splat(0.0)));
            }
        }
    }
    if nt {
        s.fence();
    }
}

/// `x` as is.
struct Load<E>(*const E);

impl<S: Simd, E: Elem> Lanes<S> for Load<E> {
    #[inline(always)]
    unsafe fn at(&mut self, s: S, i: usize, len: usize) -> S::F {
        // SAFETY: the kernel's contract covers x[i..i+len].
        unsafe { load(s, self.0.add(i), len) }
    }
}

/// `y = x`: bit for bit for f32 (no arithmetic, so NaN payloads survive); for a 16-bit type
/// widened and narrowed back, which is the identity except that a signalling NaN comes back
/// quiet (callers that promise a bit-exact copy of 16-bit data copy the bytes instead).
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes.
#[inline(always)]
pub(crate) unsafe fn copy<S: Simd, E: Elem>(s: S, x: *const E, y: *mut E, n: usize, nt: bool) {
    // SAFETY: `write_stream` passes i + len <= n.
    unsafe { write_stream(s, y, n, nt, Load(x)) }
}

/// A constant.
struct Splat<S: Simd>(S::F);

impl<S: Simd> Lanes<S> for Splat<S> {
    #[inline(always)]
    unsafe fn at(&mut self, _: S, _: usize, _: usize) -> S::F {
        self.0
    }
}

/// `y[i] = v`.
///
/// # Safety
/// `y` valid for `n` writes.
#[inline(always)]
pub(crate) unsafe fn fill<S: Simd, E: Elem>(s: S, y: *mut E, n: usize, v: f32, nt: bool) {
    // SAFETY: forwarded.
    unsafe { write_stream(s, y, n, nt, Splat::<S>(s.splat(v))) }
}
