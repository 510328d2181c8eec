// gpt-oss's whole-model checks of a device against the CPU backend, shared by the GPU and the
// simulator suites: the parity suite's reference checkpoints (tests/data,
// tools/make_gpt_oss_reference.py) trained and decoded over the paged cache on both, with every
// op native on the device (NativeOpsRecorder names the ones that went through the host fallback);
// bf16 devices held to what bf16 storage alone costs (HostReferenceOnDevice).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/host_fallback.h"
#include "device_tensors.h"
#include "model/checkpoint.h"
#include "model/generator.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "relative_error.h"

namespace switchyard {

namespace ops = backend::ops;

// A backend whose memory is another's: what both wrappers below pass on unchanged.
class MemoryOf : public Backend {
 public:
  explicit MemoryOf(Backend& inner) : inner_(inner) {}
  std::string description() const override { return inner_.description(); }
  void* allocate(size_t bytes) override { return inner_.allocate(bytes); }
  void release(void* ptr) override { inner_.release(ptr); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    inner_.copy_to_device(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    inner_.copy_to_host(dst, src, bytes);
  }
  void fill_zero(void* ptr, size_t bytes) override { inner_.fill_zero(ptr, bytes); }
  void synchronize() override { inner_.synchronize(); }
  bool device_memory_is_host_memory() const override {
    return inner_.device_memory_is_host_memory();
  }
  backend::Precision precision() const override { return inner_.precision(); }

 protected:
  Backend& inner_;
};

class NativeOpsRecorder final : public MemoryOf {
 public:
  explicit NativeOpsRecorder(Backend& inner) : MemoryOf(inner) {}
  const std::set<std::string>& host_ops() const { return host_ops_; }

  std::string name() const override { return inner_.name(); }
  std::optional<size_t> device_memory_peak_bytes() const override {
    return inner_.device_memory_peak_bytes();
  }
  size_t attention_record_floats(const ops::AttentionSpec& spec, int batch,
                                 int seq) const override {
    return inner_.attention_record_floats(spec, batch, seq);
  }
  size_t attention_scratch_floats(const ops::AttentionSpec& spec, int batch,
                                  int seq) const override {
    return inner_.attention_scratch_floats(spec, batch, seq);
  }
  bool supports(backend::OpKind kind, std::span<const DType> dtypes) const override {
    return inner_.supports(kind, dtypes);
  }

#define SWITCHYARD_RECORDED_RUN(Op, name)              \
  void run(const ops::Op& op) override {               \
    if (!inner_.supports(op)) host_ops_.insert(#name); \
    inner_.run(op);                                    \
  }
  SWITCHYARD_OPS(SWITCHYARD_RECORDED_RUN)
#undef SWITCHYARD_RECORDED_RUN

 private:
  std::set<std::string> host_ops_;
};

inline std::string joined(const std::set<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

inline const std::string kGptOssData = SWITCHYARD_TEST_DATA;
constexpr int kReferenceB = 2, kReferenceT = 21;  // the reference batch

inline std::vector<int32_t> read_i32(const model::SafetensorsFile& file, const std::string& name) {
  const std::span<const uint8_t> raw = file.raw(name);
  std::vector<int32_t> values(raw.size() / sizeof(int32_t));
  std::memcpy(values.data(), raw.data(), raw.size());
  return values;
}

inline double relative(double got, double want) { return std::abs(got - want) / std::abs(want); }

// The median over rows of each [V] row's relative error.
inline double median_row_error(const std::vector<float>& got, const std::vector<float>& want, int64_t V) {
  std::vector<double> errors;
  for (size_t r = 0; r + V <= want.size(); r += V) {
    errors.push_back(relative_error(std::vector<float>(got.begin() + r, got.begin() + r + V),
                                    std::vector<float>(want.begin() + r, want.begin() + r + V)));
  }
  std::sort(errors.begin(), errors.end());
  return errors.empty() ? 0.0 : errors[errors.size() / 2];
}

// Teacher-forced decoding over the paged cache: one prefill of the prompt (longer than the
// reference's sliding window of 8), then one token a step; the logits after each.
inline std::vector<float> decode_logits(model::Model& m, const std::vector<int32_t>& prompt,
                                 const std::vector<int32_t>& next) {
  model::Generator generator(m, 1, static_cast<int>(prompt.size() + next.size()) + 1);
  auto [sequence, logits] = generator.start(prompt);
  std::vector<float> all = logits;
  for (int32_t token : next) {
    const std::vector<float> step =
        generator.run({{.sequence = sequence, .tokens = {token}}}).front();
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

// A device whose every op runs the CPU reference on the device's memory (Backend::run_on_host):
// fp32 arithmetic on operands as the device stores them (bf16 activations widened) and results
// rounded back. What it gets wrong against the CPU is the error bf16 storage alone causes, the
// baseline a bf16 device's own kernels are held to.
class HostReferenceOnDevice final : public MemoryOf {
 public:
  explicit HostReferenceOnDevice(Backend& inner) : MemoryOf(inner) {}
  std::string name() const override { return inner_.name() + " (host reference)"; }
  size_t attention_record_floats(const ops::AttentionSpec& spec, int batch,
                                 int seq) const override {
    return backend::host_reference_backend().attention_record_floats(spec, batch, seq);
  }
  size_t attention_scratch_floats(const ops::AttentionSpec& spec, int batch,
                                  int seq) const override {
    return backend::host_reference_backend().attention_scratch_floats(spec, batch, seq);
  }
#define SWITCHYARD_HOST_RUN(Op, name) \
  void run(const ops::Op& op) override { run_on_host(op); }
  SWITCHYARD_OPS(SWITCHYARD_HOST_RUN)
#undef SWITCHYARD_HOST_RUN
};

// Relative errors of one device against the CPU on the reference checkpoint (below).
struct ReferenceErrors {
  double loss = 0, aux_loss = 0, logits = 0, gradients = 0, decode = 0;
};

// The fp32 reference checkpoint trained and decoded on `device` and on `cpu`. With fixed_routers
// the routers are replaced by fixed ones (zero weights, biases 0.5 apart): the reference's closest
// routing decision is 0.02 apart on router logits up to 10, about one bf16 step there, so bf16
// rounding may choose another expert for some rows, which the comparison would take for an
// error. The experts, routing, grouping and combining still all run; three experts sit idle.
inline ReferenceErrors reference_model_errors(Backend& device, Backend& cpu, bool fixed_routers) {
  const std::string dir = kGptOssData + "/gpt_oss_reference_fp32";
  const model::ModelConfig config = model::read_config(dir);
  auto on_device = model::Model::create(device, config);
  auto on_cpu = model::Model::create(cpu, config);
  model::load_weights(*on_device, dir);
  model::load_weights(*on_cpu, dir);
  if (fixed_routers) {
    std::vector<float> params = on_cpu->parameters_to_host();
    for (int l = 0; l < config.num_layers; ++l) {
      const std::string layer = "model.layers." + std::to_string(l) + ".mlp.router.";
      const model::ParameterTensor* w = on_cpu->layout().find(layer + "weight");
      const model::ParameterTensor* b = on_cpu->layout().find(layer + "bias");
      EXPECT_TRUE(w && b);
      if (!w || !b) return {};
      std::fill_n(params.begin() + static_cast<int64_t>(w->offset), w->numel, 0.0f);
      for (int e = 0; e < config.num_experts; ++e) {
        params[b->offset + e] = 0.5f * (config.num_experts - e);
      }
    }
    on_device->parameters_from_host(params);
    on_cpu->parameters_from_host(params);
  }
  const model::SafetensorsFile ref =
      model::SafetensorsFile::open(kGptOssData + "/gpt_oss_reference.safetensors");
  const std::vector<int32_t> inputs = read_i32(ref, "inputs"), targets = read_i32(ref, "targets");
  ReferenceErrors e;
  const float lm_device = on_device->forward(inputs.data(), targets.data(), kReferenceB, kReferenceT);
  const float lm_cpu = on_cpu->forward(inputs.data(), targets.data(), kReferenceB, kReferenceT);
  e.loss = relative(lm_device, lm_cpu);
  e.aux_loss = relative(on_device->auxiliary_loss(), on_cpu->auxiliary_loss());
  e.logits = relative_error(on_device->logits_to_host(), on_cpu->logits_to_host());
  on_device->zero_grad();
  on_cpu->zero_grad();
  on_device->backward();
  on_cpu->backward();
  e.gradients = relative_error(on_device->gradients_to_host(), on_cpu->gradients_to_host());
  const std::vector<int32_t> prompt = read_i32(ref, "greedy.prompt");
  const std::vector<int32_t> greedy = read_i32(ref, "greedy.fp32");
  const std::vector<int32_t> next(greedy.begin(), greedy.begin() + 6);
  e.decode = relative_error(decode_logits(*on_device, prompt, next), decode_logits(*on_cpu, prompt, next));
  return e;
}

// fp32 mode: every error within 1e-4. bf16 mode: within 1.5x what bf16 storage alone causes
// (HostReferenceOnDevice on the same device), or bf16's usual bar of 2e-2 (losses 1e-2) where
// that is looser. On this three-layer reference bf16 storage alone moves the gradients by ~9%:
// small activations rounded at every op, summed over few rows, so 2e-2 is out of reach there
// whatever the kernels do.
// `host_ops_allowed`: the ops a device runs by design through the host fallback (cpu-bf16's fp32
// kernels over widened operands); any other op found on the host fails the check.
inline void expect_native_except(const NativeOpsRecorder& device, const std::set<std::string>& host_ops_allowed) {
  std::set<std::string> unexpected;
  for (const std::string& op : device.host_ops()) {
    if (!host_ops_allowed.contains(op)) unexpected.insert(op);
  }
  EXPECT_TRUE(unexpected.empty()) << "ran on the host: " << joined(unexpected);
}

inline void check_reference_model_trains_and_decodes(Backend& device_backend, Backend& cpu, bool bf16,
                                                     const std::set<std::string>& host_ops_allowed = {}) {
  NativeOpsRecorder device(device_backend);
  const ReferenceErrors got = reference_model_errors(device, cpu, bf16);
  ReferenceErrors bar{1e-4, 1e-4, 1e-4, 1e-4, 1e-4};
  if (bf16) {
    HostReferenceOnDevice storage_only(device_backend);
    const ReferenceErrors base = reference_model_errors(storage_only, cpu, true);
    auto within = [](double base_error, double usual) { return std::max(1.5 * base_error, usual); };
    bar = {within(base.loss, 1e-2), within(base.aux_loss, 1e-2), within(base.logits, 2e-2),
           within(base.gradients, 2e-2), within(base.decode, 2e-2)};
    std::printf("  bf16 storage alone: loss %.2e, logits %.2e, gradients %.2e, decode %.2e\n",
                base.loss, base.logits, base.gradients, base.decode);
  }
  EXPECT_LT(measured("loss", got.loss), bar.loss);
  EXPECT_LT(measured("aux loss", got.aux_loss), bar.aux_loss);
  EXPECT_LT(measured("logits", got.logits), bar.logits);
  EXPECT_LT(measured("gradients", got.gradients), bar.gradients);
  EXPECT_LT(measured("decode", got.decode), bar.decode);
  expect_native_except(device, host_ops_allowed);
}

// The published layout (bf16 matrices, MXFP4 experts, sharded) as inference-only weights, kept as
// stored on the device: the relative errors of its logits and of teacher-forced decoding against
// the CPU. `median_rows`: each [V] row's error, the median over rows (bf16: the routers are the
// reference's, and a close routing decision may go the other way for a few rows, see above).
inline std::pair<double, double> published_checkpoint_errors(Backend& device, Backend& cpu,
                                                             bool median_rows) {
  const std::string dir = kGptOssData + "/gpt_oss_reference";
  const model::ModelConfig config = model::read_config(dir);
  const model::WeightSource source{.checkpoint = dir};
  auto on_device = model::Model::create_frozen(device, config, source);
  auto on_cpu = model::Model::create_frozen(cpu, config, source);
  const model::SafetensorsFile ref =
      model::SafetensorsFile::open(kGptOssData + "/gpt_oss_reference.safetensors");
  const std::vector<int32_t> inputs = read_i32(ref, "inputs");
  on_device->forward(inputs.data(), nullptr, kReferenceB, kReferenceT);
  on_cpu->forward(inputs.data(), nullptr, kReferenceB, kReferenceT);
  const std::vector<float> got = on_device->logits_to_host(), want = on_cpu->logits_to_host();
  const std::vector<int32_t> prompt = read_i32(ref, "greedy.prompt");
  const std::vector<int32_t> greedy = read_i32(ref, "greedy.mxfp4");
  const std::vector<int32_t> next(greedy.begin(), greedy.begin() + 6);
  const std::vector<float> decoded = decode_logits(*on_device, prompt, next);
  const std::vector<float> decoded_cpu = decode_logits(*on_cpu, prompt, next);
  if (!median_rows) return {relative_error(got, want), relative_error(decoded, decoded_cpu)};
  return {median_row_error(got, want, config.vocab_size),
          median_row_error(decoded, decoded_cpu, config.vocab_size)};
}

// fp32 mode widens the bf16 matrices for its products and is held to 1e-4; bf16 mode reads them
// as they are, held to 1.5x what bf16 storage alone costs or 2e-2, whichever is looser.
inline void check_published_mxfp4_checkpoint_runs(Backend& device_backend, Backend& cpu, bool bf16,
                                                  const std::set<std::string>& host_ops_allowed = {}) {
  NativeOpsRecorder device(device_backend);
  const auto [logits, decode] = published_checkpoint_errors(device, cpu, bf16);
  double logits_bar = 1e-4, decode_bar = 1e-4;
  if (bf16) {
    HostReferenceOnDevice storage_only(device_backend);
    const auto [base_logits, base_decode] = published_checkpoint_errors(storage_only, cpu, true);
    std::printf("  bf16 storage alone: logits %.2e, decode %.2e (median rows)\n", base_logits,
                base_decode);
    logits_bar = std::max(1.5 * base_logits, 2e-2);
    decode_bar = std::max(1.5 * base_decode, 2e-2);
  }
  EXPECT_LT(measured("logits", logits), logits_bar);
  EXPECT_LT(measured("decode", decode), decode_bar);
  expect_native_except(device, host_ops_allowed);
}

}  // namespace switchyard
