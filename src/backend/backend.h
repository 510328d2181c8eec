// The kernel set every backend implements, and the memory interface it owns.
//
// The model is written once as a sequence of calls into this interface; nothing above it knows which
// chip runs. All pointers passed to kernels are device pointers returned by allocate() (host memory
// for the CPU backend). Tensors are dense and row-major.
//
// Element types: parameters, parameter gradients, AdamW moments, LayerNorm statistics (mean, rstd),
// losses and the attention record are fp32. Every other tensor (activations, their gradients,
// logits, the KV cache) is an *activation tensor*, stored in the backend's activation type:
// activation_bytes() says its size (4: fp32; 2: bf16 on mixed-precision devices). Activation
// tensors are passed as float* whatever their type; only the backend reads or writes them, and
// the host moves them with activations_to_host / activations_from_host, which convert to and from
// fp32.
//
// Conventions, shared by every kernel:
//   B batch, T sequence length, C channels, NH heads, hs = C / NH, V vocabulary, N = rows (often B*T),
//   OC output channels. Weights of linear layers are [OC, C] (PyTorch nn.Linear layout).
//   Backward kernels ACCUMULATE (+=) into every gradient they write, so callers zero gradients once
//   per step and gradient accumulation and residual branches need no extra code. The only exception
//   is cross_entropy_backward, which overwrites its output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace switchyard::backend {

// Hyper-parameters of one AdamW update (decoupled weight decay, as torch.optim.AdamW).
struct AdamWStep {
  float learning_rate = 0;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float epsilon = 1e-8f;
  float weight_decay = 0;
  int step = 1;            // 1-based step count, for bias correction
  float grad_scale = 1.0f; // gradients are multiplied by this first (global-norm clipping)
};

// Where a simulator backend's simulated device time went, summed over all work so far. Callers
// take the difference of two reports to time a span of work (one training step, say).
struct SimulationReport {
  std::string target;       // "trn2"
  std::string core;         // "NeuronCore-v3"
  int cores_per_chip = 1;   // the simulated core is one of these; a chip runs that many copies
  double total_ns = 0;      // simulated time of all work issued so far
  struct Engine {
    std::string name;       // "TensorE", "VectorE", "ScalarE", "GpSimd", "DMA0", ...
    double busy_ns = 0;
  };
  std::vector<Engine> engines;
  double hbm_bytes = 0;     // read + written
  double matmul_flops = 0;
  int64_t instructions = 0;  // issued so far, over all engines and DMA queues
  double peak_tflops = 0;   // per core, for the dtype the backend's matmuls use
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Registry name, e.g. "cpu".
  virtual std::string name() const = 0;
  // One line describing the device this backend runs on.
  virtual std::string description() const = 0;

  // ---- memory ----
  // Allocates `bytes` of device memory (64-byte aligned); throws Error naming the size on failure.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* ptr, size_t bytes) = 0;
  // Waits for all queued work (no-op where kernels run synchronously).
  virtual void synchronize() {}

  // ---- element types and sizes the model plans its memory with ----
  // Bytes per element of activation tensors (see the header comment).
  virtual size_t activation_bytes() const { return sizeof(float); }
  // `count` activation elements between the device and host fp32 arrays (converting when the
  // activation type is not fp32).
  virtual void activations_to_host(float* dst, const float* src, size_t count) {
    copy_to_host(dst, src, count * sizeof(float));
  }
  virtual void activations_from_host(float* dst, const float* src, size_t count) {
    copy_to_device(dst, src, count * sizeof(float));
  }
  // fp32 elements of the record attention_forward keeps for attention_backward (`att`), and of the
  // scratch attention_backward uses, for B sequences of T positions and NH heads. The defaults
  // hold the full T x T probabilities; flash-style backends keep per-row statistics only.
  virtual size_t attention_record_floats(int B, int T, int NH) const {
    return static_cast<size_t>(B) * NH * T * T;
  }
  virtual size_t attention_scratch_floats(int B, int T, int NH) const {
    return attention_record_floats(B, T, NH);
  }

  // Most device memory held at once so far (allocations and the backend's own scratch), on
  // devices with memory of their own; nullopt where device memory is host memory.
  virtual std::optional<size_t> device_memory_peak_bytes() const { return std::nullopt; }

  // ---- simulators only ----
  // The simulated time so far; nullopt on real devices.
  virtual std::optional<SimulationReport> simulation_report() const { return std::nullopt; }
  // Starts recording every simulated instruction for a Chrome trace (Perfetto) written to `path`
  // by finish_trace(). Real devices throw Error.
  virtual void start_trace();
  virtual void finish_trace(const std::string& path);

  // ---- forward and backward kernels ----

  // out[B,T,C] = wte[tokens[b,t], :] + wpe[t, :]. tokens[B,T] are already range-checked.
  virtual void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                               int B, int T, int C) = 0;
  // dwte[V,C] += scatter of dout by token; dwpe[T,C] += sum over batch of dout.
  virtual void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                                int B, int T, int C) = 0;

  // out[N,C] = (inp - mean) * rstd * weight + bias, per row; mean[N] and rstd[N] are saved for the
  // backward pass. epsilon 1e-5 as torch.nn.LayerNorm.
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* weight, const float* bias, int N, int C) = 0;
  virtual void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                  const float* inp, const float* weight, const float* mean,
                                  const float* rstd, int N, int C) = 0;

  // out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC] (bias may be null).
  virtual void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                              int N, int C, int OC) = 0;
  // dinp[N,C] += dout @ weight; dweight[OC,C] += dout^T @ inp; dbias[OC] += column sums of dout.
  // dbias may be null (no bias); dinp may be null (gradient not needed, e.g. for input tokens).
  virtual void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, int N, int C, int OC) = 0;

  // Causal multi-head self-attention. qkv[B,T,3C] holds q, k, v side by side, each [NH, hs] per
  // position (Hugging Face GPT-2 order); out[B,T,C] receives the heads' outputs concatenated.
  // Scores are scaled by 1/sqrt(hs). att (attention_record_floats) is the backend's record for
  // the backward pass: the CPU backend stores the softmax probabilities there (entries above the
  // diagonal zero); flash-style backends store only per-row softmax statistics and recompute.
  virtual void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C,
                                 int NH) = 0;
  // dqkv[B,T,3C] += gradient of out with respect to qkv, given dout (the gradient of out) and
  // out itself. scratch holds attention_scratch_floats.
  virtual void attention_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                                  const float* qkv, const float* att, int B, int T, int C,
                                  int NH) = 0;

  // GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  virtual void gelu_forward(float* out, const float* inp, size_t N) = 0;
  virtual void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) = 0;

  // out[N] = a + b.
  virtual void residual_forward(float* out, const float* a, const float* b, size_t N) = 0;

  // ---- fused forms: the same results as the kernels they combine, in fewer passes ----
  // residual[N,C] = a + b, then out = layernorm(residual) with mean and rstd as layernorm_forward.
  virtual void residual_layernorm_forward(float* residual, float* out, float* mean, float* rstd,
                                          const float* a, const float* b, const float* weight,
                                          const float* bias, int N, int C) {
    residual_forward(residual, a, b, static_cast<size_t>(N) * C);
    layernorm_forward(out, mean, rstd, residual, weight, bias, N, C);
  }
  // pre[N,OC] = inp @ weight^T + bias (kept for the backward pass), out = gelu(pre).
  virtual void matmul_gelu_forward(float* pre, float* out, const float* inp, const float* weight,
                                   const float* bias, int N, int C, int OC) {
    matmul_forward(pre, inp, weight, bias, N, C, OC);
    gelu_forward(out, pre, static_cast<size_t>(N) * OC);
  }
  // dst[N] += src: the backward pass of a residual add, used for each branch.
  virtual void accumulate(float* dst, const float* src, size_t N) = 0;

  // losses[N] = -log softmax(logits[n, :V])[targets[n]].
  virtual void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                     int N, int V) = 0;
  // dlogits[N,V] = (softmax(logits) - onehot(targets)) * dloss. Overwrites; dlogits may alias logits.
  virtual void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                                      float dloss, int N, int V) = 0;

  // Sum of squares of x[N] in double precision (for the global gradient norm).
  virtual double sum_of_squares(const float* x, size_t N) = 0;

  // One AdamW update of params[N] from grads[N] * step.grad_scale, moments m[N] and v[N].
  virtual void adamw_update(float* params, const float* grads, float* m, float* v, size_t N,
                            const AdamWStep& step) = 0;

  // ---- a training step's statistics, kept in device memory until the step is done ----
  // `total` points to one double in device memory. On a GPU these queue work and return, so a
  // step needs no copy back to the host until it ends; the defaults go through the host.
  // *total += scale * (sum of x[N]), summed in double (the loss of a micro-batch).
  virtual void accumulate_sum(double* total, const float* x, size_t N, double scale);
  // *total = sum of squares of x[N] in double, as sum_of_squares.
  virtual void sum_of_squares_to(double* total, const float* x, size_t N);
  // adamw_update with the gradients also scaled by clip_scale(global_norm(*grad_sum_of_squares),
  // clip): global-norm clipping from a norm that never leaves the device.
  virtual void adamw_update_clipped(float* params, const float* grads, float* m, float* v, size_t N,
                                    const AdamWStep& step, const double* grad_sum_of_squares,
                                    float clip);

  // ---- generation with a KV cache ----

  // One decoding position for a batch of sequences: qkv[B,3C] is the new position's projection.
  // Writes its k and v into k_cache and v_cache ([B, NH, max_T, hs]) at `pos`, then attends q over
  // positions 0..pos and writes out[B,C].
  virtual void attention_decode(float* out, const float* qkv, float* k_cache, float* v_cache, int B,
                                int pos, int max_T, int C, int NH) = 0;
};

// A backend the registry knows, whether or not it can run here.
struct BackendInfo {
  std::string name;
  bool available = false;
  std::string detail;  // device description when available, otherwise why not
};

// Every backend built into this binary.
std::vector<BackendInfo> list_backends();
// Creates a backend by name; throws Error for an unknown name (listing the known ones) or one that
// cannot run on this machine (saying why).
std::unique_ptr<Backend> create_backend(const std::string& name);

}  // namespace switchyard::backend
