// A toy inference engine embedding dropnorm through its C ABI, the way a C++ runtime would:
//
//   load time: conv1 -> bn1 is folded into conv1's weights and bias (dropnorm_fold_into),
//              and the bn1 node deleted;
//   run time:  a ResNet block tail, y = relu(bn2(conv2(h)) + x), on NHWC activations stored
//              in bf16, with bn2 + add + ReLU in one fused pass
//              (dropnorm_batch_norm_add_relu_infer_bf16).
//
// Each result is checked against the unfolded, unfused computation in double; the program
// exits non-zero if one is off. Built and run by capi/test-c.sh (CI).
#include <dropnorm.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// A dropnorm error as a C++ exception carrying the library's message.
void check(DropnormStatus status, const char *what) {
  if (status != DROPNORM_OK) {
    throw std::runtime_error(std::string(what) + ": " + dropnorm_status_name(status) + ": " +
                             dropnorm_last_error());
  }
}

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (no NaN here)
  return static_cast<std::uint16_t>(u >> 16);
}

float from_bf16(std::uint16_t h) {
  std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct BatchNorm {
  std::vector<float> gamma, beta, mean, var;
  float eps = 1e-5f;
};

// A 3x3 convolution, stride 1, padding 1, NHWC activations, OIHW weights (output-channel
// major: what dropnorm_fold_into expects).
struct Conv {
  int cin, cout;
  std::vector<float> weights;  // cout * cin * 3 * 3
  std::vector<float> bias;     // cout

  void run(const std::vector<float> &x, std::vector<float> &y, int n, int h, int w) const {
    y.assign(static_cast<size_t>(n) * h * w * cout, 0.0f);
    for (int b = 0; b < n; b++)
      for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++)
          for (int o = 0; o < cout; o++) {
            double acc = bias[o];
            for (int di = -1; di <= 1; di++)
              for (int dj = -1; dj <= 1; dj++) {
                int ii = i + di, jj = j + dj;
                if (ii < 0 || jj < 0 || ii >= h || jj >= w) continue;
                for (int c = 0; c < cin; c++)
                  acc += x[((static_cast<size_t>(b) * h + ii) * w + jj) * cin + c] *
                         weights[((static_cast<size_t>(o) * cin + c) * 3 + di + 1) * 3 + dj + 1];
              }
            y[((static_cast<size_t>(b) * h + i) * w + j) * cout + o] = static_cast<float>(acc);
          }
  }
};

float pseudo(unsigned &state, float lo, float hi) {
  state = state * 1664525u + 1013904223u;
  return lo + (hi - lo) * static_cast<float>(state >> 8) / 16777216.0f;
}

std::vector<float> random(unsigned &state, size_t n, float lo, float hi) {
  std::vector<float> v(n);
  for (auto &e : v) e = pseudo(state, lo, hi);
  return v;
}

BatchNorm random_bn(unsigned &state, int c) {
  return BatchNorm{random(state, c, 0.5f, 1.5f), random(state, c, -0.2f, 0.2f),
                   random(state, c, -0.5f, 0.5f), random(state, c, 0.5f, 2.0f), 1e-5f};
}

}  // namespace

int main() {
  if (dropnorm_version_number() != DROPNORM_VERSION_NUMBER) {
    std::fprintf(stderr, "header %d and library %u differ\n", DROPNORM_VERSION_NUMBER,
                 dropnorm_version_number());
    return 1;
  }
  const int n = 2, h = 6, w = 5, c = 8;
  unsigned state = 12345;
  Conv conv1{c, c, random(state, c * c * 9, -0.2f, 0.2f), random(state, c, -0.1f, 0.1f)};
  Conv conv2{c, c, random(state, c * c * 9, -0.2f, 0.2f), random(state, c, -0.1f, 0.1f)};
  BatchNorm bn1 = random_bn(state, c), bn2 = random_bn(state, c);
  const Conv conv1_unfolded = conv1;

  // ---- load time: fold bn1 into conv1, delete the node ----
  DropnormBnParams p1{bn1.eps, bn1.gamma.data(), bn1.beta.data()};
  DropnormRunningStats s1{bn1.mean.data(), bn1.var.data()};
  check(dropnorm_fold_into(conv1.weights.data(), conv1.weights.size(), conv1.bias.data(),
                           static_cast<size_t>(c), &p1, &s1),
        "fold bn1 into conv1");

  // ---- run time ----
  const size_t elems = static_cast<size_t>(n) * h * w * c;
  std::vector<float> input = random(state, elems, -1.0f, 1.0f);
  std::vector<float> h1, h2;
  conv1.run(input, h1, n, h, w);  // conv1 with bn1 folded in
  for (auto &v : h1) v = v > 0 ? v : 0;
  conv2.run(h1, h2, n, h, w);
  // Activations stored in bf16: conv2's output and the block input (the residual).
  std::vector<std::uint16_t> x_bf(elems), r_bf(elems), y_bf(elems);
  for (size_t i = 0; i < elems; i++) x_bf[i] = to_bf16(h2[i]), r_bf[i] = to_bf16(input[i]);

  DropnormShape shape{static_cast<size_t>(n), static_cast<size_t>(c), static_cast<size_t>(h),
                      static_cast<size_t>(w)};
  DropnormBnParams p2{bn2.eps, bn2.gamma.data(), bn2.beta.data()};
  DropnormRunningStats s2{bn2.mean.data(), bn2.var.data()};
  check(dropnorm_batch_norm_add_relu_infer_bf16(x_bf.data(), elems, r_bf.data(), elems,
                                                y_bf.data(), elems, shape, DROPNORM_LAYOUT_NHWC,
                                                &p2, &s2),
        "bn2 + add + relu");

  // ---- the same without folding or fusing, in double ----
  int bad = 0;
  std::vector<float> ref1;
  conv1_unfolded.run(input, ref1, n, h, w);
  for (size_t i = 0; i < elems; i++) {
    int ch = static_cast<int>(i % c);
    double bn = bn1.gamma[ch] * (ref1[i] - bn1.mean[ch]) / std::sqrt(bn1.var[ch] + bn1.eps) +
                bn1.beta[ch];
    // h1 is conv1 with bn1 folded in, before the ReLU was applied above: recompute it.
    if (std::fabs((h1[i] > 0 ? h1[i] : 0) - (bn > 0 ? bn : 0)) > 1e-4 * (1 + std::fabs(bn))) bad++;
  }
  for (size_t i = 0; i < elems; i++) {
    int ch = static_cast<int>(i % c);
    double x = from_bf16(x_bf[i]), r = from_bf16(r_bf[i]);
    double want = bn2.gamma[ch] * (x - bn2.mean[ch]) / std::sqrt(bn2.var[ch] + bn2.eps) +
                  bn2.beta[ch] + r;
    want = want > 0 ? want : 0;
    double got = from_bf16(y_bf[i]);
    if (std::fabs(got - want) > std::fabs(want) / 256 + 1e-4) bad++;
  }

  // Bad input is an error status with the output untouched, never a crash.
  std::vector<std::uint16_t> before = y_bf;
  DropnormStatus st = dropnorm_batch_norm_add_relu_infer_bf16(
      x_bf.data(), elems, r_bf.data(), elems - 1, y_bf.data(), elems, shape, DROPNORM_LAYOUT_NHWC,
      &p2, &s2);
  if (st != DROPNORM_ERR_LENGTH_MISMATCH || before != y_bf) bad++;
  try {
    check(st, "a short residual");
  } catch (const std::exception &e) {
    std::printf("refused as expected: %s\n", e.what());
  }

  std::printf("engine: dropnorm %s, isa %s, %zu bf16 activations, %d mismatches\n",
              dropnorm_version(), dropnorm_isa_name(dropnorm_active_isa()), elems, bad);
  return bad != 0;
}
