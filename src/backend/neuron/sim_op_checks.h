// Operand checks the trn*-sim backend's ops share (neuron_sim_ops.cc, neuron_sim_moe_ops.cc). Each
// throws Error naming `at`, the device and the op ("trn2-sim layernorm"), and the operand.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "backend/neuron/kernel_launch.h"
#include "backend/neuron/neuron_sim_backend.h"
#include "backend/neuron/sim_operands.h"
#include "core/error.h"
#include "core/tensor.h"

namespace switchyard::backend::neuron {

void require_dense(const std::string& at, const Tensor& t, const char* what);
// A dense [rows, cols] tensor; -1 matches any size.
void require_matrix(const std::string& at, const Tensor& t, int64_t rows, int64_t cols,
                    const char* what);
// A dense tensor of n elements.
void require_elements(const std::string& at, const Tensor& t, int64_t n, const char* what);
// n dense int32 ids, each in [0, limit). Device memory is host memory, so they are read here,
// for an error that names the row (a gather would reject them too, less helpfully).
void require_ids(const std::string& at, const Tensor& t, int64_t n, int64_t limit,
                 const char* what);

// Rows [rows, width] of `t`, `stride` elements apart, as an HBM view: the memory from the first
// row's start to the last row's end is presented once and the rows are a pattern over it.
View strided_rows(Launch& l, const Tensor& t, int64_t rows, int64_t width, int64_t stride,
                  const char* name);

template <typename Op>
void NeuronSimBackend::check_operand_dtypes(const Op& op) const {
  require_native_operands(op_label(OpTraits<Op>::kName), op);
}

}  // namespace switchyard::backend::neuron
