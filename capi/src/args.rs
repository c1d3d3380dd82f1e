//! Raw pointer arguments, checked before any reference is made from them: NULL, alignment,
//! byte size, and that no output overlaps another argument (two Rust references to the same
//! memory, one of them `&mut`, would be undefined behaviour even before a byte is written).
//!
//! A call registers each buffer with [`Args`], then [`Args::check`] returns the [`Checked`]
//! token without which no slice can be made.

use core::ptr::NonNull;

use crate::status::CError;

/// One buffer's bytes, `[start, end)` (empty for a NULL or zero-length buffer).
#[derive(Clone, Copy)]
struct Region {
    start: usize,
    end: usize,
    arg: &'static str,
    write: bool,
}

/// Most buffers one call takes (the split-phase apply with running statistics: 11).
const MAX_ARGS: usize = 16;

/// The buffers of one call, registered before any of them is used.
pub(crate) struct Args {
    regions: [Region; MAX_ARGS],
    n: usize,
}

/// Proof that every registered buffer passed [`Args::check`].
pub(crate) struct Checked(());

/// A checked input buffer (not yet a slice).
#[derive(Clone, Copy)]
pub(crate) struct In<T> {
    ptr: *const T,
    len: usize,
}

/// A checked output buffer (not yet a slice).
pub(crate) struct Out<T> {
    ptr: *mut T,
    len: usize,
}

/// Validates `ptr` for `len` values of `T`: NULL only with `len == 0`, aligned, and a byte
/// size within `isize::MAX` that does not wrap the address space.
fn region<T>(arg: &'static str, ptr: *const T, len: usize, write: bool) -> Result<Region, CError> {
    let start = ptr as usize;
    if ptr.is_null() {
        return if len == 0 {
            Ok(Region {
                start: 0,
                end: 0,
                arg,
                write,
            })
        } else {
            Err(CError::Null(arg))
        };
    }
    let align = align_of::<T>();
    if !start.is_multiple_of(align) {
        return Err(CError::Misaligned { arg, align });
    }
    let end = len
        .checked_mul(size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .and_then(|b| start.checked_add(b))
        .ok_or(CError::TooLarge { arg, len })?;
    Ok(Region {
        start,
        end,
        arg,
        write,
    })
}

impl Args {
    pub(crate) fn new() -> Self {
        Args {
            regions: [Region {
                start: 0,
                end: 0,
                arg: "",
                write: false,
            }; MAX_ARGS],
            n: 0,
        }
    }

    fn push(&mut self, r: Region) {
        // MAX_ARGS is above the most buffers any export registers: more would be a bug in
        // this crate, reported through the boundary's panic guard.
        assert!(
            self.n < MAX_ARGS,
            "more than {MAX_ARGS} buffers in one call"
        );
        self.regions[self.n] = r;
        self.n += 1;
    }

    /// A buffer the call reads: `len` values at `ptr` (NULL only if `len == 0`).
    ///
    /// # Safety
    /// A non-NULL `ptr` is valid for reads of `len` initialized values for the whole call
    /// (what every export's `# Safety` asks of its C caller); the same for the other
    /// registering methods, with writes for outputs.
    pub(crate) unsafe fn input<T>(
        &mut self,
        arg: &'static str,
        ptr: *const T,
        len: usize,
    ) -> Result<In<T>, CError> {
        self.push(region(arg, ptr, len, false)?);
        Ok(In { ptr, len })
    }

    /// A buffer the call writes (or reads and writes).
    pub(crate) unsafe fn output<T>(
        &mut self,
        arg: &'static str,
        ptr: *mut T,
        len: usize,
    ) -> Result<Out<T>, CError> {
        self.push(region(arg, ptr, len, true)?);
        Ok(Out { ptr, len })
    }

    /// An input that may be absent: NULL means `None` (with any `len`).
    pub(crate) unsafe fn maybe_input<T>(
        &mut self,
        arg: &'static str,
        ptr: *const T,
        len: usize,
    ) -> Result<Option<In<T>>, CError> {
        if ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: this function's own contract.
        unsafe { self.input(arg, ptr, len).map(Some) }
    }

    /// An input that may be absent and has its own length: NULL with `len == 0` means `None`,
    /// NULL with a length is an error (a caller that meant to pass it).
    pub(crate) unsafe fn optional_input<T>(
        &mut self,
        arg: &'static str,
        ptr: *const T,
        len: usize,
    ) -> Result<Option<In<T>>, CError> {
        if ptr.is_null() && len == 0 {
            return Ok(None);
        }
        // SAFETY: this function's own contract.
        unsafe { self.input(arg, ptr, len).map(Some) }
    }

    /// Every output is disjoint from every other buffer (inputs may overlap each other).
    pub(crate) fn check(&self) -> Result<Checked, CError> {
        let rs = &self.regions[..self.n];
        for (i, a) in rs.iter().enumerate() {
            if !a.write || a.start == a.end {
                continue;
            }
            for (j, b) in rs.iter().enumerate() {
                if i != j && b.start != b.end && a.start < b.end && b.start < a.end {
                    return Err(CError::Aliased {
                        out: a.arg,
                        other: b.arg,
                    });
                }
            }
        }
        Ok(Checked(()))
    }
}

impl<T> In<T> {
    /// The slice. Valid for as long as the C caller keeps the buffer, which is the call.
    pub(crate) fn get<'a>(self, _: &Checked) -> &'a [T] {
        let ptr = NonNull::new(self.ptr.cast_mut()).unwrap_or(NonNull::dangling());
        // SAFETY: `region` checked that the pointer is non-NULL (or the length 0, for which
        // a dangling aligned pointer is what Rust requires), aligned, and that the byte size
        // fits `isize` without wrapping; `Checked` says no output overlaps it; registration
        // (`Args::input`, unsafe) promised `len` initialized values there for the call.
        unsafe { core::slice::from_raw_parts(ptr.as_ptr(), self.len) }
    }
}

impl<T> Out<T> {
    /// The mutable slice. Valid for the call, and the only reference to its memory.
    pub(crate) fn get<'a>(self, _: &Checked) -> &'a mut [T] {
        let ptr = NonNull::new(self.ptr).unwrap_or(NonNull::dangling());
        // SAFETY: as `In::get`; `Checked` says it overlaps no other registered buffer, and
        // `Out` is not `Copy`, so one `Out` gives one `&mut`.
        unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), self.len) }
    }

    /// The one value of a buffer registered with length 1.
    pub(crate) fn get_one<'a>(self, c: &Checked) -> &'a mut T {
        &mut self.get(c)[0]
    }
}

/// A struct argument passed by pointer: non-NULL and aligned.
///
/// # Safety
/// A non-NULL `ptr` points to a `T` the caller does not modify during the call.
pub(crate) unsafe fn read<'a, T>(arg: &'static str, ptr: *const T) -> Result<&'a T, CError> {
    if ptr.is_null() {
        return Err(CError::Null(arg));
    }
    if !(ptr as usize).is_multiple_of(align_of::<T>()) {
        return Err(CError::Misaligned {
            arg,
            align: align_of::<T>(),
        });
    }
    // SAFETY: non-NULL and aligned (checked), pointing to a `T` (this function's contract).
    // The structs are plain data (numbers and raw pointers), valid for any bit pattern.
    Ok(unsafe { &*ptr })
}

/// As [`read`], for an optional struct (NULL: `None`).
///
/// # Safety
/// As [`read`].
pub(crate) unsafe fn read_optional<'a, T>(
    arg: &'static str,
    ptr: *const T,
) -> Result<Option<&'a T>, CError> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: this function's own contract.
        unsafe { read(arg, ptr).map(Some) }
    }
}

/// Same start and length: a call made in place.
pub(crate) fn same<T>(a: *const T, a_len: usize, b: *const T, b_len: usize) -> bool {
    !a.is_null() && a == b && a_len == b_len
}
