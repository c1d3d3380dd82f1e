//! The C ABI from Rust: no allocation per call (issue 12: zero), the version constants, and
//! every function of the header exercised by the C test program (capi/tests/c/test_capi.c,
//! built and run by capi/test-c.sh in CI).

#[path = "../../tests/counting_alloc/mod.rs"]
mod counting_alloc;

use dropnorm_capi::*;

/// The buffers of [`call_all`], allocated before the counting starts.
struct Bufs {
    x: Vec<f32>,
    dy: Vec<f32>,
    x16: Vec<u16>,
    y: Vec<f32>,
    y16: Vec<u16>,
    dx: Vec<f32>,
    mask: Vec<u8>,
    g: Vec<f32>,
    b: Vec<f32>,
    rm: Vec<f32>,
    rv: Vec<f32>,
    sm: Vec<f32>,
    si: Vec<f32>,
    dg: Vec<f32>,
    db: Vec<f32>,
    run_m: Vec<f32>,
    run_v: Vec<f32>,
    batches: u64,
    cs: Vec<DropnormChannelStats>,
    gs: Vec<DropnormGradSums>,
}

const N: usize = 64;
const C: usize = 8;

fn bufs() -> Bufs {
    let x: Vec<f32> = (0..N).map(|i| (i % 7) as f32 * 0.5 - 1.0).collect();
    Bufs {
        dy: (0..N).map(|i| (i % 3) as f32 - 1.0).collect(),
        x16: x
            .iter()
            .map(|&v| dropnorm::bf16::from_f32(v).to_bits())
            .collect(),
        x,
        y: vec![0.0; N],
        y16: vec![0; N],
        dx: vec![0.0; N],
        mask: vec![0; N / 8],
        g: vec![1.0; C],
        b: vec![0.0; C],
        rm: vec![0.0; C],
        rv: vec![1.0; C],
        sm: vec![0.0; C],
        si: vec![0.0; C],
        dg: vec![0.0; C],
        db: vec![0.0; C],
        run_m: vec![0.0; C],
        run_v: vec![1.0; C],
        batches: 0,
        cs: vec![DropnormChannelStats::default(); C],
        gs: vec![DropnormGradSums::default(); C],
    }
}

/// Every kernel family once on a tiny NHWC tensor (and one refused call), as C would call it.
fn call_all(v: &mut Bufs) {
    let shape = DropnormShape {
        n: 4,
        c: C,
        h: 1,
        w: 2,
    };
    let (n, c, l) = (N, C, DROPNORM_LAYOUT_NHWC);
    let dp = DropnormDropoutParams {
        p: 0.3,
        eval: 0,
        seed: 1,
        offset: 0,
    };
    let bp = DropnormBnParams {
        eps: 1e-5,
        gamma: v.g.as_ptr(),
        beta: v.b.as_ptr(),
    };
    let rs = DropnormRunningStats {
        mean: v.rm.as_ptr(),
        var: v.rv.as_ptr(),
    };
    let mut status = [DROPNORM_OK; 12];
    // SAFETY: every buffer holds the length passed with it (per-channel arrays `c`), every
    // struct pointer is to a live struct, and no output overlaps another argument.
    unsafe {
        status[0] = dropnorm_dropout_f32(v.x.as_ptr(), n, v.y.as_mut_ptr(), n, &dp);
        status[1] = dropnorm_dropout_with_mask_bf16(
            v.x16.as_ptr(),
            n,
            v.y16.as_mut_ptr(),
            n,
            v.mask.as_mut_ptr(),
            n / 8,
            &dp,
        );
        status[2] = dropnorm_dropout_backward_f16(v.x16.as_ptr(), n, v.y16.as_mut_ptr(), n, &dp);
        status[3] =
            dropnorm_dropout_channels_f32(v.x.as_ptr(), n, v.y.as_mut_ptr(), n, shape, l, &dp);
        let mut saved = DropnormSavedStatsMut {
            mean: v.sm.as_mut_ptr(),
            invstd: v.si.as_mut_ptr(),
        };
        let mut running = DropnormRunningStatsMut {
            mean: v.run_m.as_mut_ptr(),
            var: v.run_v.as_mut_ptr(),
            batches: &mut v.batches,
            momentum_kind: DROPNORM_MOMENTUM_PYTORCH,
            momentum: 0.1,
        };
        status[4] = dropnorm_batch_norm_train_f32(
            v.x.as_ptr(),
            n,
            v.y.as_mut_ptr(),
            n,
            shape,
            l,
            &bp,
            DROPNORM_EPILOGUE_RELU,
            &mut saved,
            &mut running,
        );
        status[5] = dropnorm_batch_norm_infer_bf16(
            v.x16.as_ptr(),
            n,
            v.y16.as_mut_ptr(),
            n,
            shape,
            l,
            &bp,
            DROPNORM_EPILOGUE_NONE,
            &rs,
        );
        status[6] = dropnorm_batch_norm_add_relu_infer_f32(
            v.x.as_ptr(),
            n,
            v.dy.as_ptr(),
            n,
            v.y.as_mut_ptr(),
            n,
            shape,
            l,
            &bp,
            &rs,
        );
        status[7] = dropnorm_channel_stats_f32(v.x.as_ptr(), n, v.cs.as_mut_ptr(), shape, l);
        status[8] = dropnorm_batch_norm_apply_f32(
            v.x.as_ptr(),
            n,
            v.y.as_mut_ptr(),
            n,
            shape,
            l,
            &bp,
            DROPNORM_EPILOGUE_NONE,
            v.cs.as_ptr(),
            &mut saved,
            core::ptr::null_mut(),
        );
        let sv = DropnormSavedStats {
            mean: v.sm.as_ptr(),
            invstd: v.si.as_ptr(),
        };
        status[9] = dropnorm_batch_norm_backward_f32(
            v.x.as_ptr(),
            n,
            v.dy.as_ptr(),
            n,
            core::ptr::null(),
            0,
            v.dx.as_mut_ptr(),
            n,
            v.dg.as_mut_ptr(),
            v.db.as_mut_ptr(),
            shape,
            l,
            &bp,
            &sv,
        );
        status[10] = dropnorm_batch_norm_backward_sums_f32(
            v.x.as_ptr(),
            n,
            v.dy.as_ptr(),
            n,
            core::ptr::null(),
            0,
            v.gs.as_mut_ptr(),
            shape,
            l,
            &sv,
        );
        status[11] = dropnorm_grad_sums_merge(v.gs.as_ptr(), v.gs.as_ptr(), v.gs.as_mut_ptr(), c);
        // Refused (y too short): the message is written without allocating either.
        let refused = dropnorm_dropout_f32(v.x.as_ptr(), n, v.y.as_mut_ptr(), n - 1, &dp);
        assert_eq!(refused, DROPNORM_ERR_LENGTH_MISMATCH);
    }
    assert!(status.iter().all(|&s| s == DROPNORM_OK), "{status:?}");
}

#[test]
fn calls_allocate_nothing_on_every_thread_setting() {
    // 0: rayon's pool (a 64-element call stays on the caller), 1: the caller's thread, 2: a
    // pool of our own (small calls stay on the caller too). One warm-up call per setting
    // (thread-local scratch), then ten counted.
    let mut v = bufs();
    for threads in [0, 1, 2] {
        assert_eq!(dropnorm_set_threads(threads), DROPNORM_OK);
        let count = counting_alloc::on_this_thread(1, 10, || call_all(&mut v));
        assert_eq!(
            count, 0,
            "threads {threads}: {count} allocations in 10 rounds"
        );
    }
    assert_eq!(dropnorm_set_threads(0), DROPNORM_OK);
}

/// The counter sees this thread's allocations (else the test above could not fail).
#[test]
fn the_counter_counts() {
    let count = counting_alloc::on_this_thread(0, 3, || {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert_eq!(count, 3);
}

#[test]
fn version_constants_are_the_crates() {
    let v = format!("{DROPNORM_VERSION_MAJOR}.{DROPNORM_VERSION_MINOR}.{DROPNORM_VERSION_PATCH}");
    assert_eq!(
        v,
        env!("CARGO_PKG_VERSION"),
        "capi/src/lib.rs constants vs capi/Cargo.toml"
    );
    let core_toml = include_str!("../../Cargo.toml");
    let core_version = core_toml
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|l| l.split('"').next());
    assert_eq!(core_version, Some(v.as_str()), "capi version vs dropnorm's");
    // SAFETY: a static NUL-terminated string.
    let s = unsafe { core::ffi::CStr::from_ptr(dropnorm_version()) };
    assert_eq!(s.to_str(), Ok(v.as_str()));
    assert_eq!(dropnorm_version_number(), DROPNORM_VERSION_NUMBER);
}

/// Every function the header declares is called by the C test: typed kernels through its
/// `DISPATCH(name, …)` table (which calls the `_f32`, `_bf16` and `_f16` export each), the
/// others by name.
#[test]
fn the_c_test_calls_every_header_function() {
    let header = include_str!("../../include/dropnorm.h");
    let test = include_str!("c/test_capi.c");
    let mut missing = Vec::new();
    let mut seen = 0;
    for line in header.lines() {
        let Some(start) = line.find("dropnorm_") else {
            continue;
        };
        let Some(open) = line[start..].find('(') else {
            continue;
        };
        let name = &line[start..start + open];
        if line.starts_with(' ')
            || line.starts_with('#')
            || !name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric())
        {
            continue;
        }
        seen += 1;
        let typed = ["_f32", "_bf16", "_f16"]
            .iter()
            .find_map(|t| name.strip_suffix(t));
        let covered = match typed {
            Some(base) => test.contains(&format!("DISPATCH({},", &base["dropnorm_".len()..])),
            None => test.contains(&format!("{name}(")),
        };
        if !covered {
            missing.push(name.to_string());
        }
    }
    assert!(seen >= 70, "parsed only {seen} functions from the header");
    assert!(
        missing.is_empty(),
        "not called by capi/tests/c/test_capi.c: {missing:?}"
    );
}
