// CpuBackend through the Backend interface: memory, every op end to end on small shapes (against
// the double-precision kernel templates, which cpu_kernels_test checks independently), operand
// errors, and the registry.
#include "backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include "gpt2_cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/ops.h"
#include "core/tensor.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/rng.h"
#include "random_data.h"
#include "resident_pages.h"

namespace switchyard::backend {
namespace {

using switchyard::random_floats;
namespace gpt2 = switchyard::gpt2_kernels;

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

double max_rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, scale = 1e-3;
  for (size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return diff / scale;
}

// A float buffer in backend memory, copied in and out through the interface.
class DeviceBuffer {
 public:
  DeviceBuffer(Backend& backend, size_t count) : backend_(backend), count_(count) {
    ptr_ = static_cast<float*>(backend_.allocate(count * sizeof(float)));
    backend_.fill_zero(ptr_, count * sizeof(float));
  }
  DeviceBuffer(Backend& backend, const std::vector<float>& host)
      : DeviceBuffer(backend, host.size()) {
    backend_.copy_to_device(ptr_, host.data(), host.size() * sizeof(float));
  }
  ~DeviceBuffer() { backend_.release(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  float* get() { return ptr_; }
  std::vector<float> read() const {
    std::vector<float> host(count_);
    backend_.copy_to_host(host.data(), ptr_, count_ * sizeof(float));
    return host;
  }

 private:
  Backend& backend_;
  size_t count_;
  float* ptr_;
};

TEST(CpuBackend, NameAndDescription) {
  cpu::CpuBackend backend;
  EXPECT_EQ(backend.name(), "cpu");
  const std::string description = backend.description();
  EXPECT_NE(description.find("cores"), std::string::npos) << description;
  EXPECT_NE(description.find("GiB"), std::string::npos) << description;
  EXPECT_EQ(description.find('\n'), std::string::npos) << "one line";
}

TEST(CpuBackend, MemoryIsAlignedCopiedAndZeroed) {
  cpu::CpuBackend backend;
  for (const size_t bytes :
       {size_t{1}, size_t{100}, size_t{64} << 20}) {  // the last copies in parallel
    void* ptr = backend.allocate(bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(ptr) % 64, 0u);
    std::vector<unsigned char> src(bytes), back(bytes, 0xAB);
    for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<unsigned char>(i * 131 + 7);
    backend.copy_to_device(ptr, src.data(), bytes);
    backend.copy_to_host(back.data(), ptr, bytes);
    EXPECT_EQ(back, src);
    backend.fill_zero(ptr, bytes);
    backend.copy_to_host(back.data(), ptr, bytes);
    EXPECT_EQ(back, std::vector<unsigned char>(bytes, 0));
    backend.release(ptr);
  }
  void* empty = backend.allocate(0);  // a valid, releasable pointer
  EXPECT_NE(empty, nullptr);
  backend.release(empty);
}

TEST(CpuBackend, AbsurdAllocationIsAnError) {
  cpu::CpuBackend backend;
  try {
    backend.allocate(size_t{1} << 62);
    FAIL() << "allocating 2^62 bytes succeeded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("out of host memory"), std::string::npos) << message;
    EXPECT_NE(message.find("4611686018427387904 bytes"), std::string::npos) << message;
    EXPECT_NE(message.find("GiB"), std::string::npos) << message;
  }
}

// Zeroed buffers, from the heap below 4 MiB and as mapped pages from there on: zeros even where
// the same sizes were written and released just before, and an absurd size is the same error as
// allocate's.
TEST(CpuBackend, ZeroedBuffersReadAsZeros) {
  cpu::CpuBackend backend;
  for (size_t bytes : {size_t{100}, (size_t{4} << 20) - 1, size_t{4} << 20, (size_t{9} << 20) + 7}) {
    SCOPED_TRACE(bytes);
    for (int round = 0; round < 2; ++round) {
      auto* ptr = static_cast<unsigned char*>(backend.allocate_zeroed(bytes));
      ASSERT_NE(ptr, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(ptr) % 64, 0u);
      EXPECT_EQ(std::count(ptr, ptr + bytes, 0), static_cast<std::ptrdiff_t>(bytes));
      std::fill(ptr, ptr + bytes, 0xAB);  // dirty memory for the next round to be handed
      backend.release(ptr);
    }
  }
  try {
    backend.allocate_zeroed(size_t{1} << 62);
    FAIL() << "allocating 2^62 zeroed bytes succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of host memory"), std::string::npos) << e.what();
  }
}

// make_resident faults in the front of a mapped buffer as asked, keeps what was written there,
// never reaches past the mapping, and reports heap buffers as resident already.
TEST(CpuBackend, MakeResidentFaultsInTheFrontAndKeepsTheContents) {
  cpu::CpuBackend backend;
  const size_t page = page_bytes();
  const size_t bytes = size_t{16} << 20, front = size_t{6} << 20;
  auto* ptr = static_cast<unsigned char*>(backend.allocate_zeroed(bytes));
  ptr[5] = 7;
  ptr[front - 1] = 9;
  EXPECT_LT(resident_pages(ptr + page, front - 2 * page), (front - 2 * page) / page)
      << "pages nobody wrote should not be resident yet";
  EXPECT_EQ(backend.make_resident(ptr, front), front);
  EXPECT_EQ(resident_pages(ptr, front), front / page);
  EXPECT_EQ(ptr[5], 7);
  EXPECT_EQ(ptr[front - 1], 9);
  EXPECT_EQ(std::count(ptr, ptr + bytes, 0), static_cast<std::ptrdiff_t>(bytes - 2));
  // Asked for more than the buffer holds: the whole (rounded) mapping at most, and no crash.
  const size_t whole = backend.make_resident(ptr, bytes * 4);
  EXPECT_GE(whole, bytes);
  EXPECT_LT(whole, bytes * 4);
  backend.release(ptr);

  auto* small = static_cast<unsigned char*>(backend.allocate_zeroed(1000));
  EXPECT_EQ(backend.make_resident(small, 1000), 1000u);
  backend.release(small);
}

TEST(CpuBackend, PeakRssIsPlausible) {
  const size_t before = cpu::CpuBackend::peak_rss_bytes();
  EXPECT_GT(before, size_t{1} << 20);  // a test binary is larger than 1 MiB
  std::vector<char> touched(size_t{64} << 20, 1);
  EXPECT_GE(cpu::CpuBackend::peak_rss_bytes(), before);
  EXPECT_GE(cpu::CpuBackend::peak_rss_bytes(), touched.size());
}

Tensor f32(DeviceBuffer& b, std::initializer_list<int64_t> shape) {
  return Tensor::dense(b.get(), DType::kF32, shape);
}
Tensor i32(const std::vector<int32_t>& ids) {
  return Tensor::dense(ids.data(), DType::kI32, {static_cast<int64_t>(ids.size())});
}

// q, k and v as [N, NH, hs] views of a packed [N, 3C] projection.
struct Qkv {
  Tensor q, k, v;
};
Qkv packed(float* qkv, int64_t N, int C, int NH) {
  Qkv views;
  Tensor* parts[] = {&views.q, &views.k, &views.v};
  for (int i = 0; i < 3; ++i) {
    *parts[i] = Tensor::dense(qkv + i * C, DType::kF32, {N, NH, C / NH});
    parts[i]->strides[0] = 3 * C;
  }
  return views;
}

// A GPT-2 block's worth of ops through the interface, each compared with the double kernels.
TEST(CpuBackend, OpsEndToEndMatchDoubleReference) {
  cpu::CpuBackend backend;
  Backend& be = backend;
  const int B = 2, T = 6, C = 16, NH = 4, V = 23, N = B * T, OC = 3 * C;
  const ops::AttentionSpec spec{.heads = NH, .kv_heads = NH, .head_dim = C / NH};
  const std::vector<int32_t> tokens = {0, 5, 22, 5, 9, 1, 3, 3, 17, 8, 21, 0};
  const std::vector<int32_t> positions = gpt2::window_positions(B, T);
  const std::vector<float> wte_h = random_floats(V * C, 1), wpe_h = random_floats(T * C, 2),
                           lnw_h = random_floats(C, 3), lnb_h = random_floats(C, 4),
                           w_h = random_floats(OC * C, 5), b_h = random_floats(OC, 6),
                           dy_h = random_floats(N * C, 7);

  DeviceBuffer wte(be, wte_h), wpe(be, wpe_h), lnw(be, lnw_h), lnb(be, lnb_h), w(be, w_h),
      bias(be, b_h);
  DeviceBuffer x(be, N * C), ln(be, N * C), mean(be, N), rstd(be, N), qkv(be, N * OC),
      att(be, B * NH * T * T), y(be, N * C), g(be, N * C), r(be, N * C);
  be.run(ops::Embedding{.out = f32(x, {N, C}), .ids = i32(tokens), .table = f32(wte, {V, C}),
                        .position_ids = i32(positions), .position_table = f32(wpe, {T, C})});
  be.run(ops::LayerNorm{.out = f32(ln, {N, C}), .mean = f32(mean, {N}), .rstd = f32(rstd, {N}),
                        .inp = f32(x, {N, C}), .weight = f32(lnw, {C}), .bias = f32(lnb, {C})});
  be.run(ops::Linear{.out = f32(qkv, {N, OC}), .inp = f32(ln, {N, C}), .weight = f32(w, {OC, C}),
                     .bias = f32(bias, {OC})});
  const Qkv views = packed(qkv.get(), N, C, NH);
  be.run(ops::Attention{.out = f32(y, {N, C}), .record = f32(att, {B * NH * T * T}), .q = views.q,
                        .k = views.k, .v = views.v, .batch = B, .seq = T, .spec = spec});
  be.run(ops::Gelu{.out = f32(g, {N * C}), .inp = f32(y, {N * C})});
  be.run(ops::Add{.out = f32(r, {N * C}), .a = f32(g, {N * C}), .b = f32(x, {N * C})});
  be.synchronize();

  // The same forward pass in double.
  std::vector<double> xd(N * C), lnd(N * C), meand(N), rstdd(N), qkvd(N * OC), attd(B * NH * T * T),
      yd(N * C), gd(N * C), rd(N * C);
  const auto wted = to_double(wte_h), wped = to_double(wpe_h), lnwd = to_double(lnw_h),
             lnbd = to_double(lnb_h), wd = to_double(w_h), bd = to_double(b_h),
             dyd = to_double(dy_h);
  gpt2::encoder_forward(xd.data(), tokens.data(), wted.data(), wped.data(), B, T, C);
  cpu::layernorm_forward(lnd.data(), meand.data(), rstdd.data(), xd.data(), lnwd.data(),
                         lnbd.data(), N, C);
  cpu::matmul_forward(qkvd.data(), lnd.data(), wd.data(), bd.data(), N, C, OC);
  gpt2::attention_forward(yd.data(), attd.data(), qkvd.data(), B, T, C, NH);
  cpu::gelu_forward(gd.data(), yd.data(), N * C);
  cpu::residual_forward(rd.data(), gd.data(), xd.data(), N * C);
  EXPECT_LT(max_rel_error(x.read(), xd), 1e-6);
  EXPECT_LT(max_rel_error(ln.read(), lnd), 1e-5);
  EXPECT_LT(max_rel_error(qkv.read(), qkvd), 1e-5);
  EXPECT_LT(max_rel_error(att.read(), attd), 1e-5);
  EXPECT_LT(max_rel_error(r.read(), rd), 1e-5);

  // Backward through the same ops, from dy at the residual's output.
  DeviceBuffer dy(be, dy_h), dg(be, N * C), dx(be, N * C), dqkv(be, N * OC),
      scratch(be, B * NH * T * T), dln(be, N * C), dw(be, OC * C), db(be, OC), dlnw(be, C),
      dlnb(be, C), dwte(be, V * C), dwpe(be, T * C);
  be.run(ops::Accumulate{.dst = f32(dg, {N * C}), .src = f32(dy, {N * C})});  // both branches
  be.run(ops::Accumulate{.dst = f32(dx, {N * C}), .src = f32(dy, {N * C})});
  DeviceBuffer dyy(be, N * C);
  be.run(ops::GeluBackward{.dinp = f32(dyy, {N * C}), .inp = f32(y, {N * C}),
                           .dout = f32(dg, {N * C})});
  const Qkv grads = packed(dqkv.get(), N, C, NH);
  be.run(ops::AttentionBackward{.dq = grads.q, .dk = grads.k, .dv = grads.v,
                                .scratch = f32(scratch, {B * NH * T * T}),
                                .dout = f32(dyy, {N, C}), .out = f32(y, {N, C}),
                                .record = f32(att, {B * NH * T * T}), .q = views.q,
                                .k = views.k, .v = views.v, .batch = B, .seq = T, .spec = spec});
  be.run(ops::LinearBackward{.dinp = f32(dln, {N, C}), .dweight = f32(dw, {OC, C}),
                             .dbias = f32(db, {OC}), .dout = f32(dqkv, {N, OC}),
                             .inp = f32(ln, {N, C}), .weight = f32(w, {OC, C})});
  be.run(ops::LayerNormBackward{.dinp = f32(dx, {N, C}), .dweight = f32(dlnw, {C}),
                                .dbias = f32(dlnb, {C}), .dout = f32(dln, {N, C}),
                                .inp = f32(x, {N, C}), .weight = f32(lnw, {C}),
                                .mean = f32(mean, {N}), .rstd = f32(rstd, {N})});
  be.run(ops::EmbeddingBackward{.dtable = f32(dwte, {V, C}), .dposition_table = f32(dwpe, {T, C}),
                                .dout = f32(dx, {N, C}), .ids = i32(tokens),
                                .position_ids = i32(positions)});

  std::vector<double> dgd(dyd), dxd(dyd), dyyd(N * C, 0.0), dqkvd(N * OC, 0.0),
      scratchd(attd.size()), dlnd(N * C, 0.0), dwd(OC * C, 0.0), dbd(OC, 0.0), dlnwd(C, 0.0),
      dlnbd(C, 0.0), dwted(V * C, 0.0), dwped(T * C, 0.0);
  cpu::gelu_backward(dyyd.data(), yd.data(), dgd.data(), N * C);
  gpt2::attention_backward(dqkvd.data(), scratchd.data(), dyyd.data(), qkvd.data(), attd.data(), B,
                          T, C, NH);
  cpu::matmul_backward(dlnd.data(), dwd.data(), dbd.data(), dqkvd.data(), lnd.data(), wd.data(), N,
                       C, OC);
  cpu::layernorm_backward(dxd.data(), dlnwd.data(), dlnbd.data(), dlnd.data(), xd.data(),
                          lnwd.data(), meand.data(), rstdd.data(), N, C);
  gpt2::encoder_backward(dwted.data(), dwped.data(), dxd.data(), tokens.data(), B, T, C);
  EXPECT_LT(max_rel_error(dqkv.read(), dqkvd), 1e-4);
  EXPECT_LT(max_rel_error(dw.read(), dwd), 1e-4);
  EXPECT_LT(max_rel_error(db.read(), dbd), 1e-4);
  EXPECT_LT(max_rel_error(dlnw.read(), dlnwd), 1e-4);
  EXPECT_LT(max_rel_error(dwte.read(), dwted), 1e-4);
  EXPECT_LT(max_rel_error(dwpe.read(), dwped), 1e-4);

  // Loss, its gradient in place, the gradient norm and an optimizer step.
  const std::vector<int32_t> targets = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const int LV = 13;  // vocabulary of the toy loss
  DeviceBuffer logits(be, random_floats(N * LV, 8)), losses(be, N);
  const auto logits_d = to_double(logits.read());
  be.run(ops::CrossEntropy{.losses = f32(losses, {N}), .logits = f32(logits, {N, LV}),
                           .targets = i32(targets)});
  be.run(ops::CrossEntropyBackward{.dlogits = f32(logits, {N, LV}),
                                   .logits = f32(logits, {N, LV}), .targets = i32(targets),
                                   .dloss = 1.0f / N});
  std::vector<double> losses_d(N), dlogits_d(N * LV);
  cpu::cross_entropy_forward(losses_d.data(), logits_d.data(), targets.data(), N, LV);
  cpu::cross_entropy_backward(dlogits_d.data(), logits_d.data(), targets.data(), 1.0 / N, N, LV);
  EXPECT_LT(max_rel_error(losses.read(), losses_d), 1e-5);
  EXPECT_LT(max_rel_error(logits.read(), dlogits_d), 1e-5);

  const std::vector<float> dw_h = dw.read();
  double expected_norm2 = 0;
  for (float v : dw_h) expected_norm2 += static_cast<double>(v) * v;
  double norm2 = 0;
  be.run(ops::SumOfSquares{.total = Tensor::dense(&norm2, DType::kF64, {1}),
                           .x = f32(dw, {OC * C})});
  EXPECT_NEAR(norm2, expected_norm2, 1e-9 * expected_norm2);

  DeviceBuffer m(be, OC * C), v(be, OC * C);
  ops::AdamWStep step{.learning_rate = 1e-3f, .weight_decay = 0.1f, .grad_scale = 0.5f};
  be.run(ops::AdamW{.params = f32(w, {OC * C}), .grads = f32(dw, {OC * C}),
                    .m = f32(m, {OC * C}), .v = f32(v, {OC * C}), .step = step});
  std::vector<double> wd2 = wd, md(wd.size(), 0.0), vd(wd.size(), 0.0);
  const auto dw_d = to_double(dw_h);
  cpu::adamw_update(wd2.data(), dw_d.data(), md.data(), vd.data(), wd.size(), 1e-3, 0.9, 0.95, 1e-8,
                    0.1, 1, 0.5);
  EXPECT_LT(max_rel_error(w.read(), wd2), 1e-6);
}

TEST(CpuBackend, DecodeThroughInterfaceMatchesForward) {
  cpu::CpuBackend backend;
  const int B = 2, T = 7, C = 24, NH = 3, max_T = 9, hs = C / NH;
  const ops::AttentionSpec spec{.heads = NH, .kv_heads = NH, .head_dim = hs};
  const std::vector<float> qkv_h = random_floats(B * T * 3 * C, 20);
  DeviceBuffer qkv(backend, qkv_h), out(backend, B * T * C), att(backend, B * NH * T * T);
  const Qkv views = packed(qkv.get(), B * T, C, NH);
  backend.run(ops::Attention{.out = f32(out, {B * T, C}), .record = f32(att, {B * NH * T * T}),
                             .q = views.q, .k = views.k, .v = views.v, .batch = B, .seq = T,
                             .spec = spec});
  const std::vector<float> full = out.read();
  DeviceBuffer k_cache(backend, B * NH * max_T * hs), v_cache(backend, B * NH * max_T * hs),
      step(backend, B * 3 * C), dec(backend, B * C);
  const Qkv step_views = packed(step.get(), B, C, NH);
  auto decode = [&](int pos) {
    backend.run(ops::AttentionDecode{.out = f32(dec, {B, C}), .q = step_views.q,
                                     .k = step_views.k, .v = step_views.v,
                                     .k_cache = f32(k_cache, {B, NH, max_T, hs}),
                                     .v_cache = f32(v_cache, {B, NH, max_T, hs}), .pos = pos,
                                     .spec = spec});
  };
  for (int pos = 0; pos < T; ++pos) {
    for (int b = 0; b < B; ++b) {
      backend.copy_to_device(step.get() + b * 3 * C, qkv_h.data() + (b * T + pos) * 3 * C,
                             3 * C * sizeof(float));
    }
    decode(pos);
    const std::vector<float> got = dec.read();
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c) EXPECT_NEAR(got[b * C + c], full[(b * T + pos) * C + c], 1e-5);
  }
  EXPECT_THROW(decode(max_T), Error);
}

TEST(CpuBackend, BadOperandsAreErrorsNamingTheOpAndOperand) {
  cpu::CpuBackend backend;
  std::vector<float> buf(64);
  const std::vector<int32_t> bad_targets = {0, 5};
  auto t = [&](std::initializer_list<int64_t> shape) {
    return Tensor::dense(buf.data(), DType::kF32, shape);
  };
  try {
    backend.run(ops::CrossEntropy{.losses = t({2}), .logits = t({2, 5}),
                                  .targets = i32(bad_targets)});
    FAIL() << "target 5 with V = 5 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target 5"), std::string::npos) << e.what();
  }
  // 10 channels do not split into 3 heads of a whole size.
  const ops::AttentionSpec bad{.heads = 3, .kv_heads = 2, .head_dim = 3};
  EXPECT_THROW(backend.run(ops::Attention{.out = t({2, 9}), .record = t({12}), .q = t({2, 3, 3}),
                                          .k = t({2, 2, 3}), .v = t({2, 2, 3}), .batch = 1,
                                          .seq = 2, .spec = bad}),
               Error);
  try {
    backend.run(ops::Linear{.out = t({2, 3}), .inp = t({2, 4}), .weight = t({3, 5})});
    FAIL() << "mismatched shapes accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cpu linear: inp must be [*, 5]"), std::string::npos)
        << e.what();
  }
  std::vector<uint16_t> half(8);
  EXPECT_THROW(backend.run(ops::Gelu{.out = t({8}),
                                     .inp = Tensor::dense(half.data(), DType::kBF16, {8})}),
               Error);
  ops::AdamWStep step;
  step.step = 0;
  EXPECT_THROW(backend.run(ops::AdamW{.params = t({4}), .grads = t({4}), .m = t({4}), .v = t({4}),
                                      .step = step}),
               Error);
}

TEST(Registry, CreatesCpuAndRejectsUnknownNames) {
  const std::vector<BackendInfo> backends = list_backends();
  ASSERT_FALSE(backends.empty());
  EXPECT_EQ(backends[0].name, "cpu");
  EXPECT_TRUE(backends[0].available);
  EXPECT_FALSE(backends[0].detail.empty());

  const std::unique_ptr<Backend> cpu_backend = create_backend("cpu");
  ASSERT_NE(cpu_backend, nullptr);
  EXPECT_EQ(cpu_backend->name(), "cpu");

  try {
    create_backend("nope");
    FAIL() << "create_backend(\"nope\") succeeded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("nope"), std::string::npos) << message;
    EXPECT_NE(message.find("cpu"), std::string::npos) << message;  // lists the known devices
  }
}

}  // namespace
}  // namespace switchyard::backend
