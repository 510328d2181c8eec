// trn1-sim / trn2-sim: the backend kernel set run as tile programs on a simulated NeuronCore.
//
// Device memory is host memory holding fp32 values (the Backend interface is fp32), capped at the
// simulated core's share of HBM. Each kernel call is one launch (kernel_launch.h): activations
// cross kernel boundaries as bf16 in bf16 mode, as the hardware would store them, while
// parameters, gradients of parameters, AdamW state and statistics stay fp32 (master weights).
// Matmul operands and activation tiles are bf16 (or fp32 in the fp32 mode used to check the
// kernels against the CPU backend). Every launch advances the core's simulated clock;
// simulation_report() says how far and where the time went.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <map>

#include "backend/backend.h"
#include "backend/neuron/kernel_support.h"
#include "neuron/config.h"

namespace switchyard::backend::neuron {

enum class SimPrecision { kBf16, kFp32 };

class NeuronSimBackend final : public Backend {
 public:
  // target: "trn1" or "trn2".
  NeuronSimBackend(const std::string& target, SimPrecision precision);
  ~NeuronSimBackend() override;

  std::string name() const override;
  std::string description() const override;

  void* allocate(size_t bytes) override;
  void release(void* ptr) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* ptr, size_t bytes) override;

  std::optional<SimulationReport> simulation_report() const override;
  void start_trace() override;
  void finish_trace(const std::string& path) override;

  void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                       int T, int C) override;
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                        int T, int C) override;
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override;
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override;
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int C, int OC) override;
  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int N, int C, int OC) override;
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                         int NH) override;
  void attention_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                          const float* qkv, const float* att, int B, int T, int C,
                          int NH) override;
  void gelu_forward(float* out, const float* inp, size_t N) override;
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) override;
  void residual_forward(float* out, const float* a, const float* b, size_t N) override;
  void accumulate(float* dst, const float* src, size_t N) override;
  void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int N,
                             int V) override;
  void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                              float dloss, int N, int V) override;
  double sum_of_squares(const float* x, size_t N) override;
  void adamw_update(float* params, const float* grads, float* m, float* v, size_t N,
                    const AdamWStep& step) override;
  void attention_decode(float* out, const float* qkv, float* k_cache, float* v_cache, int B,
                        int pos, int max_T, int C, int NH) override;

 private:
  std::string target_;
  SimPrecision precision_;
  DType compute_;      // matmul operands and activation tiles
  DType activations_;  // activations in HBM
  std::unique_ptr<NeuronCore> core_;
  // Rows of `cols` floats from `row0` to the end of its device allocation: the extent of a table
  // (the token embedding) whose row count the kernel interface does not pass.
  int64_t rows_to_allocation_end(const float* row0, int cols) const;

  std::map<const char*, size_t> allocations_;  // start -> bytes
  size_t allocated_bytes_ = 0;
};

// "trn2-sim" -> ("trn2", bf16); "trn2-sim-fp32" -> ("trn2", fp32). False for other names.
bool parse_sim_device(const std::string& name, std::string& target, SimPrecision& precision);
// One line describing a simulator device by name, without creating it.
std::string describe_sim_device(const std::string& name);
// The simulator devices the registry lists.
const std::vector<std::string>& sim_device_names();

}  // namespace switchyard::backend::neuron
