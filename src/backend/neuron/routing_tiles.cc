#include "backend/neuron/routing_tiles.h"

#include "core/error.h"

namespace switchyard::backend::neuron {

void require_packed(const char* kernel, const char* name, const View& view, int64_t rows,
                    int64_t cols, bool ids) {
  const bool dtype_ok = ids ? view.dtype() == DType::kI32
                            : view.dtype() == DType::kF32 || view.dtype() == DType::kBF16;
  const bool packed = view.free_dims() == 1 && view.free_dim(0).stride == 1 &&
                      (view.partitions() == 1 || view.partition_stride() == cols);
  require(view.memory() == Memory::kHbm && dtype_ok && packed && view.partitions() == rows &&
              view.free_size() == cols,
          "{}: {} must be a dense HBM {} tensor [{}, {}], got {}", kernel, name,
          ids ? "int32" : "fp32 or bf16", rows, cols, view.describe());
}

void expert_iota(NeuronCore& core, const View& out) { core.iota(out, 0.0f, 0.0f, {1.0f}); }

void one_hot(NeuronCore& core, const View& out, const View& experts, const View& choices,
             OneHotLayout layout, Engine engine) {
  const int64_t E = experts.free_size(), k = choices.free_size();
  // [R, E] and [R, k] as [R, E, k] (or [R, k, E]) with the other axis repeated (stride 0).
  if (layout == OneHotLayout::kExpertMajor) {
    core.tensor_tensor(out, experts.split(0, 1).broadcast(1, k), AluOp::kIsEqual,
                       choices.split(0, k).broadcast(0, E), engine);
  } else {
    core.tensor_tensor(out, experts.split(0, E).broadcast(0, k), AluOp::kIsEqual,
                       choices.split(0, 1).broadcast(1, E), engine);
  }
}

}  // namespace switchyard::backend::neuron
