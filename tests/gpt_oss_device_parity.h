// gpt-oss's whole-model checks of a device against the CPU backend, shared by the GPU and the
// simulator suites: the parity suite's reference checkpoints (tests/data,
// tools/make_gpt_oss_reference.py) trained and decoded over the paged cache on both, with every
// op native on the device (NativeOpsRecorder names the ones that went through the host fallback).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "device_tensors.h"
#include "model/checkpoint.h"
#include "model/generator.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "relative_error.h"

namespace switchyard {

namespace ops = backend::ops;

class NativeOpsRecorder final : public Backend {
 public:
  explicit NativeOpsRecorder(Backend& inner) : inner_(inner) {}
  const std::set<std::string>& host_ops() const { return host_ops_; }

  std::string name() const override { return inner_.name(); }
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
  std::optional<size_t> device_memory_peak_bytes() const override {
    return inner_.device_memory_peak_bytes();
  }
  backend::Precision precision() const override { return inner_.precision(); }
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
  Backend& inner_;
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

// The fp32 reference checkpoint trained and decoded on both. In bf16 mode the routers are replaced
// by fixed ones (zero weights, biases 0.5 apart): the reference's closest routing decision is 0.02
// apart on router logits up to 10, about one bf16 step there, so bf16 rounding may choose another
// expert for some rows, which the comparison below would take for an error. The experts, routing,
// grouping and combining still all run; three experts sit idle.
inline void check_reference_model_trains_and_decodes(Backend& device_backend, Backend& cpu, bool bf16) {
  const std::string dir = kGptOssData + "/gpt_oss_reference_fp32";
  const model::ModelConfig config = model::read_config(dir);
  NativeOpsRecorder device(device_backend);
  auto on_device = model::Model::create(device, config);
  auto on_cpu = model::Model::create(cpu, config);
  model::load_weights(*on_device, dir);
  model::load_weights(*on_cpu, dir);
  if (bf16) {
    std::vector<float> params = on_cpu->parameters_to_host();
    for (int l = 0; l < config.num_layers; ++l) {
      const std::string layer = "model.layers." + std::to_string(l) + ".mlp.router.";
      const model::ParameterTensor* w = on_cpu->layout().find(layer + "weight");
      const model::ParameterTensor* b = on_cpu->layout().find(layer + "bias");
      ASSERT_TRUE(w && b);
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
  // The bars the backend was built to: bf16 within 2e-2 (losses 1e-2), fp32 within 1e-4.
  const double bar = bf16 ? 2e-2 : 1e-4, loss_bar = bf16 ? 1e-2 : 1e-4;

  const float lm_device = on_device->forward(inputs.data(), targets.data(), kReferenceB, kReferenceT);
  const float lm_cpu = on_cpu->forward(inputs.data(), targets.data(), kReferenceB, kReferenceT);
  EXPECT_LT(measured("loss", relative(lm_device, lm_cpu)), loss_bar);
  EXPECT_LT(measured("aux loss", relative(on_device->auxiliary_loss(), on_cpu->auxiliary_loss())),
            loss_bar);
  EXPECT_LT(measured("logits", relative_error(on_device->logits_to_host(), on_cpu->logits_to_host())),
            bar);
  on_device->zero_grad();
  on_cpu->zero_grad();
  on_device->backward();
  on_cpu->backward();
  EXPECT_LT(measured("gradients",
                     relative_error(on_device->gradients_to_host(), on_cpu->gradients_to_host())),
            bar);

  const std::vector<int32_t> prompt = read_i32(ref, "greedy.prompt");
  const std::vector<int32_t> greedy = read_i32(ref, "greedy.fp32");
  const std::vector<int32_t> next(greedy.begin(), greedy.begin() + 6);
  EXPECT_LT(measured("decode", relative_error(decode_logits(*on_device, prompt, next),
                                              decode_logits(*on_cpu, prompt, next))),
            bar);
  EXPECT_TRUE(device.host_ops().empty()) << "ran on the host: " << joined(device.host_ops());
}

// The published layout (bf16 matrices, MXFP4 experts, sharded) as inference-only weights, kept as
// stored on the device. fp32 mode widens the bf16 matrices for its products; bf16 mode reads them as
// they are. The routers are the reference's: in bf16 a close routing decision may go the other
// way for a few rows (see above), so bf16 is held to its bar on the median row.
inline void check_published_mxfp4_checkpoint_runs(Backend& device_backend, Backend& cpu, bool bf16) {
  const std::string dir = kGptOssData + "/gpt_oss_reference";
  const model::ModelConfig config = model::read_config(dir);
  NativeOpsRecorder device(device_backend);
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
  if (bf16) {
    EXPECT_LT(measured("logits", median_row_error(got, want, config.vocab_size)), 2e-2);
    EXPECT_LT(measured("decode", median_row_error(decoded, decoded_cpu, config.vocab_size)), 2e-2);
  } else {
    EXPECT_LT(measured("logits", relative_error(got, want)), 1e-4);
    EXPECT_LT(measured("decode", relative_error(decoded, decoded_cpu)), 1e-4);
  }
  EXPECT_TRUE(device.host_ops().empty()) << "ran on the host: " << joined(device.host_ops());
}

}  // namespace switchyard
