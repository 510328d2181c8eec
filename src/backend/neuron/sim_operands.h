// The dtypes the simulator's tile programs take, op by op.
//
// For every op with a tile program: its operands by name, in for_each_tensor order (ops.h), with
// the dtypes the native path reads or writes. Activations may be fp32 or bf16 (the DMA casts them
// into the compute dtype's tiles), and so may weights and tables (expert weights also MXFP4,
// decoded on the chip); parameter gradients, optimizer state and statistics are fp32, step totals
// fp64, ids int32. NeuronSimBackend checks every operand against this table before a launch
// (require_native_operands), and answers supports() from it.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "backend/ops.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

enum class OperandDtypes : uint8_t {
  kFloat,  // fp32 or bf16
  kFloatOrMxfp4,  // fp32, bf16 or MXFP4 (inference weights)
  kF32,
  kI32,
  kF64,
  kNone,  // nothing: an optional operand the simulator does not take (fp32 halves' low halves)
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
// "fp32 or bf16", "fp32, bf16 or mxfp4", "fp32", "int32", "fp64".
const char* describe(OperandDtypes rule);

// Throws Error, "`at`: weight must be fp32 or bf16, got ...", unless every operand of `op` (a
// tile program's op) has a dtype its rule takes and every operand it needs is there.
template <typename Op>
void require_native_operands(const std::string& at, const Op& op) {
  const std::span<const OperandRule> rules = native_operands(OpTraits<Op>::kind);
  size_t i = 0;
  op.for_each_tensor([&](const Tensor& t, ops::Access) {
    const OperandRule& rule = rules[i++];
    if (t.empty()) {
      require(rule.optional, "{}: {} is missing", at, rule.name);
      return;
    }
    require(accepts(rule.dtypes, t.dtype), "{}: {} must be {}, got {}", at, rule.name,
            describe(rule.dtypes), t.describe());
  });
}

}  // namespace switchyard::backend::neuron
