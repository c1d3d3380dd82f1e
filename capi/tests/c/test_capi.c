/*
 * The C API as a C11 program uses it: every exported function, for f32, bf16 and f16, checked
 * against a scalar reference written here (double precision, its own bf16/f16 conversions),
 * and every error path checked to write nothing.
 *
 * Built and run by capi/test-c.sh (CI) with -Wall -Wextra -Werror and ASan/UBSan, against
 * the static and the shared library.
 */
#include "dropnorm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                                   \
  do {                                                                                     \
    checks++;                                                                              \
    if (!(cond)) {                                                                         \
      failures++;                                                                          \
      if (failures <= 40) {                                                                \
        fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);          \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fprintf(stderr, "\n");                                                             \
      }                                                                                    \
    }                                                                                      \
  } while (0)

#define OK(call)                                                                           \
  do {                                                                                     \
    DropnormStatus st_ = (call);                                                           \
    CHECK(st_ == DROPNORM_OK, "%s: %s", dropnorm_status_name(st_), dropnorm_last_error()); \
  } while (0)

/* ---- element types: their own conversions (round to nearest, ties to even) ---- */

enum { T_F32, T_BF16, T_F16, T_COUNT };
static const char *const TYPE_NAME[T_COUNT] = {"f32", "bf16", "f16"};
static const size_t TYPE_SIZE[T_COUNT] = {4, 2, 2};

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint16_t to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h) { return bits_f32((uint32_t)h << 16); }

static uint16_t to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (a < 0x38800000u) { /* below 2^-14: a subnormal f16, in units of 2^-24 */
    double units = rint((double)bits_f32(a) * 16777216.0);
    return (uint16_t)(sign | (uint16_t)units);
  }
  a += 0xfffu + ((a >> 13) & 1u);
  uint32_t h = (a >> 13) - (112u << 10);
  if (h >= 0x7c00u) h = 0x7c00u;
  return (uint16_t)(sign | h);
}

static float from_f16(uint16_t h) {
  int e = (h >> 10) & 0x1f;
  int m = h & 0x3ff;
  float v;
  if (e == 0) v = ldexpf((float)m, -24);
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = ldexpf((float)(1024 + m), e - 25);
  return (h & 0x8000) ? -v : v;
}

/* Stores float values into a buffer of type t, and reads them back. */
static void store(int t, void *dst, const float *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (t == T_F32) ((float *)dst)[i] = src[i];
    else if (t == T_BF16) ((uint16_t *)dst)[i] = to_bf16(src[i]);
    else ((uint16_t *)dst)[i] = to_f16(src[i]);
  }
}

static float load1(int t, const void *src, size_t i) {
  if (t == T_F32) return ((const float *)src)[i];
  if (t == T_BF16) return from_bf16(((const uint16_t *)src)[i]);
  return from_f16(((const uint16_t *)src)[i]);
}

/* The value a kernel that computes `v` in f32 writes: `v` rounded to type t. */
static float narrow(int t, float v) {
  if (t == T_F32) return v;
  if (t == T_BF16) return from_bf16(to_bf16(v));
  return from_f16(to_f16(v));
}

/* Relative tolerance of a result narrowed to type t (a half ulp, plus the f32 work). */
static double type_tol(int t) { return t == T_F32 ? 2e-5 : t == T_BF16 ? 1.0 / 256 : 1.0 / 1024; }

static int close_to(int t, double got, double want) {
  double tol = type_tol(t) * fmax(fabs(want), 1.0) + 1e-4;
  return fabs(got - want) <= tol;
}

static void *alloc_t(int t, size_t n) { return calloc(n ? n : 1, TYPE_SIZE[t]); }

/* A buffer of type t holding `n` pseudo-random values in [lo, hi). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rnd(float lo, float hi) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return lo + (hi - lo) * (float)((rng_state >> 40) * (1.0 / 16777216.0));
}

static void *random_t(int t, size_t n, float lo, float hi) {
  float *v = malloc(n * sizeof(float) + 1);
  for (size_t i = 0; i < n; i++) v[i] = rnd(lo, hi);
  void *b = alloc_t(t, n);
  store(t, b, v, n);
  free(v);
  return b;
}

static void *copy_t(int t, const void *src, size_t n) {
  void *b = alloc_t(t, n);
  memcpy(b, src, n * TYPE_SIZE[t]);
  return b;
}

static int same_bytes(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

/* ---- one entry per exported kernel, dispatched on the element type ---- */

#define UNPAREN(...) __VA_ARGS__
#define DISPATCH(name, params, args)                                                       \
  static DropnormStatus name(int t, UNPAREN params) {                                      \
    switch (t) {                                                                           \
    case T_F32: return dropnorm_##name##_f32 args;                                         \
    case T_BF16: return dropnorm_##name##_bf16 args;                                       \
    default: return dropnorm_##name##_f16 args;                                            \
    }                                                                                      \
  }

DISPATCH(dropout, (const void *x, size_t xl, void *y, size_t yl, const DropnormDropoutParams *p),
         (x, xl, y, yl, p))
DISPATCH(dropout_with_mask,
         (const void *x, size_t xl, void *y, size_t yl, uint8_t *m, size_t ml,
          const DropnormDropoutParams *p),
         (x, xl, y, yl, m, ml, p))
DISPATCH(dropout_backward,
         (const void *dy, size_t dyl, void *dx, size_t dxl, const DropnormDropoutParams *p),
         (dy, dyl, dx, dxl, p))
DISPATCH(dropout_backward_with_mask,
         (const void *dy, size_t dyl, const uint8_t *m, size_t ml, void *dx, size_t dxl,
          const DropnormDropoutParams *p),
         (dy, dyl, m, ml, dx, dxl, p))
DISPATCH(dropout_channels,
         (const void *x, size_t xl, void *y, size_t yl, DropnormShape s, DropnormLayout l,
          const DropnormDropoutParams *p),
         (x, xl, y, yl, s, l, p))
DISPATCH(dropout_channels_backward,
         (const void *dy, size_t dyl, void *dx, size_t dxl, DropnormShape s, DropnormLayout l,
          const DropnormDropoutParams *p),
         (dy, dyl, dx, dxl, s, l, p))
DISPATCH(batch_norm_train,
         (const void *x, size_t xl, void *y, size_t yl, DropnormShape s, DropnormLayout l,
          const DropnormBnParams *p, DropnormEpilogue e, DropnormSavedStatsMut *sv,
          DropnormRunningStatsMut *r),
         (x, xl, y, yl, s, l, p, e, sv, r))
DISPATCH(batch_norm_add_relu_train,
         (const void *x, size_t xl, const void *res, size_t rl, void *y, size_t yl,
          DropnormShape s, DropnormLayout l, const DropnormBnParams *p, DropnormSavedStatsMut *sv,
          DropnormRunningStatsMut *r),
         (x, xl, res, rl, y, yl, s, l, p, sv, r))
DISPATCH(batch_norm_infer,
         (const void *x, size_t xl, void *y, size_t yl, DropnormShape s, DropnormLayout l,
          const DropnormBnParams *p, DropnormEpilogue e, const DropnormRunningStats *st),
         (x, xl, y, yl, s, l, p, e, st))
DISPATCH(batch_norm_add_relu_infer,
         (const void *x, size_t xl, const void *res, size_t rl, void *y, size_t yl,
          DropnormShape s, DropnormLayout l, const DropnormBnParams *p,
          const DropnormRunningStats *st),
         (x, xl, res, rl, y, yl, s, l, p, st))
DISPATCH(channel_stats,
         (const void *x, size_t xl, DropnormChannelStats *out, DropnormShape s, DropnormLayout l),
         (x, xl, out, s, l))
DISPATCH(batch_norm_apply,
         (const void *x, size_t xl, void *y, size_t yl, DropnormShape s, DropnormLayout l,
          const DropnormBnParams *p, DropnormEpilogue e, const DropnormChannelStats *st,
          DropnormSavedStatsMut *sv, DropnormRunningStatsMut *r),
         (x, xl, y, yl, s, l, p, e, st, sv, r))
DISPATCH(batch_norm_add_relu_apply,
         (const void *x, size_t xl, const void *res, size_t rl, void *y, size_t yl,
          DropnormShape s, DropnormLayout l, const DropnormBnParams *p,
          const DropnormChannelStats *st, DropnormSavedStatsMut *sv, DropnormRunningStatsMut *r),
         (x, xl, res, rl, y, yl, s, l, p, st, sv, r))
DISPATCH(batch_norm_backward,
         (const void *x, size_t xl, const void *dy, size_t dyl, const void *y, size_t yl,
          void *dx, size_t dxl, float *dg, float *db, DropnormShape s, DropnormLayout l,
          const DropnormBnParams *p, const DropnormSavedStats *sv),
         (x, xl, dy, dyl, y, yl, dx, dxl, dg, db, s, l, p, sv))
DISPATCH(batch_norm_add_relu_backward,
         (const void *x, size_t xl, const void *dy, size_t dyl, const void *y, size_t yl,
          void *dx, size_t dxl, void *dr, size_t drl, float *dg, float *db, DropnormShape s,
          DropnormLayout l, const DropnormBnParams *p, const DropnormSavedStats *sv),
         (x, xl, dy, dyl, y, yl, dx, dxl, dr, drl, dg, db, s, l, p, sv))
DISPATCH(batch_norm_backward_eval,
         (const void *x, size_t xl, const void *dy, size_t dyl, const void *y, size_t yl,
          void *dx, size_t dxl, float *dg, float *db, DropnormShape s, DropnormLayout l,
          const DropnormBnParams *p, const DropnormRunningStats *st),
         (x, xl, dy, dyl, y, yl, dx, dxl, dg, db, s, l, p, st))
DISPATCH(batch_norm_backward_sums,
         (const void *x, size_t xl, const void *dy, size_t dyl, const void *y, size_t yl,
          DropnormGradSums *out, DropnormShape s, DropnormLayout l, const DropnormSavedStats *sv),
         (x, xl, dy, dyl, y, yl, out, s, l, sv))
DISPATCH(batch_norm_backward_apply,
         (const void *x, size_t xl, const void *dy, size_t dyl, const void *y, size_t yl,
          void *dx, size_t dxl, float *dg, float *db, DropnormShape s, DropnormLayout l,
          const DropnormBnParams *p, const DropnormSavedStats *sv, const DropnormGradSums *sums),
         (x, xl, dy, dyl, y, yl, dx, dxl, dg, db, s, l, p, sv, sums))

/* ---- error paths: the status, a message naming the argument, nothing written ---- */

#define SENTINEL 0xA5

/* Checks that a refused call wrote none of the `n` output buffers (filled with SENTINEL). */
static void expect_refused(const char *what, DropnormStatus st, DropnormStatus want, const char *arg,
                           void *const *outs, const size_t *bytes, size_t n) {
  CHECK(st == want, "%s: got %s, want %s (%s)", what, dropnorm_status_name(st),
        dropnorm_status_name(want), dropnorm_last_error());
  if (arg) CHECK(strstr(dropnorm_last_error(), arg) != NULL, "%s: message `%s` names no `%s`", what,
                 dropnorm_last_error(), arg);
  for (size_t k = 0; k < n; k++) {
    const unsigned char *p = outs[k];
    size_t bad = 0;
    for (size_t i = 0; i < bytes[k]; i++) bad += p[i] != SENTINEL;
    CHECK(bad == 0, "%s: output %zu has %zu bytes written", what, k, bad);
  }
}

/* ---- dropout ---- */

static void test_dropout(int t) {
  const size_t n = 10007; /* not a multiple of any vector width */
  const float p = 0.3f;
  const float scale = 1.0f / (1.0f - p);
  DropnormDropoutParams params = {.p = p, .seed = 42, .offset = 5};
  void *x = random_t(t, n, 0.5f, 4.0f); /* nonzero, so a kept element is nonzero */
  void *y = alloc_t(t, n), *dx = alloc_t(t, n), *dx2 = alloc_t(t, n), *y2 = alloc_t(t, n);
  size_t ml = dropnorm_mask_len(n);
  CHECK(ml == (n + 7) / 8, "mask_len %zu", ml);
  uint8_t *mask = malloc(ml);

  OK(dropout(t, x, n, y, n, &params));
  size_t dropped = 0, wrong = 0;
  for (size_t i = 0; i < n; i++) {
    float xv = load1(t, x, i), yv = load1(t, y, i);
    if (yv == 0.0f) {
      dropped++;
      wrong += signbit(yv) != 0;
    } else {
      wrong += yv != narrow(t, xv * scale);
    }
  }
  CHECK(wrong == 0, "%s: %zu elements neither +0 nor x*scale", TYPE_NAME[t], wrong);
  /* P(drop) = p: 10007 draws, 6 standard deviations. */
  double frac = (double)dropped / n, sd = sqrt(p * (1 - p) / n);
  CHECK(fabs(frac - p) < 6 * sd, "%s: dropped fraction %.4f, p %.2f", TYPE_NAME[t], frac, p);

  /* Backward of dy = x drops the same elements with the same scale: the forward's bits. */
  OK(dropout_backward(t, x, n, dx, n, &params));
  CHECK(same_bytes(dx, y, n * TYPE_SIZE[t]), "%s: backward mask differs", TYPE_NAME[t]);

  /* With a mask: the same output; bit i set iff kept; padding bits 0. */
  OK(dropout_with_mask(t, x, n, y2, n, mask, ml, &params));
  CHECK(same_bytes(y2, y, n * TYPE_SIZE[t]), "%s: with_mask output differs", TYPE_NAME[t]);
  size_t bad_bits = 0;
  for (size_t i = 0; i < n; i++) bad_bits += ((mask[i / 8] >> (i % 8)) & 1) != (load1(t, y, i) != 0.0f);
  for (size_t i = n; i < ml * 8; i++) bad_bits += (mask[i / 8] >> (i % 8)) & 1;
  CHECK(bad_bits == 0, "%s: %zu mask bits wrong", TYPE_NAME[t], bad_bits);
  OK(dropout_backward_with_mask(t, x, n, mask, ml, dx2, n, &params));
  CHECK(same_bytes(dx2, y, n * TYPE_SIZE[t]), "%s: backward_with_mask differs", TYPE_NAME[t]);

  /* In place (same pointer and length) gives the out-of-place bits, forward and backward. */
  void *buf = copy_t(t, x, n);
  OK(dropout(t, buf, n, buf, n, &params));
  CHECK(same_bytes(buf, y, n * TYPE_SIZE[t]), "%s: in-place dropout differs", TYPE_NAME[t]);
  memcpy(buf, x, n * TYPE_SIZE[t]);
  OK(dropout_backward(t, buf, n, buf, n, &params));
  CHECK(same_bytes(buf, y, n * TYPE_SIZE[t]), "%s: in-place backward differs", TYPE_NAME[t]);

  /* Two pieces with their offsets give the mask of the whole. */
  DropnormDropoutParams second = params;
  second.offset = params.offset + 4000;
  OK(dropout(t, x, 4000, buf, 4000, &params));
  OK(dropout(t, (const char *)x + 4000 * TYPE_SIZE[t], n - 4000,
             (char *)buf + 4000 * TYPE_SIZE[t], n - 4000, &second));
  CHECK(same_bytes(buf, y, n * TYPE_SIZE[t]), "%s: pieces differ from the whole", TYPE_NAME[t]);

  /* Eval mode and p = 0 copy; p = 1 writes +0.0. */
  DropnormDropoutParams eval = params;
  eval.eval = 1;
  OK(dropout(t, x, n, buf, n, &eval));
  CHECK(same_bytes(buf, x, n * TYPE_SIZE[t]), "%s: eval mode is not a copy", TYPE_NAME[t]);
  DropnormDropoutParams one = params;
  one.p = 1.0f;
  OK(dropout(t, x, n, buf, n, &one));
  size_t nonzero = 0;
  for (size_t i = 0; i < n; i++) nonzero += load1(t, buf, i) != 0.0f || signbit(load1(t, buf, i));
  CHECK(nonzero == 0, "%s: p = 1 left %zu values", TYPE_NAME[t], nonzero);

  /* Error paths write nothing. */
  size_t bytes = n * TYPE_SIZE[t];
  void *outs[2] = {y2, mask};
  size_t sizes[2] = {bytes, ml};
  memset(y2, SENTINEL, bytes);
  memset(mask, SENTINEL, ml);
  expect_refused("dropout y_len", dropout(t, x, n, y2, n - 1, &params), DROPNORM_ERR_LENGTH_MISMATCH,
                 "y", outs, sizes, 1);
  expect_refused("dropout NULL x", dropout(t, NULL, n, y2, n, &params), DROPNORM_ERR_NULL_POINTER,
                 "x", outs, sizes, 1);
  expect_refused("dropout NULL params", dropout(t, x, n, y2, n, NULL), DROPNORM_ERR_NULL_POINTER,
                 "params", outs, sizes, 1);
  DropnormDropoutParams bad = params;
  bad.p = 1.5f;
  expect_refused("dropout p", dropout(t, x, n, y2, n, &bad), DROPNORM_ERR_INVALID_PROBABILITY, "1.5",
                 outs, sizes, 1);
  bad = params;
  bad.offset = UINT64_MAX - 10;
  expect_refused("dropout offset", dropout(t, x, n, y2, n, &bad), DROPNORM_ERR_OFFSET_OVERFLOW,
                 "offset", outs, sizes, 1);
  expect_refused("dropout misaligned",
                 dropout(t, (const char *)x + 1, n - 1, y2, n - 1, &params), DROPNORM_ERR_MISALIGNED,
                 "x", outs, sizes, 1);
  /* y overlapping x without being x: refused, x untouched. */
  void *xc = copy_t(t, x, n);
  expect_refused("dropout overlap",
                 dropout(t, x, n - 1, (char *)x + TYPE_SIZE[t], n - 1, &params),
                 DROPNORM_ERR_ALIASED, "y", NULL, NULL, 0);
  CHECK(same_bytes(xc, x, bytes), "%s: a refused overlapping call wrote x", TYPE_NAME[t]);
  expect_refused("dropout_with_mask mask_len",
                 dropout_with_mask(t, x, n, y2, n, mask, ml - 1, &params),
                 DROPNORM_ERR_BUFFER_TOO_SMALL, "mask", outs, sizes, 2);
  expect_refused("dropout_backward dx_len", dropout_backward(t, x, n, y2, n + 1, &params),
                 DROPNORM_ERR_LENGTH_MISMATCH, "dx", outs, sizes, 1);
  expect_refused("dropout_backward_with_mask NULL mask",
                 dropout_backward_with_mask(t, x, n, NULL, ml, y2, n, &params),
                 DROPNORM_ERR_NULL_POINTER, "mask", outs, sizes, 1);

  free(x); free(y); free(dx); free(dx2); free(y2); free(mask); free(buf); free(xc);
}

static void test_dropout_channels(int t) {
  const DropnormShape s = {.n = 3, .c = 5, .h = 4, .w = 3};
  const size_t n = 3 * 5 * 4 * 3, plane = 12;
  const float scale = 1.0f / (1.0f - 0.5f);
  DropnormDropoutParams params = {.p = 0.5f, .seed = 7};
  void *x = random_t(t, n, 1.0f, 2.0f);
  void *y = alloc_t(t, n), *dx = alloc_t(t, n), *buf = copy_t(t, x, n);
  for (DropnormLayout l = DROPNORM_LAYOUT_NCHW; l <= DROPNORM_LAYOUT_NHWC; l++) {
    OK(dropout_channels(t, x, n, y, n, s, l, &params));
    size_t wrong = 0, kept_planes = 0;
    for (size_t nn = 0; nn < s.n; nn++) {
      for (size_t c = 0; c < s.c; c++) {
        size_t kept = 0;
        for (size_t k = 0; k < plane; k++) {
          size_t i = l == DROPNORM_LAYOUT_NCHW ? (nn * s.c + c) * plane + k : (nn * plane + k) * s.c + c;
          float yv = load1(t, y, i), xv = load1(t, x, i);
          if (yv != 0.0f) {
            kept++;
            wrong += yv != narrow(t, xv * scale);
          }
        }
        wrong += kept != 0 && kept != plane; /* a plane is kept or dropped whole */
        kept_planes += kept == plane;
      }
    }
    CHECK(wrong == 0, "%s layout %u: %zu wrong", TYPE_NAME[t], l, wrong);
    CHECK(kept_planes > 0 && kept_planes < s.n * s.c, "%s: %zu of 15 planes kept", TYPE_NAME[t],
          kept_planes);
    OK(dropout_channels_backward(t, x, n, dx, n, s, l, &params));
    CHECK(same_bytes(dx, y, n * TYPE_SIZE[t]), "%s: channels backward mask differs", TYPE_NAME[t]);
    memcpy(buf, x, n * TYPE_SIZE[t]);
    OK(dropout_channels(t, buf, n, buf, n, s, l, &params));
    CHECK(same_bytes(buf, y, n * TYPE_SIZE[t]), "%s: in-place channels differs", TYPE_NAME[t]);
  }
  size_t bytes = n * TYPE_SIZE[t];
  void *outs[1] = {dx};
  size_t sizes[1] = {bytes};
  memset(dx, SENTINEL, bytes);
  expect_refused("dropout_channels layout", dropout_channels(t, x, n, dx, n, s, 7, &params),
                 DROPNORM_ERR_INVALID_ENUM, "layout", outs, sizes, 1);
  DropnormShape nc = s;
  expect_refused("dropout_channels NC with h", dropout_channels(t, x, n, dx, n, nc, DROPNORM_LAYOUT_NC, &params),
                 DROPNORM_ERR_INVALID_SHAPE, NULL, outs, sizes, 1);
  expect_refused("dropout_channels_backward x_len",
                 dropout_channels_backward(t, x, n - 1, dx, n - 1, s, DROPNORM_LAYOUT_NCHW, &params),
                 DROPNORM_ERR_LENGTH_MISMATCH, NULL, outs, sizes, 1);
  free(x); free(y); free(dx); free(buf);
}

/* ---- batch norm: the reference ---- */

typedef struct {
  DropnormShape s;
  DropnormLayout l;
  size_t n, c, per; /* elements, channels, values per channel */
} Tensor;

static size_t index_of(const Tensor *T, size_t c, size_t k) {
  /* k-th value of channel c, over (n, spatial) */
  size_t spatial = T->s.h * T->s.w;
  size_t nn = k / spatial, sp = k % spatial;
  if (T->l == DROPNORM_LAYOUT_NCHW) return (nn * T->c + c) * spatial + sp;
  return (nn * spatial + sp) * T->c + c; /* NC and NHWC */
}

static Tensor tensor(size_t n, size_t c, size_t h, size_t w, DropnormLayout l) {
  Tensor T = {.s = {n, c, h, w}, .l = l, .n = n * c * h * w, .c = c, .per = n * h * w};
  return T;
}

/* Batch mean and biased variance of each channel, in double, from the values as stored. */
static void ref_stats(int t, const Tensor *T, const void *x, double *mean, double *var) {
  for (size_t c = 0; c < T->c; c++) {
    double s = 0, q = 0;
    for (size_t k = 0; k < T->per; k++) s += load1(t, x, index_of(T, c, k));
    mean[c] = s / T->per;
    for (size_t k = 0; k < T->per; k++) {
      double d = load1(t, x, index_of(T, c, k)) - mean[c];
      q += d * d;
    }
    var[c] = q / T->per;
  }
}

/* y = epilogue(gamma (x - mean) / sqrt(var + eps) + beta [+ r]), checked element by element. */
static size_t check_normalized(int t, const Tensor *T, const void *x, const void *r, const void *y,
                               const double *mean, const double *var, const float *g, const float *b,
                               float eps, int relu) {
  size_t wrong = 0;
  for (size_t c = 0; c < T->c; c++) {
    double inv = 1.0 / sqrt(var[c] + eps);
    for (size_t k = 0; k < T->per; k++) {
      size_t i = index_of(T, c, k);
      double want = g[c] * (load1(t, x, i) - mean[c]) * inv + b[c];
      if (r) want += load1(t, r, i);
      if (relu && want < 0) want = 0;
      double got = load1(t, y, i);
      if (!close_to(t, got, want)) {
        if (wrong < 3) fprintf(stderr, "  %s c %zu k %zu: got %g want %g\n", TYPE_NAME[t], c, k, got, want);
        wrong++;
      }
    }
  }
  return wrong;
}

static float *floats(size_t n, float lo, float hi) {
  float *v = malloc(n * sizeof(float) + 1);
  for (size_t i = 0; i < n; i++) v[i] = rnd(lo, hi);
  return v;
}

static void test_bn_forward(int t, DropnormLayout l) {
  Tensor T = l == DROPNORM_LAYOUT_NC ? tensor(37, 19, 1, 1, l) : tensor(3, 7, 5, 6, l);
  const size_t n = T.n, c = T.c;
  const float eps = 1e-5f;
  void *x = random_t(t, n, -2.0f, 6.0f), *r = random_t(t, n, -1.0f, 1.0f);
  void *y = alloc_t(t, n), *y2 = alloc_t(t, n);
  float *g = floats(c, 0.5f, 2.0f), *b = floats(c, -1.0f, 1.0f);
  DropnormBnParams params = {.eps = eps, .gamma = g, .beta = b};
  double *mean = malloc(c * sizeof(double)), *var = malloc(c * sizeof(double));
  ref_stats(t, &T, x, mean, var);
  float *sm = calloc(c, 4), *si = calloc(c, 4), *rm = calloc(c, 4), *rv = malloc(c * 4);
  for (size_t k = 0; k < c; k++) rv[k] = 1.0f;
  uint64_t batches = 0;
  DropnormSavedStatsMut saved = {sm, si};
  DropnormRunningStatsMut running = {rm, rv, &batches, DROPNORM_MOMENTUM_PYTORCH, 0.1f};

  /* Training, PyTorch momentum: y, saved statistics, running statistics. */
  OK(batch_norm_train(t, x, n, y, n, T.s, l, &params, DROPNORM_EPILOGUE_NONE, &saved, &running));
  CHECK(check_normalized(t, &T, x, NULL, y, mean, var, g, b, eps, 0) == 0, "%s train layout %u", TYPE_NAME[t], l);
  size_t wrong = 0;
  for (size_t k = 0; k < c; k++) {
    double inv = 1.0 / sqrt(var[k] + eps);
    double unbiased = var[k] * T.per / (T.per - 1);
    wrong += fabs(sm[k] - mean[k]) > 1e-5 * (1 + fabs(mean[k]));
    wrong += fabs(si[k] - inv) > 1e-5 * inv;
    wrong += fabs(rm[k] - 0.1 * mean[k]) > 1e-5 * (1 + fabs(mean[k]));
    wrong += fabs(rv[k] - (0.9 + 0.1 * unbiased)) > 1e-5 * (1 + unbiased);
  }
  CHECK(wrong == 0 && batches == 1, "%s: %zu statistics wrong, batches %llu", TYPE_NAME[t], wrong,
        (unsigned long long)batches);

  /* ONNX convention, NULL batches, ReLU, in place. */
  for (size_t k = 0; k < c; k++) rm[k] = 0.0f, rv[k] = 1.0f;
  DropnormRunningStatsMut onnx = {rm, rv, NULL, DROPNORM_MOMENTUM_ONNX, 0.9f};
  void *buf = copy_t(t, x, n);
  OK(batch_norm_train(t, buf, n, buf, n, T.s, l, &params, DROPNORM_EPILOGUE_RELU, &saved, &onnx));
  CHECK(check_normalized(t, &T, x, NULL, buf, mean, var, g, b, eps, 1) == 0, "%s train relu in place", TYPE_NAME[t]);
  wrong = 0;
  for (size_t k = 0; k < c; k++) wrong += fabs(rv[k] - (0.9 + 0.1 * var[k])) > 1e-5 * (1 + var[k]);
  CHECK(wrong == 0, "%s: ONNX running variance wrong on %zu channels", TYPE_NAME[t], wrong);

  /* Fused add + ReLU, no running statistics. */
  OK(batch_norm_add_relu_train(t, x, n, r, n, y2, n, T.s, l, &params, &saved, NULL));
  CHECK(check_normalized(t, &T, x, r, y2, mean, var, g, b, eps, 1) == 0, "%s add_relu_train", TYPE_NAME[t]);

  /* Split phase: statistics of two halves of the batch (NC, NCHW: split by n), merged, then
     apply: the one-call bits. */
  DropnormChannelStats *st = calloc(c, sizeof *st), *st2 = calloc(c, sizeof *st2);
  size_t n1 = T.s.n / 2, half = n1 * (n / T.s.n);
  DropnormShape s1 = T.s, s2 = T.s;
  s1.n = n1;
  s2.n = T.s.n - n1;
  OK(channel_stats(t, x, half, st, s1, l));
  OK(channel_stats(t, (const char *)x + half * TYPE_SIZE[t], n - half, st2, s2, l));
  OK(dropnorm_channel_stats_merge(st, st2, st, c)); /* accumulate into the first */
  wrong = 0;
  for (size_t k = 0; k < c; k++) {
    wrong += st[k].count != T.per;
    wrong += fabs(st[k].mean - mean[k]) > 1e-6 * (1 + fabs(mean[k]));
    wrong += fabs(st[k].m2 - var[k] * T.per) > 1e-6 * (1 + var[k] * T.per);
  }
  CHECK(wrong == 0, "%s: merged channel statistics wrong on %zu", TYPE_NAME[t], wrong);
  OK(channel_stats(t, x, n, st2, T.s, l));
  OK(batch_norm_apply(t, x, n, y2, n, T.s, l, &params, DROPNORM_EPILOGUE_NONE, st2, &saved, NULL));
  CHECK(same_bytes(y2, y, n * TYPE_SIZE[t]), "%s: split phase differs from one call", TYPE_NAME[t]);
  memcpy(buf, x, n * TYPE_SIZE[t]);
  OK(batch_norm_apply(t, buf, n, buf, n, T.s, l, &params, DROPNORM_EPILOGUE_NONE, st, &saved, &running));
  CHECK(check_normalized(t, &T, x, NULL, buf, mean, var, g, b, eps, 0) == 0, "%s apply in place", TYPE_NAME[t]);
  OK(batch_norm_add_relu_apply(t, x, n, r, n, y2, n, T.s, l, &params, st2, &saved, NULL));
  OK(batch_norm_add_relu_train(t, x, n, r, n, buf, n, T.s, l, &params, &saved, NULL));
  CHECK(same_bytes(y2, buf, n * TYPE_SIZE[t]), "%s: add_relu split phase differs", TYPE_NAME[t]);

  /* Inference with running statistics (and the ReLU epilogue, in place). */
  float *im = floats(c, -1.0f, 1.0f), *iv = floats(c, 0.5f, 3.0f);
  double *dm = malloc(c * sizeof(double)), *dv = malloc(c * sizeof(double));
  for (size_t k = 0; k < c; k++) dm[k] = im[k], dv[k] = iv[k];
  DropnormRunningStats rs = {im, iv};
  OK(batch_norm_infer(t, x, n, y, n, T.s, l, &params, DROPNORM_EPILOGUE_NONE, &rs));
  CHECK(check_normalized(t, &T, x, NULL, y, dm, dv, g, b, eps, 0) == 0, "%s infer", TYPE_NAME[t]);
  memcpy(buf, x, n * TYPE_SIZE[t]);
  OK(batch_norm_infer(t, buf, n, buf, n, T.s, l, &params, DROPNORM_EPILOGUE_RELU, &rs));
  CHECK(check_normalized(t, &T, x, NULL, buf, dm, dv, g, b, eps, 1) == 0, "%s infer relu in place", TYPE_NAME[t]);
  OK(batch_norm_add_relu_infer(t, x, n, r, n, y, n, T.s, l, &params, &rs));
  CHECK(check_normalized(t, &T, x, r, y, dm, dv, g, b, eps, 1) == 0, "%s add_relu_infer", TYPE_NAME[t]);
  /* Without affine parameters: gamma 1, beta 0. */
  DropnormBnParams plain = {.eps = eps};
  float *ones = malloc(c * 4), *zeros = calloc(c, 4);
  for (size_t k = 0; k < c; k++) ones[k] = 1.0f;
  OK(batch_norm_infer(t, x, n, y, n, T.s, l, &plain, DROPNORM_EPILOGUE_NONE, &rs));
  CHECK(check_normalized(t, &T, x, NULL, y, dm, dv, ones, zeros, eps, 0) == 0, "%s infer no affine", TYPE_NAME[t]);

  /* Error paths: outputs (y, saved, running) untouched. */
  size_t bytes = n * TYPE_SIZE[t];
  memset(y2, SENTINEL, bytes);
  memset(sm, SENTINEL, c * 4);
  memset(si, SENTINEL, c * 4);
  memset(rm, SENTINEL, c * 4);
  memset(rv, SENTINEL, c * 4);
  batches = 0;
  void *outs[5] = {y2, sm, si, rm, rv};
  size_t sizes[5] = {bytes, c * 4, c * 4, c * 4, c * 4};
  expect_refused("train x_len", batch_norm_train(t, x, n - 1, y2, n - 1, T.s, l, &params, 0, &saved, &running),
                 DROPNORM_ERR_LENGTH_MISMATCH, "x", outs, sizes, 5);
  expect_refused("train NULL saved", batch_norm_train(t, x, n, y2, n, T.s, l, &params, 0, NULL, &running),
                 DROPNORM_ERR_NULL_POINTER, "saved", outs, sizes, 5);
  expect_refused("train epilogue", batch_norm_train(t, x, n, y2, n, T.s, l, &params, 9, &saved, &running),
                 DROPNORM_ERR_INVALID_ENUM, "epilogue", outs, sizes, 5);
  DropnormRunningStatsMut bad_m = running;
  bad_m.momentum = -0.5f;
  expect_refused("train momentum", batch_norm_train(t, x, n, y2, n, T.s, l, &params, 0, &saved, &bad_m),
                 DROPNORM_ERR_INVALID_MOMENTUM, "momentum", outs, sizes, 5);
  bad_m = running;
  bad_m.momentum_kind = 3;
  expect_refused("train momentum kind", batch_norm_train(t, x, n, y2, n, T.s, l, &params, 0, &saved, &bad_m),
                 DROPNORM_ERR_INVALID_ENUM, "momentum_kind", outs, sizes, 5);
  bad_m = running;
  bad_m.batches = NULL;
  bad_m.momentum_kind = DROPNORM_MOMENTUM_PYTORCH_CUMULATIVE;
  expect_refused("train cumulative without batches", batch_norm_train(t, x, n, y2, n, T.s, l, &params, 0, &saved, &bad_m),
                 DROPNORM_ERR_NULL_POINTER, "batches", outs, sizes, 5);
  DropnormSavedStatsMut aliased = {sm, sm};
  expect_refused("train saved aliased", batch_norm_train(t, x, n, y2, n, T.s, l, &params, 0, &aliased, &running),
                 DROPNORM_ERR_ALIASED, "saved", outs, sizes, 5);
  DropnormBnParams bad_eps = params;
  bad_eps.eps = -1.0f;
  expect_refused("train eps", batch_norm_train(t, x, n, y2, n, T.s, l, &bad_eps, 0, &saved, &running),
                 DROPNORM_ERR_INVALID_EPS, "eps", outs, sizes, 5);
  DropnormShape one_value = {1, c, 1, 1};
  expect_refused("train one value per channel",
                 batch_norm_train(t, x, c, y2, c, one_value, DROPNORM_LAYOUT_NC, &params, 0, &saved, &running),
                 DROPNORM_ERR_TOO_FEW_VALUES, NULL, outs, sizes, 5);
  CHECK(batches == 0, "a refused call counted a batch");
  expect_refused("add_relu_train r_len",
                 batch_norm_add_relu_train(t, x, n, r, n - 2, y2, n, T.s, l, &params, &saved, &running),
                 DROPNORM_ERR_LENGTH_MISMATCH, "r", outs, sizes, 5);
  expect_refused("apply NULL stats",
                 batch_norm_apply(t, x, n, y2, n, T.s, l, &params, 0, NULL, &saved, &running),
                 DROPNORM_ERR_NULL_POINTER, "stats", outs, sizes, 5);
  DropnormChannelStats *corrupt = calloc(c, sizeof *corrupt);
  expect_refused("apply corrupt stats",
                 batch_norm_apply(t, x, n, y2, n, T.s, l, &params, 0, corrupt, &saved, &running),
                 DROPNORM_ERR_INVALID_STATS, "stats", outs, sizes, 5);
  expect_refused("add_relu_apply y aliases r",
                 batch_norm_add_relu_apply(t, x, n, y2, n, y2, n, T.s, l, &params, st, &saved, &running),
                 DROPNORM_ERR_ALIASED, "y", outs, sizes, 5);
  float keep = iv[c / 2];
  iv[c / 2] = -1.0f;
  expect_refused("infer negative running var",
                 batch_norm_infer(t, x, n, y2, n, T.s, l, &params, 0, &rs), DROPNORM_ERR_INVALID_RUNNING_VAR,
                 "var", outs, sizes, 1);
  iv[c / 2] = keep;
  DropnormShape overflow = {SIZE_MAX / 2, 3, 1, 1};
  expect_refused("infer shape overflow",
                 batch_norm_infer(t, x, n, y2, n, overflow, DROPNORM_LAYOUT_NC, &params, 0, &rs),
                 DROPNORM_ERR_SHAPE_OVERFLOW, NULL, outs, sizes, 1);
  expect_refused("add_relu_infer NULL r",
                 batch_norm_add_relu_infer(t, x, n, NULL, n, y2, n, T.s, l, &params, &rs),
                 DROPNORM_ERR_NULL_POINTER, "r", outs, sizes, 1);
  DropnormChannelStats *cs = malloc(c * sizeof *cs);
  memset(cs, SENTINEL, c * sizeof *cs);
  void *cs_out[1] = {cs};
  size_t cs_size[1] = {c * sizeof *cs};
  expect_refused("channel_stats layout", channel_stats(t, x, n, cs, T.s, 3), DROPNORM_ERR_INVALID_ENUM,
                 "layout", cs_out, cs_size, 1);
  expect_refused("channel_stats x_len", channel_stats(t, x, n + 1, cs, T.s, l), DROPNORM_ERR_LENGTH_MISMATCH,
                 "x", cs_out, cs_size, 1);

  free(x); free(r); free(y); free(y2); free(g); free(b); free(mean); free(var);
  free(sm); free(si); free(rm); free(rv); free(buf); free(st); free(st2); free(im); free(iv);
  free(dm); free(dv); free(ones); free(zeros); free(corrupt); free(cs);
}

/* dx, dgamma, dbeta of training-mode batch norm (dy masked by y > 0 when y is given). */
static void ref_backward(int t, const Tensor *T, const void *x, const void *dy, const void *y,
                         const float *sm, const float *si, const float *g, double *dx, double *dg,
                         double *db) {
  for (size_t c = 0; c < T->c; c++) {
    double sdy = 0, sdyx = 0;
    for (size_t k = 0; k < T->per; k++) {
      size_t i = index_of(T, c, k);
      double d = (y && !(load1(t, y, i) > 0)) ? 0 : load1(t, dy, i);
      sdy += d;
      sdyx += d * (load1(t, x, i) - sm[c]);
    }
    db[c] = sdy;
    dg[c] = sdyx * si[c];
    for (size_t k = 0; k < T->per; k++) {
      size_t i = index_of(T, c, k);
      double d = (y && !(load1(t, y, i) > 0)) ? 0 : load1(t, dy, i);
      double xhat = (load1(t, x, i) - sm[c]) * si[c];
      dx[i] = g[c] * si[c] * (d - sdy / T->per - xhat * dg[c] / T->per);
    }
  }
}

static size_t check_grads(int t, const Tensor *T, const void *dx, const float *dg, const float *db,
                          const double *rdx, const double *rdg, const double *rdb) {
  size_t wrong = 0;
  for (size_t i = 0; i < T->n; i++) wrong += !close_to(t, load1(t, dx, i), rdx[i]);
  for (size_t c = 0; c < T->c; c++) {
    wrong += fabs(dg[c] - rdg[c]) > 1e-4 * (T->per + fabs(rdg[c]));
    wrong += fabs(db[c] - rdb[c]) > 1e-4 * (T->per + fabs(rdb[c]));
  }
  return wrong;
}

static void test_bn_backward(int t, DropnormLayout l) {
  Tensor T = l == DROPNORM_LAYOUT_NC ? tensor(41, 13, 1, 1, l) : tensor(2, 9, 4, 7, l);
  const size_t n = T.n, c = T.c;
  void *x = random_t(t, n, -1.0f, 3.0f), *dy = random_t(t, n, -1.0f, 1.0f), *r = random_t(t, n, -0.5f, 0.5f);
  void *y = alloc_t(t, n), *dx = alloc_t(t, n), *dx2 = alloc_t(t, n), *dr = alloc_t(t, n);
  float *g = floats(c, 0.5f, 2.0f), *b = floats(c, -0.5f, 0.5f);
  float *sm = calloc(c, 4), *si = calloc(c, 4), *dg = calloc(c, 4), *db = calloc(c, 4);
  float *dg2 = calloc(c, 4), *db2 = calloc(c, 4);
  DropnormBnParams params = {.eps = 1e-5f, .gamma = g, .beta = b};
  DropnormSavedStatsMut saved_out = {sm, si};
  DropnormSavedStats saved = {sm, si};
  double *rdx = malloc(n * sizeof(double)), *rdg = malloc(c * sizeof(double)), *rdb = malloc(c * sizeof(double));

  /* Plain: y = bn(x); the gradient needs no y. */
  OK(batch_norm_train(t, x, n, y, n, T.s, l, &params, DROPNORM_EPILOGUE_NONE, &saved_out, NULL));
  OK(batch_norm_backward(t, x, n, dy, n, NULL, 0, dx, n, dg, db, T.s, l, &params, &saved));
  ref_backward(t, &T, x, dy, NULL, sm, si, g, rdx, rdg, rdb);
  CHECK(check_grads(t, &T, dx, dg, db, rdx, rdg, rdb) == 0, "%s backward layout %u", TYPE_NAME[t], l);

  /* Split phase: sums of two halves merged, then apply: the one-call bits. */
  DropnormGradSums *gs = calloc(c, sizeof *gs), *gs2 = calloc(c, sizeof *gs2);
  size_t n1 = T.s.n / 2, half = n1 * (n / T.s.n);
  DropnormShape s1 = T.s, s2 = T.s;
  s1.n = n1;
  s2.n = T.s.n - n1;
  size_t es = TYPE_SIZE[t];
  OK(batch_norm_backward_sums(t, x, half, dy, half, NULL, 0, gs, s1, l, &saved));
  OK(batch_norm_backward_sums(t, (const char *)x + half * es, n - half, (const char *)dy + half * es,
                              n - half, NULL, 0, gs2, s2, l, &saved));
  OK(dropnorm_grad_sums_merge(gs, gs2, gs2, c)); /* accumulate into the second */
  size_t wrong = 0;
  for (size_t k = 0; k < c; k++) {
    wrong += gs2[k].count != T.per;
    wrong += fabs(gs2[k].dy - rdb[k]) > 1e-6 * (T.per + fabs(rdb[k]));
    wrong += fabs(gs2[k].dy_xmu * si[k] - rdg[k]) > 1e-5 * (T.per + fabs(rdg[k]));
  }
  CHECK(wrong == 0, "%s: merged grad sums wrong on %zu", TYPE_NAME[t], wrong);
  OK(batch_norm_backward_sums(t, x, n, dy, n, NULL, 0, gs, T.s, l, &saved));
  OK(batch_norm_backward_apply(t, x, n, dy, n, NULL, 0, dx2, n, dg2, db2, T.s, l, &params, &saved, gs));
  CHECK(same_bytes(dx2, dx, n * es) && same_bytes(dg2, dg, c * 4) && same_bytes(db2, db, c * 4),
        "%s: split-phase backward differs from one call", TYPE_NAME[t]);

  /* Through a fused ReLU: y given. */
  OK(batch_norm_train(t, x, n, y, n, T.s, l, &params, DROPNORM_EPILOGUE_RELU, &saved_out, NULL));
  OK(batch_norm_backward(t, x, n, dy, n, y, n, dx, n, dg, db, T.s, l, &params, &saved));
  ref_backward(t, &T, x, dy, y, sm, si, g, rdx, rdg, rdb);
  CHECK(check_grads(t, &T, dx, dg, db, rdx, rdg, rdb) == 0, "%s backward relu", TYPE_NAME[t]);

  /* Through add + ReLU: dr is dy masked by y > 0. */
  OK(batch_norm_add_relu_train(t, x, n, r, n, y, n, T.s, l, &params, &saved_out, NULL));
  OK(batch_norm_add_relu_backward(t, x, n, dy, n, y, n, dx, n, dr, n, dg, db, T.s, l, &params, &saved));
  ref_backward(t, &T, x, dy, y, sm, si, g, rdx, rdg, rdb);
  CHECK(check_grads(t, &T, dx, dg, db, rdx, rdg, rdb) == 0, "%s add_relu backward", TYPE_NAME[t]);
  wrong = 0;
  for (size_t i = 0; i < n; i++) wrong += load1(t, dr, i) != (load1(t, y, i) > 0 ? load1(t, dy, i) : 0.0f);
  CHECK(wrong == 0, "%s: dr wrong on %zu", TYPE_NAME[t], wrong);

  /* Eval mode: the running statistics are constants. */
  float *im = floats(c, -1.0f, 1.0f), *iv = floats(c, 0.5f, 3.0f);
  DropnormRunningStats rs = {im, iv};
  OK(batch_norm_backward_eval(t, x, n, dy, n, NULL, 0, dx, n, dg, db, T.s, l, &params, &rs));
  wrong = 0;
  for (size_t ch = 0; ch < c; ch++) {
    double inv = 1.0 / sqrt((double)iv[ch] + 1e-5f), sdy = 0, sdyx = 0;
    for (size_t k = 0; k < T.per; k++) {
      size_t i = index_of(&T, ch, k);
      double d = load1(t, dy, i);
      sdy += d;
      sdyx += d * (load1(t, x, i) - im[ch]) * inv;
      wrong += !close_to(t, load1(t, dx, i), d * g[ch] * inv);
    }
    wrong += fabs(db[ch] - sdy) > 1e-4 * (T.per + fabs(sdy));
    wrong += fabs(dg[ch] - sdyx) > 1e-4 * (T.per + fabs(sdyx));
  }
  CHECK(wrong == 0, "%s: eval backward wrong on %zu", TYPE_NAME[t], wrong);

  /* Error paths: dx, dr, dgamma, dbeta untouched. */
  size_t bytes = n * es;
  memset(dx2, SENTINEL, bytes);
  memset(dr, SENTINEL, bytes);
  memset(dg2, SENTINEL, c * 4);
  memset(db2, SENTINEL, c * 4);
  void *outs[4] = {dx2, dg2, db2, dr};
  size_t sizes[4] = {bytes, c * 4, c * 4, bytes};
  expect_refused("backward dx_len", batch_norm_backward(t, x, n, dy, n, NULL, 0, dx2, n - 1, dg2, db2, T.s, l, &params, &saved),
                 DROPNORM_ERR_LENGTH_MISMATCH, "dx", outs, sizes, 3);
  expect_refused("backward NULL y with a length", batch_norm_backward(t, x, n, dy, n, NULL, n, dx2, n, dg2, db2, T.s, l, &params, &saved),
                 DROPNORM_ERR_NULL_POINTER, "y", outs, sizes, 3);
  expect_refused("backward NULL dgamma", batch_norm_backward(t, x, n, dy, n, NULL, 0, dx2, n, NULL, db2, T.s, l, &params, &saved),
                 DROPNORM_ERR_NULL_POINTER, "dgamma", outs, sizes, 3);
  expect_refused("backward dgamma = dbeta", batch_norm_backward(t, x, n, dy, n, NULL, 0, dx2, n, dg2, dg2, T.s, l, &params, &saved),
                 DROPNORM_ERR_ALIASED, "dgamma", outs, sizes, 3);
  expect_refused("backward dx = dy", batch_norm_backward(t, x, n, dx2, n, NULL, 0, dx2, n, dg2, db2, T.s, l, &params, &saved),
                 DROPNORM_ERR_ALIASED, "dx", outs, sizes + 1, 0);
  /* y is required here: NULL with length 0 is an empty y, the wrong length. */
  expect_refused("add_relu_backward without y", batch_norm_add_relu_backward(t, x, n, dy, n, NULL, 0, dx2, n, dr, n, dg2, db2, T.s, l, &params, &saved),
                 DROPNORM_ERR_LENGTH_MISMATCH, "y", outs, sizes, 4);
  expect_refused("add_relu_backward dr_len", batch_norm_add_relu_backward(t, x, n, dy, n, y, n, dx2, n, dr, 1, dg2, db2, T.s, l, &params, &saved),
                 DROPNORM_ERR_LENGTH_MISMATCH, "dr", outs, sizes, 4);
  expect_refused("backward_eval NULL stats", batch_norm_backward_eval(t, x, n, dy, n, NULL, 0, dx2, n, dg2, db2, T.s, l, &params, NULL),
                 DROPNORM_ERR_NULL_POINTER, "stats", outs, sizes, 3);
  DropnormGradSums *gsc = malloc(c * sizeof *gsc);
  memset(gsc, SENTINEL, c * sizeof *gsc);
  void *gs_out[1] = {gsc};
  size_t gs_size[1] = {c * sizeof *gsc};
  expect_refused("backward_sums dy_len", batch_norm_backward_sums(t, x, n, dy, n - 1, NULL, 0, gsc, T.s, l, &saved),
                 DROPNORM_ERR_LENGTH_MISMATCH, "dy", gs_out, gs_size, 1);
  expect_refused("backward_apply NULL sums", batch_norm_backward_apply(t, x, n, dy, n, NULL, 0, dx2, n, dg2, db2, T.s, l, &params, &saved, NULL),
                 DROPNORM_ERR_NULL_POINTER, "sums", outs, sizes, 3);

  free(x); free(dy); free(r); free(y); free(dx); free(dx2); free(dr); free(g); free(b);
  free(sm); free(si); free(dg); free(db); free(dg2); free(db2); free(rdx); free(rdg); free(rdb);
  free(gs); free(gs2); free(im); free(iv); free(gsc);
}

/* ---- the functions without an element type ---- */

static void test_fold_and_merge(void) {
  const size_t c = 6, k = 10;
  float *g = floats(c, 0.5f, 2.0f), *b = floats(c, -1.0f, 1.0f), *m = floats(c, -1.0f, 1.0f);
  float *v = floats(c, 0.1f, 3.0f), *a = calloc(c, 4), *sh = calloc(c, 4);
  float *w = floats(c * k, -1.0f, 1.0f), *bias = floats(c, -1.0f, 1.0f);
  float *w0 = malloc(c * k * 4), *bias0 = malloc(c * 4);
  memcpy(w0, w, c * k * 4);
  memcpy(bias0, bias, c * 4);
  DropnormBnParams params = {.eps = 1e-3f, .gamma = g, .beta = b};
  DropnormRunningStats rs = {m, v};
  OK(dropnorm_fold(a, sh, c, &params, &rs));
  size_t wrong = 0;
  for (size_t i = 0; i < c; i++) {
    double ra = g[i] / sqrt((double)v[i] + 1e-3f), rb = b[i] - m[i] * ra;
    wrong += fabs(a[i] - ra) > 1e-6 * fabs(ra) || fabs(sh[i] - rb) > 1e-5 * (1 + fabs(rb));
  }
  CHECK(wrong == 0, "fold wrong on %zu channels", wrong);
  OK(dropnorm_fold_into(w, c * k, bias, c, &params, &rs));
  wrong = 0;
  for (size_t o = 0; o < c; o++) {
    double ra = g[o] / sqrt((double)v[o] + 1e-3f), rb = b[o] - m[o] * ra;
    for (size_t j = 0; j < k; j++) wrong += fabs(w[o * k + j] - w0[o * k + j] * ra) > 1e-5;
    wrong += fabs(bias[o] - (bias0[o] * ra + rb)) > 1e-5 * (1 + fabs(rb));
  }
  CHECK(wrong == 0, "fold_into wrong on %zu values", wrong);

  /* Refused: nothing written. */
  memset(w, SENTINEL, c * k * 4);
  memset(bias, SENTINEL, c * 4);
  memset(a, SENTINEL, c * 4);
  void *outs[3] = {w, bias, a};
  size_t sizes[3] = {c * k * 4, c * 4, c * 4};
  expect_refused("fold_into weights_len", dropnorm_fold_into(w, c * k - 1, bias, c, &params, &rs),
                 DROPNORM_ERR_INVALID_SHAPE, "weights", outs, sizes, 2);
  expect_refused("fold_into NULL stats", dropnorm_fold_into(w, c * k, bias, c, &params, NULL),
                 DROPNORM_ERR_NULL_POINTER, "stats", outs, sizes, 2);
  v[2] = NAN;
  expect_refused("fold NaN var", dropnorm_fold(a, sh, c, &params, &rs), DROPNORM_ERR_INVALID_RUNNING_VAR,
                 "var", outs + 2, sizes + 2, 1);
  expect_refused("fold a = b", dropnorm_fold(a, a, c, &params, &rs), DROPNORM_ERR_ALIASED, "a", outs + 2,
                 sizes + 2, 1);

  /* Merging: exact counts, Chan's formula; overflow refused with nothing written. */
  DropnormChannelStats s1[2] = {{2, 1.0, 2.0}, {1, 5.0, 0.0}}, s2[2] = {{2, 3.0, 2.0}, {3, 5.0, 1.0}};
  DropnormChannelStats out[2];
  OK(dropnorm_channel_stats_merge(s1, s2, out, 2));
  CHECK(out[0].count == 4 && out[0].mean == 2.0 && out[0].m2 == 8.0, "merge: %llu %g %g",
        (unsigned long long)out[0].count, out[0].mean, out[0].m2);
  CHECK(out[1].count == 4 && out[1].mean == 5.0 && out[1].m2 == 1.0, "merge ch1");
  s2[1].count = UINT64_MAX;
  memset(out, SENTINEL, sizeof out);
  void *mo[1] = {out};
  size_t ms[1] = {sizeof out};
  expect_refused("merge overflow", dropnorm_channel_stats_merge(s1, s2, out, 2), DROPNORM_ERR_COUNT_OVERFLOW,
                 NULL, mo, ms, 1);
  DropnormChannelStats three[3] = {{1, 1.0, 0.0}, {1, 2.0, 0.0}, {1, 3.0, 0.0}};
  expect_refused("merge partial overlap", dropnorm_channel_stats_merge(three, s1, three + 1, 2),
                 DROPNORM_ERR_ALIASED, "out", NULL, NULL, 0);
  CHECK(three[1].mean == 2.0 && three[2].mean == 3.0, "a refused merge wrote");
  DropnormGradSums g1[1] = {{2, 1.5, -1.0}}, g2[1] = {{3, 2.0, 0.5}}, go[1];
  OK(dropnorm_grad_sums_merge(g1, g2, go, 1));
  CHECK(go[0].count == 5 && go[0].dy == 3.5 && go[0].dy_xmu == -0.5, "grad sums merge");
  OK(dropnorm_grad_sums_merge(NULL, NULL, NULL, 0));
  free(g); free(b); free(m); free(v); free(a); free(sh); free(w); free(bias); free(w0); free(bias0);
}

static void test_settings(void) {
  char expect[32];
  snprintf(expect, sizeof expect, "%d.%d.%d", DROPNORM_VERSION_MAJOR, DROPNORM_VERSION_MINOR,
           DROPNORM_VERSION_PATCH);
  CHECK(strcmp(dropnorm_version(), expect) == 0, "version %s, header %s", dropnorm_version(), expect);
  CHECK(dropnorm_version_number() == DROPNORM_VERSION_NUMBER, "version number");

  /* Every available ISA can be forced, gives the same dropout bits; AUTO goes back. */
  const size_t n = 1000;
  void *x = random_t(T_F32, n, -1.0f, 1.0f), *y0 = alloc_t(T_F32, n), *y = alloc_t(T_F32, n);
  DropnormDropoutParams p = {.p = 0.25f, .seed = 3};
  OK(dropout(T_F32, x, n, y0, n, &p));
  CHECK(dropnorm_isa_available(DROPNORM_ISA_PORTABLE) == 1, "portable");
  CHECK(dropnorm_isa_available(99) == 0, "isa 99");
  for (DropnormIsa isa = DROPNORM_ISA_PORTABLE; isa <= DROPNORM_ISA_AVX512; isa++) {
    if (!dropnorm_isa_available(isa)) {
      CHECK(dropnorm_set_isa(isa) == DROPNORM_ERR_ISA_UNAVAILABLE, "unavailable %s", dropnorm_isa_name(isa));
      continue;
    }
    OK(dropnorm_set_isa(isa));
    CHECK(dropnorm_active_isa() == isa, "active %s", dropnorm_isa_name(dropnorm_active_isa()));
    OK(dropout(T_F32, x, n, y, n, &p));
    CHECK(same_bytes(y, y0, n * 4), "dropout on %s differs", dropnorm_isa_name(isa));
    printf("  isa %s: ok\n", dropnorm_isa_name(isa));
  }
  CHECK(dropnorm_set_isa(17) == DROPNORM_ERR_INVALID_ENUM, "isa 17");
  OK(dropnorm_set_isa(DROPNORM_ISA_AUTO));
  CHECK(strcmp(dropnorm_isa_name(DROPNORM_ISA_AUTO), "auto") == 0 && strcmp(dropnorm_isa_name(42), "unknown") == 0,
        "isa names");

  /* The same bits on the caller's thread, rayon's pool and a pool of 3 (above the size at
     which a pool is used). */
  Tensor T = tensor(8, 16, 48, 48, DROPNORM_LAYOUT_NCHW); /* 294912 elements */
  void *bx = random_t(T_F32, T.n, -1.0f, 2.0f), *by[3];
  float sm[16], si[16];
  DropnormSavedStatsMut saved = {sm, si};
  DropnormBnParams bp = {.eps = 1e-5f};
  size_t settings[3] = {1, 0, 3};
  for (int k = 0; k < 3; k++) {
    OK(dropnorm_set_threads(settings[k]));
    by[k] = alloc_t(T_F32, T.n);
    OK(batch_norm_train(T_F32, bx, T.n, by[k], T.n, T.s, T.l, &bp, 0, &saved, NULL));
    CHECK(same_bytes(by[k], by[0], T.n * 4), "threads %zu differ", settings[k]);
  }
  CHECK(dropnorm_threads() == 3, "threads %zu", dropnorm_threads());
  OK(dropnorm_set_threads(0));
  for (int k = 0; k < 3; k++) free(by[k]);

  /* The message: a copy cut at the buffer size, returning the full length. */
  dropout(T_F32, NULL, 5, y, 5, &p);
  const char *msg = dropnorm_last_error();
  size_t len = strlen(msg);
  char small[8];
  CHECK(dropnorm_last_error_copy(small, sizeof small) == len && strlen(small) == 7, "copy cut");
  CHECK(strncmp(small, msg, 7) == 0, "copy text");
  CHECK(dropnorm_last_error_copy(NULL, 0) == len, "copy length");
  OK(dropout(T_F32, x, n, y, n, &p));
  CHECK(strcmp(dropnorm_last_error(), msg) == 0, "a success changed the message");
  CHECK(strcmp(dropnorm_status_name(DROPNORM_ERR_ALIASED), "DROPNORM_ERR_ALIASED") == 0, "status name");
  CHECK(strcmp(dropnorm_status_name(-3), "unknown status") == 0, "unknown status name");
  free(x); free(y0); free(y); free(bx);
}

int main(void) {
  printf("dropnorm %s (header %d.%d.%d), isa %s\n", dropnorm_version(), DROPNORM_VERSION_MAJOR,
         DROPNORM_VERSION_MINOR, DROPNORM_VERSION_PATCH, dropnorm_isa_name(dropnorm_active_isa()));
  test_settings();
  for (int t = 0; t < T_COUNT; t++) {
    test_dropout(t);
    test_dropout_channels(t);
    for (DropnormLayout l = DROPNORM_LAYOUT_NC; l <= DROPNORM_LAYOUT_NHWC; l++) {
      test_bn_forward(t, l);
      test_bn_backward(t, l);
    }
    printf("  %s: done\n", TYPE_NAME[t]);
  }
  test_fold_and_merge();
  printf("%d checks, %d failed\n", checks, failures);
  return failures != 0;
}
