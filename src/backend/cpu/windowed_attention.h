// The windowed attention ops (ops.h Attention, AttentionBackward) on the CPU: operands checked,
// then the kernels of attention_kernels.h. Stored is what q, k, v, out and their gradients hold:
// float (CpuBackend) or bf16 bits (CpuBf16Backend, whose tasks widen their own heads).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/operand_checks.h"
#include "backend/ops.h"

namespace switchyard::backend::cpu {

template <typename Stored>
void run_windowed_attention(const ops::Attention& op, DType dtype, size_t record_floats) {
  const AttentionOperands a = check_attention(op, dtype, record_floats);
  attention_forward(static_cast<Stored*>(op.out.data), static_cast<float*>(op.record.data),
                    static_cast<const Stored*>(op.q.data), static_cast<const Stored*>(op.k.data),
                    static_cast<const Stored*>(op.v.data), a.sinks, a.geometry,
                    op.spec.effective_scale());
}

template <typename Stored>
void run_windowed_attention_backward(const ops::AttentionBackward& op, DType dtype,
                                     size_t record_floats) {
  const AttentionOperands a = check_attention_backward(op, dtype, record_floats);
  attention_backward(static_cast<Stored*>(op.dq.data), static_cast<Stored*>(op.dk.data),
                     static_cast<Stored*>(op.dv.data), a.dsinks,
                     static_cast<float*>(op.scratch.data), static_cast<const Stored*>(op.dout.data),
                     static_cast<const float*>(op.record.data),
                     static_cast<const Stored*>(op.q.data), static_cast<const Stored*>(op.k.data),
                     static_cast<const Stored*>(op.v.data), a.sinks, a.geometry,
                     op.spec.effective_scale());
}

}  // namespace switchyard::backend::cpu
