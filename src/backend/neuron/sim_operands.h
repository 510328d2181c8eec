// The dtypes the simulator's tile programs take, op by op.
//
// For every op with a tile program: its operands by name, in for_each_tensor order (ops.h), with
// the dtypes the native path reads or writes. Activations may be fp32 or bf16 (the DMA casts them
// into the compute dtype's tiles), and so may weights and tables; parameter gradients, optimizer
// state and statistics are fp32, step totals fp64, ids int32. NeuronSimBackend checks every
// operand against this table before a launch, and answers supports() from it.
#pragma once

#include <cstdint>
#include <span>

#include "backend/ops.h"

namespace switchyard::backend::neuron {

enum class OperandDtypes : uint8_t {
  kFloat,  // fp32 or bf16
  kF32,
  kI32,
  kF64,
};

struct OperandRule {
  const char* name;
  OperandDtypes dtypes;
  bool optional = false;
};

// The operands of `kind`'s tile program; empty for ops that have none (the composites, which
// compose ops that do, and the ops that run on the host).
std::span<const OperandRule> native_operands(OpKind kind);

bool accepts(OperandDtypes rule, DType dtype);
// "fp32 or bf16", "fp32", "int32", "fp64".
const char* describe(OperandDtypes rule);

}  // namespace switchyard::backend::neuron
