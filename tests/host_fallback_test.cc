// The host fallback of a backend whose memory is not host memory: operands staged through copies
// (overlapping views merged, bf16 widened to fp32 and narrowed back), the CPU reference run on the
// copies, the written ranges copied back.
#include "backend/host_fallback.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "random_data.h"

namespace switchyard::backend {
namespace {

// A device of its own memory that implements no op: every op takes the default path, and every
// copy between host and device is counted.
class StagingDevice final : public Backend {
 public:
  std::string name() const override { return "staging"; }
  std::string description() const override { return "test device without ops"; }
  void* allocate(size_t bytes) override { return std::calloc(1, std::max<size_t>(bytes, 1)); }
  void release(void* ptr) override { std::free(ptr); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
    ++copies_in;
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
    ++copies_out;
  }
  void fill_zero(void* ptr, size_t bytes) override { std::memset(ptr, 0, bytes); }
  Precision precision() const override { return {DType::kBF16, DType::kF32}; }
  void on_host_fallback(OpKind kind) override { ++fallbacks[kind]; }

  int copies_in = 0, copies_out = 0;
  std::map<OpKind, int> fallbacks;
};

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = float_to_bf16(v[i]);
  return out;
}
std::vector<float> widen(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_float(v[i]);
  return out;
}

// q, k, v as [N, NH, hs] views of one packed [N, 3C] buffer of `dtype`.
struct Qkv {
  Tensor q, k, v;
};
Qkv packed(void* base, DType dtype, int64_t N, int C, int NH) {
  Qkv views;
  Tensor* parts[] = {&views.q, &views.k, &views.v};
  for (int i = 0; i < 3; ++i) {
    Tensor t = Tensor::dense(base, dtype, {N, NH, C / NH});
    t.strides[0] = 3 * C;
    t.data = static_cast<char*>(base) + i * C * dtype_bytes(dtype);
    *parts[i] = t;
  }
  return views;
}

TEST(HostFallback, AttentionOverBf16ViewsMatchesTheReferenceOnRoundedValues) {
  const int B = 2, T = 5, C = 12, NH = 3, N = B * T;
  const ops::AttentionSpec spec{.heads = NH, .kv_heads = NH, .head_dim = C / NH};
  const std::vector<uint16_t> qkv_bits = to_bf16(random_floats(N * 3 * C, 3));
  const std::vector<uint16_t> dout_bits = to_bf16(random_floats(N * C, 4));

  StagingDevice device;
  auto upload = [&](const std::vector<uint16_t>& bits) {
    void* p = device.allocate(bits.size() * 2);
    std::memcpy(p, bits.data(), bits.size() * 2);
    return p;
  };
  void* qkv = upload(qkv_bits);
  void* dout = upload(dout_bits);
  void* out = device.allocate(N * C * 2);
  void* dqkv = device.allocate(N * 3 * C * 2);
  const size_t probabilities = static_cast<size_t>(B) * NH * T * T;
  std::vector<float> record(probabilities), scratch(probabilities);
  const Qkv v = packed(qkv, DType::kBF16, N, C, NH), g = packed(dqkv, DType::kBF16, N, C, NH);
  Backend& be = device;
  be.run(ops::Attention{.out = Tensor::dense(out, DType::kBF16, {N, C}),
                        .record = Tensor::dense(record.data(), DType::kF32, {int64_t(probabilities)}),
                        .q = v.q, .k = v.k, .v = v.v, .batch = B, .seq = T, .spec = spec});
  // dq, dk and dv are three interleaved views of one buffer the op writes: staged as one range.
  be.run(ops::AttentionBackward{
      .dq = g.q, .dk = g.k, .dv = g.v,
      .scratch = Tensor::dense(scratch.data(), DType::kF32, {int64_t(probabilities)}),
      .dout = Tensor::dense(dout, DType::kBF16, {N, C}),
      .out = Tensor::dense(out, DType::kBF16, {N, C}),
      .record = Tensor::dense(record.data(), DType::kF32, {int64_t(probabilities)}), .q = v.q,
      .k = v.k, .v = v.v, .batch = B, .seq = T, .spec = spec});
  EXPECT_EQ(device.fallbacks[OpKind::kAttention], 1);
  EXPECT_EQ(device.fallbacks[OpKind::kAttentionBackward], 1);

  // The reference on the widened values, rounded to bf16 where the device stores bf16.
  cpu::CpuBackend cpu;
  std::vector<float> qkv_f = widen(qkv_bits), dout_f = widen(dout_bits), out_f(N * C),
                     dqkv_f(N * 3 * C, 0.0f), record_f(probabilities), scratch_f(probabilities);
  const Qkv rv = packed(qkv_f.data(), DType::kF32, N, C, NH),
            rg = packed(dqkv_f.data(), DType::kF32, N, C, NH);
  cpu.run(ops::Attention{.out = Tensor::dense(out_f.data(), DType::kF32, {N, C}),
                         .record = Tensor::dense(record_f.data(), DType::kF32, {int64_t(probabilities)}),
                         .q = rv.q, .k = rv.k, .v = rv.v, .batch = B, .seq = T, .spec = spec});
  cpu.run(ops::AttentionBackward{
      .dq = rg.q, .dk = rg.k, .dv = rg.v,
      .scratch = Tensor::dense(scratch_f.data(), DType::kF32, {int64_t(probabilities)}),
      .dout = Tensor::dense(dout_f.data(), DType::kF32, {N, C}),
      .out = Tensor::dense(out_f.data(), DType::kF32, {N, C}),
      .record = Tensor::dense(record_f.data(), DType::kF32, {int64_t(probabilities)}), .q = rv.q,
      .k = rv.k, .v = rv.v, .batch = B, .seq = T, .spec = spec});
  const uint16_t* out_bits = static_cast<const uint16_t*>(out);
  for (int i = 0; i < N * C; ++i) ASSERT_EQ(out_bits[i], float_to_bf16(out_f[i])) << i;
  EXPECT_EQ(record, record_f);
  const uint16_t* dqkv_bits = static_cast<const uint16_t*>(dqkv);
  for (int i = 0; i < N * 3 * C; ++i) ASSERT_EQ(dqkv_bits[i], float_to_bf16(dqkv_f[i])) << i;
  for (void* p : {qkv, dout, out, dqkv}) device.release(p);
}

TEST(HostFallback, AnOutputThatAliasesItsInputIsStagedOnce) {
  const int N = 3, V = 7;
  StagingDevice device;
  const std::vector<float> logits_h = random_floats(N * V, 9);
  const std::vector<int32_t> targets_h = {0, 6, 3};
  float* logits = static_cast<float*>(device.allocate(N * V * 4));
  int32_t* targets = static_cast<int32_t*>(device.allocate(N * 4));
  std::memcpy(logits, logits_h.data(), N * V * 4);
  std::memcpy(targets, targets_h.data(), N * 4);
  Backend& be = device;
  const Tensor l = Tensor::dense(logits, DType::kF32, {N, V});
  be.run(ops::CrossEntropyBackward{.dlogits = l, .logits = l,
                                   .targets = Tensor::dense(targets, DType::kI32, {N}),
                                   .dloss = 0.5f});
  EXPECT_EQ(device.copies_out, 2);  // the logits range once, the targets once
  EXPECT_EQ(device.copies_in, 1);   // only the written range goes back

  std::vector<float> want = logits_h;
  cpu::CpuBackend cpu;
  const Tensor w = Tensor::dense(want.data(), DType::kF32, {N, V});
  cpu.run(ops::CrossEntropyBackward{.dlogits = w, .logits = w,
                                    .targets = Tensor::dense(targets_h.data(), DType::kI32, {N}),
                                    .dloss = 0.5f});
  for (int i = 0; i < N * V; ++i) EXPECT_EQ(logits[i], want[i]) << i;
  device.release(logits);
  device.release(targets);
}

TEST(HostFallback, CompositeOpsComposeFromTheirParts) {
  StagingDevice device;
  const int N = 2, C = 4, OC = 3;
  std::vector<float> inp = random_floats(N * C, 1), weight = random_floats(OC * C, 2);
  std::vector<uint16_t> pre(N * OC), out(N * OC);
  Backend& be = device;
  const std::vector<uint16_t> inp_bits = to_bf16(inp);
  be.run(ops::LinearGelu{.pre = Tensor::dense(pre.data(), DType::kBF16, {N, OC}),
                         .out = Tensor::dense(out.data(), DType::kBF16, {N, OC}),
                         .inp = Tensor::dense(inp_bits.data(), DType::kBF16, {N, C}),
                         .weight = Tensor::dense(weight.data(), DType::kF32, {OC, C})});
  EXPECT_EQ(device.fallbacks[OpKind::kLinearGelu], 0);
  EXPECT_EQ(device.fallbacks[OpKind::kLinear], 1);
  EXPECT_EQ(device.fallbacks[OpKind::kGelu], 1);
}

}  // namespace
}  // namespace switchyard::backend
