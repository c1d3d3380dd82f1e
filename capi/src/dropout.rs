//! Dropout exports: one generic body per function, stamped per element type by
//! `dropout_exports!` (simdutf8's pattern: one algorithm, every instantiation tested).

use dropnorm::Element;

use crate::args::{Args, read, same};
use crate::config::run;
use crate::status::CError;
use crate::types::{DropnormDropoutParams, DropnormLayout, DropnormShape, layout};

/// # Safety (of every function here)
/// Each non-NULL pointer is valid for its length (reads for inputs, writes for outputs) and
/// `params` points to a `DropnormDropoutParams`, for the whole call.
pub(crate) unsafe fn dropout<E: Element>(
    x: *const E,
    x_len: usize,
    y: *mut E,
    y_len: usize,
    params: *const DropnormDropoutParams,
) -> Result<(), CError> {
    // SAFETY: the contract above, for every registered pointer.
    let params = unsafe { read("params", params)? }.to_rust();
    let mut a = Args::new();
    if same(x, x_len, y, y_len) {
        // SAFETY: as above.
        let y = unsafe { a.output("y", y, y_len)? };
        let y = y.get(&a.check()?);
        return Ok(run(y_len, || dropnorm::dropout_inplace(y, &params))?);
    }
    // SAFETY: as above.
    let (x, y) = unsafe { (a.input("x", x, x_len)?, a.output("y", y, y_len)?) };
    let ok = a.check()?;
    let (x, y) = (x.get(&ok), y.get(&ok));
    Ok(run(x_len, || dropnorm::dropout(x, y, &params))?)
}

pub(crate) unsafe fn dropout_with_mask<E: Element>(
    x: *const E,
    x_len: usize,
    y: *mut E,
    y_len: usize,
    mask: *mut u8,
    mask_len: usize,
    params: *const DropnormDropoutParams,
) -> Result<(), CError> {
    // SAFETY: the contract of this module, for every registered pointer.
    let params = unsafe { read("params", params)? }.to_rust();
    let mut a = Args::new();
    // SAFETY: as above.
    let (x, y, mask) = unsafe {
        (
            a.input("x", x, x_len)?,
            a.output("y", y, y_len)?,
            a.output("mask", mask, mask_len)?,
        )
    };
    let ok = a.check()?;
    let (x, y, mask) = (x.get(&ok), y.get(&ok), mask.get(&ok));
    Ok(run(x_len, || {
        dropnorm::dropout_with_mask(x, y, mask, &params)
    })?)
}

pub(crate) unsafe fn dropout_backward<E: Element>(
    dy: *const E,
    dy_len: usize,
    dx: *mut E,
    dx_len: usize,
    params: *const DropnormDropoutParams,
) -> Result<(), CError> {
    // SAFETY: the contract of this module, for every registered pointer.
    let params = unsafe { read("params", params)? }.to_rust();
    let mut a = Args::new();
    if same(dy, dy_len, dx, dx_len) {
        // SAFETY: as above.
        let dx = unsafe { a.output("dx", dx, dx_len)? };
        let dx = dx.get(&a.check()?);
        return Ok(run(dx_len, || {
            dropnorm::dropout_backward_inplace(dx, &params)
        })?);
    }
    // SAFETY: as above.
    let (dy, dx) = unsafe { (a.input("dy", dy, dy_len)?, a.output("dx", dx, dx_len)?) };
    let ok = a.check()?;
    let (dy, dx) = (dy.get(&ok), dx.get(&ok));
    Ok(run(dy_len, || dropnorm::dropout_backward(dy, dx, &params))?)
}

pub(crate) unsafe fn dropout_backward_with_mask<E: Element>(
    dy: *const E,
    dy_len: usize,
    mask: *const u8,
    mask_len: usize,
    dx: *mut E,
    dx_len: usize,
    params: *const DropnormDropoutParams,
) -> Result<(), CError> {
    // SAFETY: the contract of this module, for every registered pointer.
    let params = unsafe { read("params", params)? }.to_rust();
    let mut a = Args::new();
    // SAFETY: as above.
    let (dy, mask, dx) = unsafe {
        (
            a.input("dy", dy, dy_len)?,
            a.input("mask", mask, mask_len)?,
            a.output("dx", dx, dx_len)?,
        )
    };
    let ok = a.check()?;
    let (dy, mask, dx) = (dy.get(&ok), mask.get(&ok), dx.get(&ok));
    Ok(run(dy_len, || {
        dropnorm::dropout_backward_with_mask(dy, mask, dx, &params)
    })?)
}

pub(crate) unsafe fn dropout_channels<E: Element>(
    x: *const E,
    x_len: usize,
    y: *mut E,
    y_len: usize,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormDropoutParams,
) -> Result<(), CError> {
    let lay = layout(layout_code)?;
    // SAFETY: the contract of this module, for every registered pointer.
    let params = unsafe { read("params", params)? }.to_rust();
    let mut a = Args::new();
    if same(x, x_len, y, y_len) {
        // SAFETY: as above.
        let y = unsafe { a.output("y", y, y_len)? };
        let y = y.get(&a.check()?);
        return Ok(run(y_len, || {
            dropnorm::dropout_channels_inplace(y, shape.into(), lay, &params)
        })?);
    }
    // SAFETY: as above.
    let (x, y) = unsafe { (a.input("x", x, x_len)?, a.output("y", y, y_len)?) };
    let ok = a.check()?;
    let (x, y) = (x.get(&ok), y.get(&ok));
    Ok(run(x_len, || {
        dropnorm::dropout_channels(x, y, shape.into(), lay, &params)
    })?)
}

pub(crate) unsafe fn dropout_channels_backward<E: Element>(
    dy: *const E,
    dy_len: usize,
    dx: *mut E,
    dx_len: usize,
    shape: DropnormShape,
    layout_code: DropnormLayout,
    params: *const DropnormDropoutParams,
) -> Result<(), CError> {
    let lay = layout(layout_code)?;
    // SAFETY: the contract of this module, for every registered pointer.
    let params = unsafe { read("params", params)? }.to_rust();
    let mut a = Args::new();
    // SAFETY: as above.
    let (dy, dx) = unsafe { (a.input("dy", dy, dy_len)?, a.output("dx", dx, dx_len)?) };
    let ok = a.check()?;
    let (dy, dx) = (dy.get(&ok), dx.get(&ok));
    Ok(run(dy_len, || {
        dropnorm::dropout_channels_backward(dy, dx, shape.into(), lay, &params)
    })?)
}
