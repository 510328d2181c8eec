// CpuBackend through the virtual Backend interface: memory, every kernel end to end on small shapes
// (against the double-precision kernel templates, which cpu_kernels_test checks independently),
// argument errors, and the registry.
#include "backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/rng.h"
#include "random_data.h"

namespace switchyard::backend {
namespace {

using switchyard::random_floats;

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

TEST(CpuBackend, PeakRssIsPlausible) {
  const size_t before = cpu::CpuBackend::peak_rss_bytes();
  EXPECT_GT(before, size_t{1} << 20);  // a test binary is larger than 1 MiB
  std::vector<char> touched(size_t{64} << 20, 1);
  EXPECT_GE(cpu::CpuBackend::peak_rss_bytes(), before);
  EXPECT_GE(cpu::CpuBackend::peak_rss_bytes(), touched.size());
}

// A GPT-2 block's worth of kernels through the interface, each compared with the double kernels.
TEST(CpuBackend, KernelsEndToEndMatchDoubleReference) {
  cpu::CpuBackend backend;
  Backend& be = backend;
  const int B = 2, T = 6, C = 16, NH = 4, V = 23, N = B * T, OC = 3 * C;
  const std::vector<int32_t> tokens = {0, 5, 22, 5, 9, 1, 3, 3, 17, 8, 21, 0};
  const std::vector<float> wte_h = random_floats(V * C, 1), wpe_h = random_floats(T * C, 2),
                           lnw_h = random_floats(C, 3), lnb_h = random_floats(C, 4),
                           w_h = random_floats(OC * C, 5), b_h = random_floats(OC, 6),
                           dy_h = random_floats(N * C, 7);

  DeviceBuffer wte(be, wte_h), wpe(be, wpe_h), lnw(be, lnw_h), lnb(be, lnb_h), w(be, w_h),
      bias(be, b_h);
  DeviceBuffer x(be, N * C), ln(be, N * C), mean(be, N), rstd(be, N), qkv(be, N * OC),
      att(be, B * NH * T * T), y(be, N * C), g(be, N * C), r(be, N * C);
  be.encoder_forward(x.get(), tokens.data(), wte.get(), wpe.get(), B, T, C);
  be.layernorm_forward(ln.get(), mean.get(), rstd.get(), x.get(), lnw.get(), lnb.get(), N, C);
  be.matmul_forward(qkv.get(), ln.get(), w.get(), bias.get(), N, C, OC);
  be.attention_forward(y.get(), att.get(), qkv.get(), B, T, C, NH);
  be.gelu_forward(g.get(), y.get(), N * C);
  be.residual_forward(r.get(), g.get(), x.get(), N * C);
  be.synchronize();

  // The same forward pass in double.
  std::vector<double> xd(N * C), lnd(N * C), meand(N), rstdd(N), qkvd(N * OC), attd(B * NH * T * T),
      yd(N * C), gd(N * C), rd(N * C);
  const auto wted = to_double(wte_h), wped = to_double(wpe_h), lnwd = to_double(lnw_h),
             lnbd = to_double(lnb_h), wd = to_double(w_h), bd = to_double(b_h),
             dyd = to_double(dy_h);
  cpu::encoder_forward(xd.data(), tokens.data(), wted.data(), wped.data(), B, T, C);
  cpu::layernorm_forward(lnd.data(), meand.data(), rstdd.data(), xd.data(), lnwd.data(),
                         lnbd.data(), N, C);
  cpu::matmul_forward(qkvd.data(), lnd.data(), wd.data(), bd.data(), N, C, OC);
  cpu::attention_forward(yd.data(), attd.data(), qkvd.data(), B, T, C, NH);
  cpu::gelu_forward(gd.data(), yd.data(), N * C);
  cpu::residual_forward(rd.data(), gd.data(), xd.data(), N * C);
  EXPECT_LT(max_rel_error(x.read(), xd), 1e-6);
  EXPECT_LT(max_rel_error(ln.read(), lnd), 1e-5);
  EXPECT_LT(max_rel_error(qkv.read(), qkvd), 1e-5);
  EXPECT_LT(max_rel_error(att.read(), attd), 1e-5);
  EXPECT_LT(max_rel_error(r.read(), rd), 1e-5);

  // Backward through the same kernels, from dy at the residual's output.
  DeviceBuffer dy(be, dy_h), dg(be, N * C), dx(be, N * C), dqkv(be, N * OC),
      scratch(be, B * NH * T * T), dln(be, N * C), dw(be, OC * C), db(be, OC), dlnw(be, C),
      dlnb(be, C), dwte(be, V * C), dwpe(be, T * C);
  be.accumulate(dg.get(), dy.get(), N * C);  // residual: both branches get dy
  be.accumulate(dx.get(), dy.get(), N * C);
  DeviceBuffer dyy(be, N * C);
  be.gelu_backward(dyy.get(), y.get(), dg.get(), N * C);
  be.attention_backward(dqkv.get(), scratch.get(), dyy.get(), y.get(), qkv.get(), att.get(), B, T, C,
                        NH);
  be.matmul_backward(dln.get(), dw.get(), db.get(), dqkv.get(), ln.get(), w.get(), N, C, OC);
  be.layernorm_backward(dx.get(), dlnw.get(), dlnb.get(), dln.get(), x.get(), lnw.get(), mean.get(),
                        rstd.get(), N, C);
  be.encoder_backward(dwte.get(), dwpe.get(), dx.get(), tokens.data(), B, T, C);

  std::vector<double> dgd(dyd), dxd(dyd), dyyd(N * C, 0.0), dqkvd(N * OC, 0.0),
      scratchd(attd.size()), dlnd(N * C, 0.0), dwd(OC * C, 0.0), dbd(OC, 0.0), dlnwd(C, 0.0),
      dlnbd(C, 0.0), dwted(V * C, 0.0), dwped(T * C, 0.0);
  cpu::gelu_backward(dyyd.data(), yd.data(), dgd.data(), N * C);
  cpu::attention_backward(dqkvd.data(), scratchd.data(), dyyd.data(), qkvd.data(), attd.data(), B,
                          T, C, NH);
  cpu::matmul_backward(dlnd.data(), dwd.data(), dbd.data(), dqkvd.data(), lnd.data(), wd.data(), N,
                       C, OC);
  cpu::layernorm_backward(dxd.data(), dlnwd.data(), dlnbd.data(), dlnd.data(), xd.data(),
                          lnwd.data(), meand.data(), rstdd.data(), N, C);
  cpu::encoder_backward(dwted.data(), dwped.data(), dxd.data(), tokens.data(), B, T, C);
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
  be.cross_entropy_forward(losses.get(), logits.get(), targets.data(), N, LV);
  be.cross_entropy_backward(logits.get(), logits.get(), targets.data(), 1.0f / N, N, LV);
  std::vector<double> losses_d(N), dlogits_d(N * LV);
  cpu::cross_entropy_forward(losses_d.data(), logits_d.data(), targets.data(), N, LV);
  cpu::cross_entropy_backward(dlogits_d.data(), logits_d.data(), targets.data(), 1.0 / N, N, LV);
  EXPECT_LT(max_rel_error(losses.read(), losses_d), 1e-5);
  EXPECT_LT(max_rel_error(logits.read(), dlogits_d), 1e-5);

  const std::vector<float> dw_h = dw.read();
  double expected_norm2 = 0;
  for (float v : dw_h) expected_norm2 += static_cast<double>(v) * v;
  EXPECT_NEAR(be.sum_of_squares(dw.get(), dw_h.size()), expected_norm2, 1e-9 * expected_norm2);

  DeviceBuffer m(be, OC * C), v(be, OC * C);
  AdamWStep step;
  step.learning_rate = 1e-3f;
  step.weight_decay = 0.1f;
  step.grad_scale = 0.5f;
  be.adamw_update(w.get(), dw.get(), m.get(), v.get(), dw_h.size(), step);
  std::vector<double> wd2 = wd, md(wd.size(), 0.0), vd(wd.size(), 0.0);
  const auto dw_d = to_double(dw_h);
  cpu::adamw_update(wd2.data(), dw_d.data(), md.data(), vd.data(), wd.size(), 1e-3, 0.9, 0.95, 1e-8,
                    0.1, 1, 0.5);
  EXPECT_LT(max_rel_error(w.read(), wd2), 1e-6);
}

TEST(CpuBackend, DecodeThroughInterfaceMatchesForward) {
  cpu::CpuBackend backend;
  const int B = 2, T = 7, C = 24, NH = 3, max_T = 9;
  const std::vector<float> qkv_h = random_floats(B * T * 3 * C, 20);
  DeviceBuffer qkv(backend, qkv_h), out(backend, B * T * C), att(backend, B * NH * T * T);
  backend.attention_forward(out.get(), att.get(), qkv.get(), B, T, C, NH);
  const std::vector<float> full = out.read();
  DeviceBuffer k_cache(backend, B * NH * max_T * (C / NH)),
      v_cache(backend, B * NH * max_T * (C / NH)), step(backend, B * 3 * C), dec(backend, B * C);
  for (int pos = 0; pos < T; ++pos) {
    for (int b = 0; b < B; ++b) {
      backend.copy_to_device(step.get() + b * 3 * C, qkv_h.data() + (b * T + pos) * 3 * C,
                             3 * C * sizeof(float));
    }
    backend.attention_decode(dec.get(), step.get(), k_cache.get(), v_cache.get(), B, pos, max_T, C,
                             NH);
    const std::vector<float> got = dec.read();
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c) EXPECT_NEAR(got[b * C + c], full[(b * T + pos) * C + c], 1e-5);
  }
  EXPECT_THROW(backend.attention_decode(dec.get(), step.get(), k_cache.get(), v_cache.get(), B,
                                        max_T, max_T, C, NH),
               Error);
}

TEST(CpuBackend, BadArgumentsAreErrors) {
  cpu::CpuBackend backend;
  std::vector<float> buf(64);
  const std::vector<int32_t> bad_targets = {0, 5};
  try {
    backend.cross_entropy_forward(buf.data(), buf.data(), bad_targets.data(), 2, 5);
    FAIL() << "target 5 with V = 5 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target 5"), std::string::npos) << e.what();
  }
  EXPECT_THROW(backend.attention_forward(buf.data(), buf.data(), buf.data(), 1, 2, 10, 3), Error);
  EXPECT_THROW(backend.matmul_forward(buf.data(), buf.data(), buf.data(), nullptr, -1, 2, 2),
               Error);
  AdamWStep step;
  step.step = 0;
  EXPECT_THROW(backend.adamw_update(buf.data(), buf.data(), buf.data(), buf.data(), 4, step),
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
