// The CUDA backends ("cuda": bf16 mixed precision, "cuda-fp32": fp32 throughout) against the CPU
// backend, kernel by kernel on awkward sizes (nothing a multiple of 32, 64 or 128), then a whole
// GPT-2 step. Every test skips, saying why, on machines without a usable GPU or in builds without
// the CUDA toolkit; the one test that runs everywhere checks that message.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "expect_error.h"
#include "model/gpt.h"
#include "random_data.h"
#include "relative_error.h"
#include "training_run.h"

namespace switchyard {
namespace {

using backend::Backend;

// Why `device` cannot run here, or "" when it can.
std::string unavailable_reason(const std::string& device) {
  for (const backend::BackendInfo& info : backend::list_backends()) {
    if (info.name == device) return info.available ? "" : info.detail;
  }
  return "not registered";
}

TEST(CudaBackend, SaysWhyItCannotRunWhereThereIsNoGpu) {
  for (const std::string device : {"cuda", "cuda-fp32"}) {
    const std::string reason = unavailable_reason(device);
    if (reason.empty()) GTEST_SKIP() << device << " can run here";
    expect_error([&] { backend::create_backend(device); }, {device});
    EXPECT_NE(error_of([&] { backend::create_backend(device); }).find(reason), std::string::npos);
  }
}

// One tensor on a backend: fp32 tensors (parameters, gradients, statistics, losses) move with
// copy_to_*, activation tensors with activations_to/from_host, which convert on bf16 devices.
class Tensor {
 public:
  enum Kind { kFp32, kActivation };
  Tensor(Backend& backend, Kind kind, const std::vector<float>& values)
      : backend_(backend), kind_(kind), count_(values.size()) {
    ptr_ = static_cast<float*>(backend.allocate(bytes()));
    write(values);
  }
  Tensor(Backend& backend, Kind kind, size_t count, float fill = 0.0f)
      : Tensor(backend, kind, std::vector<float>(count, fill)) {}
  Tensor(const Tensor&) = delete;
  ~Tensor() { backend_.release(ptr_); }

  float* get() const { return ptr_; }
  void write(const std::vector<float>& values) {
    if (kind_ == kFp32) {
      backend_.copy_to_device(ptr_, values.data(), values.size() * sizeof(float));
    } else {
      backend_.activations_from_host(ptr_, values.data(), values.size());
    }
  }
  std::vector<float> read() const {
    std::vector<float> values(count_);
    if (kind_ == kFp32) {
      backend_.copy_to_host(values.data(), ptr_, count_ * sizeof(float));
    } else {
      backend_.activations_to_host(values.data(), ptr_, count_);
    }
    return values;
  }

 private:
  size_t bytes() const {
    return std::max<size_t>(1, count_ * (kind_ == kFp32 ? sizeof(float) : backend_.activation_bytes()));
  }
  Backend& backend_;
  Kind kind_;
  size_t count_;
  float* ptr_ = nullptr;
};

// The same tensor on the GPU and on the CPU reference. The CPU gets the values as the GPU holds
// them (rounded to bf16 in bf16 mode), so that both compute from the same inputs.
struct Pair {
  Tensor gpu, cpu;
  Pair(Backend& g, Backend& c, Tensor::Kind kind, const std::vector<float>& values)
      : gpu(g, kind, values), cpu(c, kind, gpu.read()) {}
  double error() const { return relative_error(gpu.read(), cpu.read()); }
};

// Prints a measured error (the test's name says where it comes from) and returns it.
double measured(const char* what, double error) {
  std::printf("  %-10s relative error %.2e\n", what, error);
  return error;
}

class CudaKernels : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string reason = unavailable_reason(GetParam());
    if (!reason.empty()) GTEST_SKIP() << GetParam() << " cannot run here: " << reason;
    gpu_ = backend::create_backend(GetParam());
    cpu_ = backend::create_backend("cpu");
  }
  bool bf16() const { return GetParam() == "cuda"; }
  // What the activation type allows: fp32 to within reordering of sums, bf16 to its 8 bits.
  double tol() const { return bf16() ? 2e-2 : 1e-5; }
  Pair act(const std::vector<float>& v) { return Pair(*gpu_, *cpu_, Tensor::kActivation, v); }
  Pair fp32(const std::vector<float>& v) { return Pair(*gpu_, *cpu_, Tensor::kFp32, v); }
  // Token ids live in device memory of the model's activation buffer; 4 bytes each on every device.
  Pair ids(const std::vector<int32_t>& t) {
    std::vector<float> bits(t.size());
    std::memcpy(bits.data(), t.data(), t.size() * sizeof(int32_t));
    return fp32(bits);
  }
  const int32_t* as_ids(const Tensor& t) const { return reinterpret_cast<const int32_t*>(t.get()); }

  std::unique_ptr<Backend> gpu_, cpu_;
};

TEST_P(CudaKernels, EncoderForwardAndBackward) {
  const int B = 3, T = 13, C = 54, V = 211;
  // Repeated tokens, so that the scatter of the backward pass sums several positions per row.
  std::vector<int32_t> tokens = random_tokens(B * T, 17, 1);
  tokens[0] = V - 1;
  auto tok = ids(tokens);
  auto wte = fp32(random_floats(V * C, 2)), wpe = fp32(random_floats(T * C, 3));
  auto out = act(std::vector<float>(B * T * C, 7.0f));
  gpu_->encoder_forward(out.gpu.get(), as_ids(tok.gpu), wte.gpu.get(), wpe.gpu.get(), B, T, C);
  cpu_->encoder_forward(out.cpu.get(), tokens.data(), wte.cpu.get(), wpe.cpu.get(), B, T, C);
  EXPECT_LT(measured("out", out.error()), tol());

  auto dout = act(random_floats(B * T * C, 4));
  auto dwte = fp32(random_floats(V * C, 5)), dwpe = fp32(random_floats(T * C, 6));  // accumulates
  gpu_->encoder_backward(dwte.gpu.get(), dwpe.gpu.get(), dout.gpu.get(), as_ids(tok.gpu), B, T, C);
  cpu_->encoder_backward(dwte.cpu.get(), dwpe.cpu.get(), dout.cpu.get(), tokens.data(), B, T, C);
  EXPECT_LT(measured("dwte", dwte.error()), tol());
  EXPECT_LT(measured("dwpe", dwpe.error()), tol());
}

TEST_P(CudaKernels, LayernormForwardBackwardAndTheFusedResidualForm) {
  const int N = 39, C = 54;
  // A large mean: the variance must not be computed as E[x^2] - E[x]^2.
  auto inp = act(random_floats(N * C, 10, 3.0f, 100.0f));
  auto w = fp32(random_floats(C, 11)), b = fp32(random_floats(C, 12));
  auto out = act(std::vector<float>(N * C)), mean = fp32(std::vector<float>(N)),
       rstd = fp32(std::vector<float>(N));
  gpu_->layernorm_forward(out.gpu.get(), mean.gpu.get(), rstd.gpu.get(), inp.gpu.get(), w.gpu.get(),
                          b.gpu.get(), N, C);
  cpu_->layernorm_forward(out.cpu.get(), mean.cpu.get(), rstd.cpu.get(), inp.cpu.get(), w.cpu.get(),
                          b.cpu.get(), N, C);
  EXPECT_LT(measured("out", out.error()), tol());
  EXPECT_LT(measured("mean", mean.error()), bf16() ? 1e-2 : 1e-6);
  EXPECT_LT(measured("rstd", rstd.error()), bf16() ? 1e-2 : 1e-5);

  auto dout = act(random_floats(N * C, 13));
  auto dinp = act(random_floats(N * C, 14));  // accumulates
  auto dw = fp32(random_floats(C, 15)), db = fp32(random_floats(C, 16));
  gpu_->layernorm_backward(dinp.gpu.get(), dw.gpu.get(), db.gpu.get(), dout.gpu.get(),
                           inp.gpu.get(), w.gpu.get(), mean.gpu.get(), rstd.gpu.get(), N, C);
  cpu_->layernorm_backward(dinp.cpu.get(), dw.cpu.get(), db.cpu.get(), dout.cpu.get(),
                           inp.cpu.get(), w.cpu.get(), mean.cpu.get(), rstd.cpu.get(), N, C);
  EXPECT_LT(measured("dinp", dinp.error()), tol());
  EXPECT_LT(measured("dw", dw.error()), tol());
  EXPECT_LT(measured("db", db.error()), tol());

  auto a = act(random_floats(N * C, 17)), bb = act(random_floats(N * C, 18));
  auto residual = act(std::vector<float>(N * C));
  gpu_->residual_layernorm_forward(residual.gpu.get(), out.gpu.get(), mean.gpu.get(),
                                   rstd.gpu.get(), a.gpu.get(), bb.gpu.get(), w.gpu.get(),
                                   b.gpu.get(), N, C);
  cpu_->residual_layernorm_forward(residual.cpu.get(), out.cpu.get(), mean.cpu.get(),
                                   rstd.cpu.get(), a.cpu.get(), bb.cpu.get(), w.cpu.get(),
                                   b.cpu.get(), N, C);
  EXPECT_LT(measured("residual", residual.error()), tol());
  EXPECT_LT(measured("out", out.error()), tol());
}

TEST_P(CudaKernels, MatmulForwardAndBackward) {
  // The shapes of a block's products and of the vocabulary projection, at odd sizes, and one row
  // (decoding).
  for (const auto [N, C, OC] : {std::array{39, 54, 162}, std::array{39, 54, 211},
                                std::array{1, 54, 216}, std::array{77, 216, 54}}) {
    SCOPED_TRACE(testing::Message() << "N " << N << " C " << C << " OC " << OC);
    auto inp = act(random_floats(N * C, 20)), w = fp32(random_floats(OC * C, 21, 0.2f)),
         bias = fp32(random_floats(OC, 22));
    auto out = act(std::vector<float>(N * OC, 3.0f));
    gpu_->matmul_forward(out.gpu.get(), inp.gpu.get(), w.gpu.get(), bias.gpu.get(), N, C, OC);
    cpu_->matmul_forward(out.cpu.get(), inp.cpu.get(), w.cpu.get(), bias.cpu.get(), N, C, OC);
    EXPECT_LT(measured("out", out.error()), tol());
    gpu_->matmul_forward(out.gpu.get(), inp.gpu.get(), w.gpu.get(), nullptr, N, C, OC);
    cpu_->matmul_forward(out.cpu.get(), inp.cpu.get(), w.cpu.get(), nullptr, N, C, OC);
    EXPECT_LT(measured("out", out.error()), tol());

    auto dout = act(random_floats(N * OC, 23));
    auto dinp = act(random_floats(N * C, 24));  // all three accumulate
    auto dw = fp32(random_floats(OC * C, 25)), db = fp32(random_floats(OC, 26));
    gpu_->matmul_backward(dinp.gpu.get(), dw.gpu.get(), db.gpu.get(), dout.gpu.get(),
                          inp.gpu.get(), w.gpu.get(), N, C, OC);
    cpu_->matmul_backward(dinp.cpu.get(), dw.cpu.get(), db.cpu.get(), dout.cpu.get(),
                          inp.cpu.get(), w.cpu.get(), N, C, OC);
    EXPECT_LT(measured("dinp", dinp.error()), tol());
    EXPECT_LT(measured("dw", dw.error()), tol());
    EXPECT_LT(measured("db", db.error()), tol());
    // No input gradient and no bias, as for the vocabulary projection.
    gpu_->matmul_backward(nullptr, dw.gpu.get(), nullptr, dout.gpu.get(), inp.gpu.get(),
                          w.gpu.get(), N, C, OC);
    cpu_->matmul_backward(nullptr, dw.cpu.get(), nullptr, dout.cpu.get(), inp.cpu.get(),
                          w.cpu.get(), N, C, OC);
    EXPECT_LT(measured("dw", dw.error()), tol());
  }
}

TEST_P(CudaKernels, MatmulWithGelu) {
  const int N = 39, C = 54, OC = 216;
  auto inp = act(random_floats(N * C, 30)), w = fp32(random_floats(OC * C, 31, 0.3f)),
       bias = fp32(random_floats(OC, 32));
  auto pre = act(std::vector<float>(N * OC)), out = act(std::vector<float>(N * OC));
  gpu_->matmul_gelu_forward(pre.gpu.get(), out.gpu.get(), inp.gpu.get(), w.gpu.get(),
                            bias.gpu.get(), N, C, OC);
  cpu_->matmul_gelu_forward(pre.cpu.get(), out.cpu.get(), inp.cpu.get(), w.cpu.get(),
                            bias.cpu.get(), N, C, OC);
  EXPECT_LT(measured("pre", pre.error()), tol());
  EXPECT_LT(measured("out", out.error()), tol());
}

TEST_P(CudaKernels, WeightsChangedByAdamWReachTheProducts) {
  // bf16 mode multiplies by a bf16 copy of the weights: it must follow every update.
  const int N = 9, C = 54, OC = 30;
  auto inp = act(random_floats(N * C, 40));
  auto w = fp32(random_floats(OC * C, 41)), g = fp32(random_floats(OC * C, 42));
  auto m = fp32(std::vector<float>(OC * C)), v = fp32(std::vector<float>(OC * C));
  auto out = act(std::vector<float>(N * OC));
  gpu_->matmul_forward(out.gpu.get(), inp.gpu.get(), w.gpu.get(), nullptr, N, C, OC);  // makes it
  backend::AdamWStep step;
  step.learning_rate = 0.05f;
  step.weight_decay = 0.1f;
  gpu_->adamw_update(w.gpu.get(), g.gpu.get(), m.gpu.get(), v.gpu.get(), OC * C, step);
  cpu_->adamw_update(w.cpu.get(), g.cpu.get(), m.cpu.get(), v.cpu.get(), OC * C, step);
  EXPECT_LT(measured("w", w.error()), 1e-6);
  gpu_->matmul_forward(out.gpu.get(), inp.gpu.get(), w.gpu.get(), nullptr, N, C, OC);
  cpu_->matmul_forward(out.cpu.get(), inp.cpu.get(), w.cpu.get(), nullptr, N, C, OC);
  EXPECT_LT(measured("out", out.error()), tol());
  // And a copy from the host (a checkpoint load) too.
  w.gpu.write(random_floats(OC * C, 43));
  w.cpu.write(random_floats(OC * C, 43));
  gpu_->matmul_forward(out.gpu.get(), inp.gpu.get(), w.gpu.get(), nullptr, N, C, OC);
  cpu_->matmul_forward(out.cpu.get(), inp.cpu.get(), w.cpu.get(), nullptr, N, C, OC);
  EXPECT_LT(measured("out", out.error()), tol());
}

// The attention record differs between backends (probabilities on the CPU, row statistics here),
// so each keeps its own and only out and dqkv are compared.
void check_attention(Backend& gpu, Backend& cpu, int B, int T, int C, int NH,
                     double tol) {
  SCOPED_TRACE(testing::Message() << "B " << B << " T " << T << " C " << C << " NH " << NH);
  auto qkv = Pair(gpu, cpu, Tensor::kActivation, random_floats(size_t(B) * T * 3 * C, 50, 2.0f));
  auto out = Pair(gpu, cpu, Tensor::kActivation, std::vector<float>(size_t(B) * T * C, 5.0f));
  Tensor att_g(gpu, Tensor::kFp32, gpu.attention_record_floats(B, T, NH));
  Tensor att_c(cpu, Tensor::kFp32, cpu.attention_record_floats(B, T, NH));
  gpu.attention_forward(out.gpu.get(), att_g.get(), qkv.gpu.get(), B, T, C, NH);
  cpu.attention_forward(out.cpu.get(), att_c.get(), qkv.cpu.get(), B, T, C, NH);
  EXPECT_LT(measured("out", out.error()), tol);

  auto dout = Pair(gpu, cpu, Tensor::kActivation, random_floats(size_t(B) * T * C, 51));
  auto dqkv = Pair(gpu, cpu, Tensor::kActivation, random_floats(size_t(B) * T * 3 * C, 52));
  Tensor scratch_g(gpu, Tensor::kFp32, gpu.attention_scratch_floats(B, T, NH));
  Tensor scratch_c(cpu, Tensor::kFp32, cpu.attention_scratch_floats(B, T, NH));
  gpu.attention_backward(dqkv.gpu.get(), scratch_g.get(), dout.gpu.get(), out.gpu.get(),
                         qkv.gpu.get(), att_g.get(), B, T, C, NH);
  cpu.attention_backward(dqkv.cpu.get(), scratch_c.get(), dout.cpu.get(), out.cpu.get(),
                         qkv.cpu.get(), att_c.get(), B, T, C, NH);
  EXPECT_LT(measured("dqkv", dqkv.error()), tol);
}

TEST_P(CudaKernels, AttentionForwardAndBackward) {
  check_attention(*gpu_, *cpu_, 2, 13, 54, 3, tol());    // head size 18
  check_attention(*gpu_, *cpu_, 1, 1, 54, 3, tol());     // a single position
  check_attention(*gpu_, *cpu_, 2, 131, 128, 2, tol());  // head size 64, several tiles
  check_attention(*gpu_, *cpu_, 1, 67, 384, 3, tol());   // head size 128
}

TEST_P(CudaKernels, AttentionDecodeReproducesTheForwardPass) {
  const int B = 2, T = 37, C = 128, NH = 2, max_T = 45;
  const std::vector<float> qkv_h = random_floats(size_t(B) * T * 3 * C, 60, 2.0f);
  auto qkv = act(qkv_h);
  auto full = act(std::vector<float>(size_t(B) * T * C));
  Tensor att(*cpu_, Tensor::kFp32, cpu_->attention_record_floats(B, T, NH));
  cpu_->attention_forward(full.cpu.get(), att.get(), qkv.cpu.get(), B, T, C, NH);
  const std::vector<float> expected = full.cpu.read();
  Tensor k_cache(*gpu_, Tensor::kActivation, size_t(B) * max_T * C),
      v_cache(*gpu_, Tensor::kActivation, size_t(B) * max_T * C);
  for (int pos = 0; pos < T; ++pos) {
    std::vector<float> step(size_t(B) * 3 * C), want(size_t(B) * C);
    for (int b = 0; b < B; ++b) {
      std::copy_n(qkv_h.begin() + (size_t(b) * T + pos) * 3 * C, 3 * C, step.begin() + b * 3 * C);
      std::copy_n(expected.begin() + (size_t(b) * T + pos) * C, C, want.begin() + b * C);
    }
    Tensor step_g(*gpu_, Tensor::kActivation, step), out_g(*gpu_, Tensor::kActivation, B * C);
    gpu_->attention_decode(out_g.get(), step_g.get(), k_cache.get(), v_cache.get(), B, pos, max_T,
                           C, NH);
    EXPECT_LT(relative_error(out_g.read(), want), tol()) << "position " << pos;
  }
}

TEST_P(CudaKernels, ElementwiseKernels) {
  const size_t N = 1000003;
  auto x = act(random_floats(N, 70, 4.0f)), y = act(random_floats(N, 71));
  auto out = act(std::vector<float>(N));
  gpu_->gelu_forward(out.gpu.get(), x.gpu.get(), N);
  cpu_->gelu_forward(out.cpu.get(), x.cpu.get(), N);
  EXPECT_LT(measured("out", out.error()), tol());
  auto dinp = act(random_floats(N, 72));  // accumulates
  gpu_->gelu_backward(dinp.gpu.get(), x.gpu.get(), y.gpu.get(), N);
  cpu_->gelu_backward(dinp.cpu.get(), x.cpu.get(), y.cpu.get(), N);
  EXPECT_LT(measured("dinp", dinp.error()), tol());
  gpu_->residual_forward(out.gpu.get(), x.gpu.get(), y.gpu.get(), N);
  cpu_->residual_forward(out.cpu.get(), x.cpu.get(), y.cpu.get(), N);
  EXPECT_LT(measured("out", out.error()), tol());
  gpu_->accumulate(out.gpu.get(), y.gpu.get(), N);
  cpu_->accumulate(out.cpu.get(), y.cpu.get(), N);
  EXPECT_LT(measured("out", out.error()), tol());
}

TEST_P(CudaKernels, CrossEntropyForwardAndBackwardInPlace) {
  for (const auto [N, V] : {std::array{13, 211}, std::array{5, 50257}, std::array{3, 1}}) {
    SCOPED_TRACE(testing::Message() << "N " << N << " V " << V);
    const std::vector<int32_t> targets = random_tokens(N, V, 80);
    auto tgt = ids(targets);
    auto logits = act(random_floats(size_t(N) * V, 81, 8.0f));
    auto losses = fp32(std::vector<float>(N));
    gpu_->cross_entropy_forward(losses.gpu.get(), logits.gpu.get(), as_ids(tgt.gpu), N, V);
    cpu_->cross_entropy_forward(losses.cpu.get(), logits.cpu.get(), targets.data(), N, V);
    EXPECT_LT(measured("losses", losses.error()), bf16() ? 1e-2 : 1e-6);
    // dlogits overwrite the logits, as the model runs it.
    gpu_->cross_entropy_backward(logits.gpu.get(), logits.gpu.get(), as_ids(tgt.gpu), 0.25f, N, V);
    cpu_->cross_entropy_backward(logits.cpu.get(), logits.cpu.get(), targets.data(), 0.25f, N, V);
    EXPECT_LT(measured("logits", logits.error()), tol());
  }
}

TEST_P(CudaKernels, SumOfSquaresAndAdamW) {
  const size_t N = 3000017;
  auto p = fp32(random_floats(N, 90)), g = fp32(random_floats(N, 91, 3.0f));
  EXPECT_NEAR(gpu_->sum_of_squares(g.gpu.get(), N), cpu_->sum_of_squares(g.cpu.get(), N),
              1e-9 * cpu_->sum_of_squares(g.cpu.get(), N));
  auto m = fp32(std::vector<float>(N)), v = fp32(std::vector<float>(N));
  backend::AdamWStep step;
  step.learning_rate = 1e-3f;
  step.weight_decay = 0.1f;
  step.grad_scale = 0.5f;
  for (step.step = 1; step.step <= 3; ++step.step) {
    gpu_->adamw_update(p.gpu.get(), g.gpu.get(), m.gpu.get(), v.gpu.get(), N, step);
    cpu_->adamw_update(p.cpu.get(), g.cpu.get(), m.cpu.get(), v.cpu.get(), N, step);
  }
  // Master weights and moments are fp32 in both modes.
  EXPECT_LT(measured("p", p.error()), 1e-6);
  EXPECT_LT(measured("m", m.error()), 1e-6);
  EXPECT_LT(measured("v", v.error()), 1e-6);
}

TEST_P(CudaKernels, BackwardKernelsAreDeterministic) {
  const int B = 2, T = 131, C = 128, NH = 2, V = 211;
  const std::vector<int32_t> tokens = random_tokens(B * T, 11, 100);  // many repeats
  auto tok = ids(tokens);
  const std::vector<float> qkv_h = random_floats(size_t(B) * T * 3 * C, 101),
                           dout_h = random_floats(size_t(B) * T * C, 102);
  Tensor qkv(*gpu_, Tensor::kActivation, qkv_h), out(*gpu_, Tensor::kActivation, B * T * C),
      dout(*gpu_, Tensor::kActivation, dout_h);
  Tensor att(*gpu_, Tensor::kFp32, gpu_->attention_record_floats(B, T, NH)),
      scratch(*gpu_, Tensor::kFp32, gpu_->attention_scratch_floats(B, T, NH));
  gpu_->attention_forward(out.get(), att.get(), qkv.get(), B, T, C, NH);
  std::vector<float> first_dqkv, first_dwte, first_dw;
  for (int run = 0; run < 2; ++run) {
    Tensor dqkv(*gpu_, Tensor::kActivation, size_t(B) * T * 3 * C);
    gpu_->attention_backward(dqkv.get(), scratch.get(), dout.get(), out.get(), qkv.get(), att.get(),
                             B, T, C, NH);
    Tensor dwte(*gpu_, Tensor::kFp32, size_t(V) * C), dwpe(*gpu_, Tensor::kFp32, size_t(T) * C);
    gpu_->encoder_backward(dwte.get(), dwpe.get(), dout.get(), as_ids(tok.gpu), B, T, C);
    Tensor dw(*gpu_, Tensor::kFp32, C), db(*gpu_, Tensor::kFp32, C),
        dinp(*gpu_, Tensor::kActivation, size_t(B) * T * C), w(*gpu_, Tensor::kFp32, C, 1.0f),
        mean(*gpu_, Tensor::kFp32, B * T), rstd(*gpu_, Tensor::kFp32, B * T, 1.0f);
    gpu_->layernorm_backward(dinp.get(), dw.get(), db.get(), dout.get(), out.get(), w.get(),
                             mean.get(), rstd.get(), B * T, C);
    if (run == 0) {
      first_dqkv = dqkv.read();
      first_dwte = dwte.read();
      first_dw = dw.read();
    } else {
      EXPECT_EQ(dqkv.read(), first_dqkv);
      EXPECT_EQ(dwte.read(), first_dwte);
      EXPECT_EQ(dw.read(), first_dw);
    }
  }
}

TEST_P(CudaKernels, ClearErrors) {
  expect_error([&] { gpu_->allocate(size_t{1} << 52); }, {"out of GPU memory", "GiB"});
  Tensor x(*gpu_, Tensor::kActivation, 3 * 258);
  expect_error([&] { gpu_->attention_forward(x.get(), x.get(), x.get(), 1, 1, 258, 1); },
               {"head size 258"});
  float host = 0;
  expect_error([&] { gpu_->fill_zero(&host, sizeof(host)); }, {"not in memory this device"});
}

// ---- the whole model ----

model::GptConfig small_config() {
  model::GptConfig c;
  c.num_layers = 2;
  c.num_heads = 3;
  c.channels = 96;
  c.vocab_size = 301;
  c.max_seq_len = 67;
  return c;
}

// T = 67: more than one attention tile, and not a multiple of any tile size.
TrainingRun run_steps(const std::string& device) {
  TrainingPlan plan;
  plan.config = small_config();
  plan.B = 3;
  plan.T = 67;
  plan.adamw_steps = 5;
  plan.decode_positions = 6;
  return run_training(device, plan);
}

double worst_relative(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    worst = std::max(worst, std::abs(double(got[i]) - want[i]) / std::abs(double(want[i])));
  return worst;
}

// Whether v is a bf16 value: its low 16 bits are zero.
bool is_bf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return (bits & 0xffffu) == 0;
}

size_t count_bf16(const std::vector<float>& values) {
  return static_cast<size_t>(std::count_if(values.begin(), values.end(), is_bf16));
}

TEST_P(CudaKernels, TrainingStepsMatchTheCpuBackendAndRepeatExactly) {
  const TrainingRun cpu = run_steps("cpu");
  const TrainingRun gpu = run_steps(GetParam());
  const double loss = std::abs(double(gpu.loss) - cpu.loss) / std::abs(double(cpu.loss));
  const double logits = relative_error(gpu.logits, cpu.logits);
  const double grads = relative_error(gpu.grads, cpu.grads);
  const double later_losses = worst_relative(gpu.later_losses, cpu.later_losses);
  const double step_losses = relative_error(gpu.step_losses, cpu.step_losses);
  const double step_norms = relative_error(gpu.step_norms, cpu.step_norms);
  const double decode_logits = relative_error(gpu.decode_logits, cpu.decode_logits);
  std::printf("%s vs cpu: loss %.2e, logits %.2e, gradients %.2e, AdamW losses %.2e, step losses "
              "%.2e, step norms %.2e, decode logits %.2e\n",
              GetParam().c_str(), loss, logits, grads, later_losses, step_losses, step_norms,
              decode_logits);
  // The bars the backend was built to: bf16 within 2e-2 (losses 1e-2), fp32 within 1e-4.
  const double tol = bf16() ? 2e-2 : 1e-4;
  const double loss_tol = bf16() ? 1e-2 : 1e-4;
  EXPECT_LT(loss, loss_tol);
  EXPECT_LT(logits, tol);
  EXPECT_LT(grads, tol);
  EXPECT_LT(later_losses, loss_tol);
  EXPECT_LT(step_losses, loss_tol);
  EXPECT_LT(step_norms, tol);
  EXPECT_LT(decode_logits, tol);
  if (bf16()) {
    // bf16 really is in use: logits are bf16 activations, so every one is a bf16 value (the CPU
    // backend's fp32 logits almost never are), and they are further from the fp32 logits than
    // rounding those to bf16 alone would put them.
    EXPECT_EQ(count_bf16(gpu.logits), gpu.logits.size());
    EXPECT_EQ(count_bf16(gpu.decode_logits), gpu.decode_logits.size());
    EXPECT_LT(count_bf16(cpu.logits), cpu.logits.size() / 100);
    std::vector<float> rounded(cpu.logits.size());
    for (size_t i = 0; i < cpu.logits.size(); ++i)
      rounded[i] = bf16_to_float(float_to_bf16(cpu.logits[i]));
    EXPECT_GT(logits, relative_error(rounded, cpu.logits));
  }
  // Deterministic: a second run gives the same bits.
  const TrainingRun again = run_steps(GetParam());
  EXPECT_EQ(again.loss, gpu.loss);
  EXPECT_EQ(again.later_losses, gpu.later_losses);
  EXPECT_EQ(again.grads, gpu.grads);
  EXPECT_EQ(again.step_losses, gpu.step_losses);
  EXPECT_EQ(again.step_norms, gpu.step_norms);
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaKernels, ::testing::Values("cuda-fp32", "cuda"),
                         [](const auto& info) {
                           return info.param == "cuda" ? std::string("bf16") : std::string("fp32");
                         });

}  // namespace
}  // namespace switchyard
