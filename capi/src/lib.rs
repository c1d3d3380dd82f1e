//! # dropnorm's C ABI
//!
//! `extern "C"` functions for every public kernel of [`dropnorm`] over `f32`, bf16 and f16
//! (16-bit values as their `uint16_t` bits), for engines written in C or C++. The header is
//! `include/dropnorm.h`, generated from this crate by cbindgen (`capi/gen-header.sh`).
//!
//! Conventions, the same for every function:
//! - Every kernel returns a [`DropnormStatus`]; `DROPNORM_OK` (0) or an error code, with the
//!   message of the calling thread's last error in [`dropnorm_last_error`].
//! - Every argument is checked before anything is written: on an error status no output
//!   was touched. NULL is accepted only for a zero-length buffer or where a parameter is
//!   documented as optional; pointers must be aligned for their element type; outputs must
//!   not overlap other arguments, except `y == x` (same length) on the functions that say
//!   they run in place.
//! - Data buffers come with their length in elements; per-channel arrays (γ, β, statistics,
//!   `dgamma`/`dbeta`) hold `shape.c` values.
//! - No panic crosses the boundary (reported as `DROPNORM_ERR_INTERNAL`); a successful call
//!   allocates nothing.
//! - Process-wide settings: [`dropnorm_set_isa`], [`dropnorm_set_threads`].

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod args;
mod batch_norm;
mod bn_args;
mod config;
mod dropout;
mod exports;
mod per_channel;
mod status;
mod types;

pub use config::*;
pub use exports::*;
pub use per_channel::*;
pub use status::*;
pub use types::*;

use core::ffi::c_char;

/// Major version of the header (and of the library it was generated with).
pub const DROPNORM_VERSION_MAJOR: u32 = 0;
/// Minor version; while the major version is 0, a new minor version may change the ABI.
pub const DROPNORM_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const DROPNORM_VERSION_PATCH: u32 = 0;
/// `MAJOR·10000 + MINOR·100 + PATCH`: compare with [`dropnorm_version_number`] at run time
/// to catch a header and a library of different versions.
pub const DROPNORM_VERSION_NUMBER: u32 =
    DROPNORM_VERSION_MAJOR * 10000 + DROPNORM_VERSION_MINOR * 100 + DROPNORM_VERSION_PATCH;

/// The library's version as a static string, `"MAJOR.MINOR.PATCH"`.
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// The library's `DROPNORM_VERSION_NUMBER` (the header's may differ if they were not built
/// together).
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_version_number() -> u32 {
    DROPNORM_VERSION_NUMBER
}

/// Bytes of a packed dropout mask for `n` elements: `ceil(n / 8)`.
#[unsafe(no_mangle)]
pub extern "C" fn dropnorm_mask_len(n: usize) -> usize {
    dropnorm::mask_len(n)
}
