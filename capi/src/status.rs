//! Status codes, the message of the last error on each thread, and the guard every exported
//! function runs in (no panic crosses the boundary).

use core::ffi::c_char;
use core::fmt::{self, Write};
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use dropnorm::Error;

/// What a call did: `DROPNORM_OK`, or why nothing was written. The message of the last
/// failure on the calling thread is [`dropnorm_last_error`].
pub type DropnormStatus = i32;

/// Success.
pub const DROPNORM_OK: DropnormStatus = 0;
/// A required pointer is NULL (or an optional one is NULL with a nonzero length).
pub const DROPNORM_ERR_NULL_POINTER: DropnormStatus = 1;
/// A pointer is not aligned for its element type.
pub const DROPNORM_ERR_MISALIGNED: DropnormStatus = 2;
/// An output overlaps another argument (beyond the exact in-place cases a function allows).
pub const DROPNORM_ERR_ALIASED: DropnormStatus = 3;
/// A `DropnormLayout`, `DropnormEpilogue`, `DropnormMomentum` or `DropnormIsa` code that does
/// not exist.
pub const DROPNORM_ERR_INVALID_ENUM: DropnormStatus = 4;
/// A length whose byte size does not fit in the address space.
pub const DROPNORM_ERR_TOO_LARGE: DropnormStatus = 5;
/// A dropout probability that is NaN or outside `[0, 1]`.
pub const DROPNORM_ERR_INVALID_PROBABILITY: DropnormStatus = 6;
/// Two buffers that must have the same length (or a buffer and its shape) do not.
pub const DROPNORM_ERR_LENGTH_MISMATCH: DropnormStatus = 7;
/// An output buffer shorter than what the call must write.
pub const DROPNORM_ERR_BUFFER_TOO_SMALL: DropnormStatus = 8;
/// Shape dimensions whose product overflows `size_t`.
pub const DROPNORM_ERR_SHAPE_OVERFLOW: DropnormStatus = 9;
/// A shape the layout cannot hold (e.g. `h != 1` for `DROPNORM_LAYOUT_NC`).
pub const DROPNORM_ERR_INVALID_SHAPE: DropnormStatus = 10;
/// A dropout `offset` plus the call's length overflows the 64-bit element index.
pub const DROPNORM_ERR_OFFSET_OVERFLOW: DropnormStatus = 11;
/// An `eps` that is negative, NaN or infinite.
pub const DROPNORM_ERR_INVALID_EPS: DropnormStatus = 12;
/// A momentum outside `[0, 1]` or NaN.
pub const DROPNORM_ERR_INVALID_MOMENTUM: DropnormStatus = 13;
/// Training-mode batch norm with fewer than two values per channel.
pub const DROPNORM_ERR_TOO_FEW_VALUES: DropnormStatus = 14;
/// An optional argument these settings require (e.g. `y` for a fused ReLU's backward).
pub const DROPNORM_ERR_MISSING_ARGUMENT: DropnormStatus = 15;
/// An optional argument these settings have no use for.
pub const DROPNORM_ERR_UNEXPECTED_ARGUMENT: DropnormStatus = 16;
/// A combination of options this version does not implement.
pub const DROPNORM_ERR_UNSUPPORTED: DropnormStatus = 17;
/// Merged statistics whose value count overflows 64 bits.
pub const DROPNORM_ERR_COUNT_OVERFLOW: DropnormStatus = 18;
/// A running variance that is negative or NaN (a corrupt checkpoint).
pub const DROPNORM_ERR_INVALID_RUNNING_VAR: DropnormStatus = 19;
/// Split-phase statistics no batch can have (corrupted in transit?).
pub const DROPNORM_ERR_INVALID_STATS: DropnormStatus = 20;
/// An instruction set this CPU (or this build) does not have.
pub const DROPNORM_ERR_ISA_UNAVAILABLE: DropnormStatus = 21;
/// The thread pool asked for could not be started.
pub const DROPNORM_ERR_THREAD_POOL: DropnormStatus = 22;
/// A bad argument of a kind newer than this list; the message says which.
pub const DROPNORM_ERR_INVALID_ARGUMENT: DropnormStatus = 23;
/// A bug in dropnorm (a panic, caught at the boundary). Please report it with the message.
pub const DROPNORM_ERR_INTERNAL: DropnormStatus = 24;

/// Why a C call was refused: the Rust crate's errors, and those only raw pointers can have.
#[derive(Debug)]
pub(crate) enum CError {
    Core(Error),
    Null(&'static str),
    Misaligned {
        arg: &'static str,
        align: usize,
    },
    Aliased {
        out: &'static str,
        other: &'static str,
    },
    InvalidEnum {
        arg: &'static str,
        value: u32,
    },
    TooLarge {
        arg: &'static str,
        len: usize,
    },
    ThreadPool(String),
}

impl From<Error> for CError {
    fn from(e: Error) -> Self {
        CError::Core(e)
    }
}

impl CError {
    fn status(&self) -> DropnormStatus {
        match self {
            CError::Core(e) => core_status(e),
            CError::Null(_) => DROPNORM_ERR_NULL_POINTER,
            CError::Misaligned { .. } => DROPNORM_ERR_MISALIGNED,
            CError::Aliased { .. } => DROPNORM_ERR_ALIASED,
            CError::InvalidEnum { .. } => DROPNORM_ERR_INVALID_ENUM,
            CError::TooLarge { .. } => DROPNORM_ERR_TOO_LARGE,
            CError::ThreadPool(_) => DROPNORM_ERR_THREAD_POOL,
        }
    }
}

fn core_status(e: &Error) -> DropnormStatus {
    match e {
        Error::InvalidProbability { .. } => DROPNORM_ERR_INVALID_PROBABILITY,
        Error::LengthMismatch { .. } => DROPNORM_ERR_LENGTH_MISMATCH,
        Error::BufferTooSmall { .. } => DROPNORM_ERR_BUFFER_TOO_SMALL,
        Error::ShapeOverflow { .. } => DROPNORM_ERR_SHAPE_OVERFLOW,
        Error::InvalidShape { .. } => DROPNORM_ERR_INVALID_SHAPE,
        Error::OffsetOverflow { .. } => DROPNORM_ERR_OFFSET_OVERFLOW,
        Error::InvalidEps { .. } => DROPNORM_ERR_INVALID_EPS,
        Error::InvalidMomentum { .. } => DROPNORM_ERR_INVALID_MOMENTUM,
        Error::TooFewValuesPerChannel { .. } => DROPNORM_ERR_TOO_FEW_VALUES,
        Error::MissingArgument { .. } => DROPNORM_ERR_MISSING_ARGUMENT,
        Error::UnexpectedArgument { .. } => DROPNORM_ERR_UNEXPECTED_ARGUMENT,
        Error::Unsupported { .. } => DROPNORM_ERR_UNSUPPORTED,
        Error::CountOverflow => DROPNORM_ERR_COUNT_OVERFLOW,
        Error::InvalidRunningVar { .. } => DROPNORM_ERR_INVALID_RUNNING_VAR,
        Error::InvalidStats { .. } => DROPNORM_ERR_INVALID_STATS,
        Error::IsaUnavailable { .. } => DROPNORM_ERR_ISA_UNAVAILABLE,
        // `Error` is non-exhaustive: a variant newer than this map is still a refused
        // argument, and its message names it.
        _ => DROPNORM_ERR_INVALID_ARGUMENT,
    }
}

impl fmt::Display for CError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CError::Core(e) => e.fmt(f),
            CError::Null(arg) => write!(f, "`{arg}` is NULL"),
            CError::Misaligned { arg, align } => {
                write!(f, "`{arg}` is not aligned to {align} bytes")
            }
            CError::Aliased { out, other } => write!(
                f,
                "`{out}` overlaps `{other}`: outputs must not overlap other arguments \
                 (in place means the same pointer and length)"
            ),
            CError::InvalidEnum { arg, value } => {
                write!(f, "`{arg}` = {value} is not a valid code")
            }
            CError::TooLarge { arg, len } => {
                write!(
                    f,
                    "`{arg}` length {len}: its size in bytes overflows the address space"
                )
            }
            CError::ThreadPool(why) => write!(f, "could not start the thread pool: {why}"),
        }
    }
}

/// The last error message of a thread, in a fixed buffer: setting it never allocates.
struct Message {
    bytes: [u8; MESSAGE_CAP],
    len: usize,
}

const MESSAGE_CAP: usize = 512;

impl Write for Message {
    /// Appends what fits, cut at a character boundary, keeping one byte for the NUL.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MESSAGE_CAP - 1 - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        self.bytes[self.len] = 0;
        Ok(())
    }
}

thread_local! {
    static LAST: RefCell<Message> = const {
        RefCell::new(Message { bytes: [0; MESSAGE_CAP], len: 0 })
    };
}

fn set_message(args: fmt::Arguments<'_>) {
    LAST.with(|m| {
        let mut m = m.borrow_mut();
        m.len = 0;
        m.bytes[0] = 0;
        // Write never fails (it truncates); a Display impl that errs leaves what it wrote.
        let _ = m.write_fmt(args);
    });
}

/// Runs one exported call: its error becomes the status and this thread's message, and a
/// panic (a dropnorm bug) becomes `DROPNORM_ERR_INTERNAL` instead of unwinding into C.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), CError>) -> DropnormStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => DROPNORM_OK,
        Ok(Err(e)) => {
            set_message(format_args!("{e}"));
            e.status()
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            set_message(format_args!(
                "internal error (a dropnorm bug): panic: {what}"
            ));
            DROPNORM_ERR_INTERNAL
        }
    }
}

/// The message of the last failed call on the calling thread (NUL-terminated UTF-8, at most
/// 511 bytes; an empty string before any failure). Successful calls leave it unchanged. The
/// pointer stays valid until the thread's next failed call or the thread's exit; copy it with
/// [`dropnorm_last_error_copy`] to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_last_error() -> *const c_char {
    // The buffer lives as long as the thread, and is NUL-terminated at all times.
    LAST.with(|m| m.borrow().bytes.as_ptr().cast::<c_char>())
}

/// Copies the last error message of the calling thread into `buf` (`cap` bytes, always
/// NUL-terminated when `cap > 0`, cut at a UTF-8 character boundary) and returns its full
/// length without the NUL, as `snprintf` does: a return `>= cap` means it was cut.
/// `buf` may be NULL when `cap` is 0.
///
/// # Safety
/// `buf` must be valid for writes of `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dropnorm_last_error_copy(buf: *mut c_char, cap: usize) -> usize {
    LAST.with(|m| {
        let m = m.borrow();
        if !buf.is_null() && cap > 0 {
            let mut take = m.len.min(cap - 1);
            // SAFETY: the message is valid UTF-8 of `m.len` bytes (written from `str`s).
            let text = unsafe { core::str::from_utf8_unchecked(&m.bytes[..m.len]) };
            while !text.is_char_boundary(take) {
                take -= 1;
            }
            // SAFETY: the caller gives `cap > take` writable bytes at `buf`; the source is
            // this thread's buffer, which cannot overlap memory the caller owns.
            unsafe {
                core::ptr::copy_nonoverlapping(m.bytes.as_ptr(), buf.cast::<u8>(), take);
                *buf.add(take) = 0;
            }
        }
        m.len
    })
}

/// A static name for a status code (`"DROPNORM_OK"`, `"DROPNORM_ERR_NULL_POINTER"`, …;
/// `"unknown status"` for a code that is none of them).
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_status_name(status: DropnormStatus) -> *const c_char {
    let name: &'static core::ffi::CStr = match status {
        DROPNORM_OK => c"DROPNORM_OK",
        DROPNORM_ERR_NULL_POINTER => c"DROPNORM_ERR_NULL_POINTER",
        DROPNORM_ERR_MISALIGNED => c"DROPNORM_ERR_MISALIGNED",
        DROPNORM_ERR_ALIASED => c"DROPNORM_ERR_ALIASED",
        DROPNORM_ERR_INVALID_ENUM => c"DROPNORM_ERR_INVALID_ENUM",
        DROPNORM_ERR_TOO_LARGE => c"DROPNORM_ERR_TOO_LARGE",
        DROPNORM_ERR_INVALID_PROBABILITY => c"DROPNORM_ERR_INVALID_PROBABILITY",
        DROPNORM_ERR_LENGTH_MISMATCH => c"DROPNORM_ERR_LENGTH_MISMATCH",
        DROPNORM_ERR_BUFFER_TOO_SMALL => c"DROPNORM_ERR_BUFFER_TOO_SMALL",
        DROPNORM_ERR_SHAPE_OVERFLOW => c"DROPNORM_ERR_SHAPE_OVERFLOW",
        DROPNORM_ERR_INVALID_SHAPE => c"DROPNORM_ERR_INVALID_SHAPE",
        DROPNORM_ERR_OFFSET_OVERFLOW => c"DROPNORM_ERR_OFFSET_OVERFLOW",
        DROPNORM_ERR_INVALID_EPS => c"DROPNORM_ERR_INVALID_EPS",
        DROPNORM_ERR_INVALID_MOMENTUM => c"DROPNORM_ERR_INVALID_MOMENTUM",
        DROPNORM_ERR_TOO_FEW_VALUES => c"DROPNORM_ERR_TOO_FEW_VALUES",
        DROPNORM_ERR_MISSING_ARGUMENT => c"DROPNORM_ERR_MISSING_ARGUMENT",
        DROPNORM_ERR_UNEXPECTED_ARGUMENT => c"DROPNORM_ERR_UNEXPECTED_ARGUMENT",
        DROPNORM_ERR_UNSUPPORTED => c"DROPNORM_ERR_UNSUPPORTED",
        DROPNORM_ERR_COUNT_OVERFLOW => c"DROPNORM_ERR_COUNT_OVERFLOW",
        DROPNORM_ERR_INVALID_RUNNING_VAR => c"DROPNORM_ERR_INVALID_RUNNING_VAR",
        DROPNORM_ERR_INVALID_STATS => c"DROPNORM_ERR_INVALID_STATS",
        DROPNORM_ERR_ISA_UNAVAILABLE => c"DROPNORM_ERR_ISA_UNAVAILABLE",
        DROPNORM_ERR_THREAD_POOL => c"DROPNORM_ERR_THREAD_POOL",
        DROPNORM_ERR_INVALID_ARGUMENT => c"DROPNORM_ERR_INVALID_ARGUMENT",
        DROPNORM_ERR_INTERNAL => c"DROPNORM_ERR_INTERNAL",
        _ => c"unknown status",
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: the pointer is this thread's NUL-terminated message buffer.
        unsafe { CStr::from_ptr(dropnorm_last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_panic_becomes_the_internal_status_with_its_message() {
        let s = guard(|| panic!("sentinel {}", 7));
        assert_eq!(s, DROPNORM_ERR_INTERNAL);
        assert!(last().contains("panic: sentinel 7"), "{}", last());
        let s = guard(|| std::panic::panic_any(3u8));
        assert_eq!(s, DROPNORM_ERR_INTERNAL);
        assert!(last().ends_with("(no message)"), "{}", last());
    }

    #[test]
    fn success_keeps_the_last_message_and_an_error_replaces_it() {
        assert_eq!(guard(|| Err(CError::Null("x"))), DROPNORM_ERR_NULL_POINTER);
        assert_eq!(last(), "`x` is NULL");
        assert_eq!(guard(|| Ok(())), DROPNORM_OK);
        assert_eq!(last(), "`x` is NULL");
        let e = CError::InvalidEnum {
            arg: "layout",
            value: 9,
        };
        assert_eq!(guard(|| Err(e)), DROPNORM_ERR_INVALID_ENUM);
        assert_eq!(last(), "`layout` = 9 is not a valid code");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        // 'é' is two bytes: 511 bytes of room end in the middle of the 256th.
        let long: String = "é".repeat(400);
        set_message(format_args!("{long}"));
        let m = last();
        assert_eq!(m.len(), 510);
        assert!(m.chars().all(|c| c == 'é'));
        let mut buf = [0x55 as c_char; 8];
        // SAFETY: buf holds 8 writable bytes.
        let full = unsafe { dropnorm_last_error_copy(buf.as_mut_ptr(), buf.len()) };
        assert_eq!(full, 510);
        // 7 bytes of room: three whole 'é', then the NUL.
        // SAFETY: the copy is NUL-terminated within buf.
        let copied = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(copied, "ééé");
        // SAFETY: NULL with a zero capacity is allowed and writes nothing.
        let needed = unsafe { dropnorm_last_error_copy(core::ptr::null_mut(), 0) };
        assert_eq!(needed, 510);
    }

    #[test]
    fn every_status_has_its_own_name() {
        let names: Vec<&str> = (DROPNORM_OK..=DROPNORM_ERR_INTERNAL)
            .map(|s| {
                // SAFETY: names are static NUL-terminated strings.
                unsafe { CStr::from_ptr(dropnorm_status_name(s)) }
                    .to_str()
                    .unwrap()
            })
            .collect();
        assert!(!names.contains(&"unknown status"));
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(dropnorm_status_name(-1)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown status");
    }
}
