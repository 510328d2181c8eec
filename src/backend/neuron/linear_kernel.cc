#include "backend/neuron/linear_kernel.h"

#include "core/error.h"
#include "neuron/gemm_kernel.h"

namespace switchyard::backend::neuron {

namespace {

using ::switchyard::neuron::GemmJob;

// ---- Shape checks.

void require_matrix(const char* kernel, const char* name, const View& v) {
  require(v.allocation() >= 0, "{}: {} is missing (an empty View)", kernel, name);
  require(v.memory() == Memory::kHbm && v.free_dims() == 1,
          "{}: {} must be a 2-D HBM tensor [rows, cols], got {}", kernel, name, v.describe());
  require(v.dtype() != DType::kI32, "{}: {} must be a float tensor, got int32", kernel, name);
}

void require_shape(const char* kernel, const char* name, const View& v, int64_t rows,
                   int64_t cols, const char* expected) {
  require_matrix(kernel, name, v);
  require(v.partitions() == rows && v.free_size() == cols, "{}: {} is {}x{}, expected {} = {}x{}",
          kernel, name, v.partitions(), v.free_size(), expected, rows, cols);
}

}  // namespace

void linear_forward(NeuronCore& core, const View& out, const View& inp, const View& weight,
                    const View& bias, DType compute) {
  const char* kernel = "linear_forward";
  require_compute(kernel, compute);
  require_matrix(kernel, "inp", inp);
  require_matrix(kernel, "weight", weight);
  const int64_t N = inp.partitions();
  const int64_t C = inp.free_size();
  const int64_t OC = weight.partitions();
  require(weight.free_size() == C, "{}: weight is {}x{} but inp has C = {} columns (expected {}x{})",
          kernel, OC, weight.free_size(), C, OC, C);
  require_shape(kernel, "out", out, N, OC, "[N, OC]");
  if (present(bias)) require_shape(kernel, "bias", bias, 1, OC, "[1, OC]");

  KernelScope scope(core, kernel);
  GemmJob job;
  job.name = kernel;
  job.stationary = {inp, true};   // inp^T [C, N]
  job.moving = {weight, true};    // weight^T [C, OC]
  job.out = out;
  job.bias = bias;
  job.compute = compute;
  ::switchyard::neuron::gemm(core, job);
}

void linear_backward(NeuronCore& core, const View& dinp, const View& dweight, const View& dbias,
                     const View& dout, const View& inp, const View& weight, DType compute,
                     LinearGradientWrites overwrite) {
  const char* kernel = "linear_backward";
  require_compute(kernel, compute);
  require_matrix(kernel, "dout", dout);
  require_matrix(kernel, "inp", inp);
  require_matrix(kernel, "weight", weight);
  const int64_t N = dout.partitions();
  const int64_t OC = dout.free_size();
  const int64_t C = inp.free_size();
  require(inp.partitions() == N, "{}: inp has {} rows but dout has N = {}", kernel,
          inp.partitions(), N);
  require_shape(kernel, "weight", weight, OC, C, "[OC, C]");
  require_shape(kernel, "dweight", dweight, OC, C, "[OC, C]");
  if (present(dinp)) require_shape(kernel, "dinp", dinp, N, C, "[N, C]");
  if (present(dbias)) require_shape(kernel, "dbias", dbias, 1, OC, "[1, OC]");

  KernelScope scope(core, kernel);
  if (present(dinp)) {
    GemmJob job;
    job.name = "linear_backward.dinp";
    job.stationary = {dout, true};   // dout^T [OC, N]
    job.moving = {weight, false};    // weight [OC, C]
    job.out = dinp;
    job.accumulate = !overwrite.set_dinp;
    job.compute = compute;
    ::switchyard::neuron::gemm(core, job);
  }
  GemmJob job;
  job.name = "linear_backward.dweight";
  job.stationary = {dout, false};  // dout [N, OC]
  job.moving = {inp, false};       // inp [N, C]
  job.out = dweight;
  job.accumulate = !overwrite.set_params;
  job.column_sums = dbias;
  job.compute = compute;
  ::switchyard::neuron::gemm(core, job);
}

}  // namespace switchyard::backend::neuron
