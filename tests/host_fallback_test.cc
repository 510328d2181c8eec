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

// The mixture-of-experts routing ops write int32 and read-modify fp64 operands, and RoPE writes a
// strided bf16 view: all staged and copied back as the reference on the host computes them.
TEST(HostFallback, RoutingAndRopeOverStagedCopies) {
  const int N = 5, E = 4, k = 2, A = N * k, heads = 3, head_dim = 6, row = 4 * head_dim;
  StagingDevice device;
  Backend& be = device;
  auto upload = [&](const void* host, size_t bytes) {
    void* p = device.allocate(bytes);
    std::memcpy(p, host, bytes);
    return p;
  };
  const std::vector<uint16_t> logits_bits = to_bf16(random_floats(N * E, 20, 3.0f));
  const std::vector<double> prior = {1, 0, 2, 0, 0.5, 0.25, 0, 1};
  void* logits = upload(logits_bits.data(), logits_bits.size() * 2);
  void* totals = upload(prior.data(), prior.size() * 8);
  void* ids = device.allocate(A * 4);
  void* weights = device.allocate(A * 4);
  void* grouped = device.allocate(4 * A * 4 + (E + 1) * 4);  // order, rows, position, offsets
  auto i32 = [](void* p, std::initializer_list<int64_t> shape) {
    return Tensor::dense(p, DType::kI32, shape);
  };
  int32_t* g = static_cast<int32_t*>(grouped);
  const Tensor logits_t = Tensor::dense(logits, DType::kBF16, {N, E});
  be.run(ops::TopKRouting{.expert_ids = i32(ids, {N, k}),
                          .weights = Tensor::dense(weights, DType::kF32, {N, k}),
                          .logits = logits_t});
  be.run(ops::GroupByExpert{.order = i32(g, {A}), .rows = i32(g + A, {A}),
                            .position = i32(g + 2 * A, {A}), .offsets = i32(g + 3 * A, {E + 1}),
                            .expert_ids = i32(ids, {N, k}), .experts = E});
  be.run(ops::RouterLoadStats{.totals = Tensor::dense(totals, DType::kF64, {2, E}),
                              .logits = logits_t, .expert_ids = i32(ids, {N, k})});

  const std::vector<uint16_t> qkv_bits = to_bf16(random_floats(N * row, 21));
  void* qkv = upload(qkv_bits.data(), qkv_bits.size() * 2);
  Tensor qk = Tensor::dense(qkv, DType::kBF16, {N, heads, head_dim});  // 3 of 4 heads per row
  qk.strides[0] = row;
  std::vector<float> cos = random_floats(7 * head_dim / 2, 22),
                     sin = random_floats(7 * head_dim / 2, 23);
  const std::vector<int32_t> positions = {6, 0, 3, 3, 1};
  be.run(ops::Rope{.x = qk, .cos = Tensor::dense(cos.data(), DType::kF32, {7, head_dim / 2}),
                   .sin = Tensor::dense(sin.data(), DType::kF32, {7, head_dim / 2}),
                   .positions = Tensor::dense(positions.data(), DType::kI32, {N})});
  for (OpKind kind : {OpKind::kTopKRouting, OpKind::kGroupByExpert, OpKind::kRouterLoadStats,
                      OpKind::kRope}) {
    EXPECT_EQ(device.fallbacks[kind], 1) << op_name(kind);
  }

  // The reference on the widened values.
  cpu::CpuBackend cpu;
  std::vector<float> logits_f = widen(logits_bits), weights_f(A), qkv_f = widen(qkv_bits);
  std::vector<int32_t> ids_f(A), grouped_f(4 * A + E + 1);
  std::vector<double> totals_f = prior;
  int32_t* gf = grouped_f.data();
  const Tensor logits_ft = Tensor::dense(logits_f.data(), DType::kF32, {N, E});
  cpu.run(ops::TopKRouting{.expert_ids = i32(ids_f.data(), {N, k}),
                           .weights = Tensor::dense(weights_f.data(), DType::kF32, {N, k}),
                           .logits = logits_ft});
  cpu.run(ops::GroupByExpert{.order = i32(gf, {A}), .rows = i32(gf + A, {A}),
                             .position = i32(gf + 2 * A, {A}), .offsets = i32(gf + 3 * A, {E + 1}),
                             .expert_ids = i32(ids_f.data(), {N, k}), .experts = E});
  cpu.run(ops::RouterLoadStats{.totals = Tensor::dense(totals_f.data(), DType::kF64, {2, E}),
                               .logits = logits_ft, .expert_ids = i32(ids_f.data(), {N, k})});
  Tensor qk_f = Tensor::dense(qkv_f.data(), DType::kF32, {N, heads, head_dim});
  qk_f.strides[0] = row;
  cpu.run(ops::Rope{.x = qk_f, .cos = Tensor::dense(cos.data(), DType::kF32, {7, head_dim / 2}),
                    .sin = Tensor::dense(sin.data(), DType::kF32, {7, head_dim / 2}),
                    .positions = Tensor::dense(positions.data(), DType::kI32, {N})});
  const int32_t* ids_out = static_cast<const int32_t*>(ids);
  EXPECT_EQ(std::vector<int32_t>(ids_out, ids_out + A), ids_f);
  EXPECT_EQ(std::vector<float>(static_cast<float*>(weights), static_cast<float*>(weights) + A),
            weights_f);
  EXPECT_EQ(std::vector<int32_t>(g, g + 4 * A + E + 1), grouped_f);
  EXPECT_EQ(std::vector<double>(static_cast<double*>(totals), static_cast<double*>(totals) + 2 * E),
            totals_f);
  const uint16_t* qkv_out = static_cast<const uint16_t*>(qkv);
  for (int n = 0; n < N; ++n) {
    for (int i = 0; i < row; ++i) {
      const int at = n * row + i;
      if (i < heads * head_dim) {
        ASSERT_EQ(qkv_out[at], float_to_bf16(qkv_f[at])) << at;
      } else {
        ASSERT_EQ(qkv_out[at], qkv_bits[at]) << "the fourth head of row " << n << " was written";
      }
    }
  }
  for (void* p : {logits, totals, ids, weights, grouped, qkv}) device.release(p);
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
