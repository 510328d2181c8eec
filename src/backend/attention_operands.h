// Operand checks that every backend applies to attention ops the same way; each throws an Error
// that names the device ("cpu", "cuda"), the op and the operand.
#pragma once

#include <cstdint>

#include "backend/ops.h"
#include "core/tensor.h"

namespace switchyard::backend {

// heads a positive multiple of kv_heads, head_dim positive, window not negative.
void require_attention_spec(const ops::AttentionSpec& spec, const char* device, const char* op);

// A view [rows, heads, head_dim] whose heads are dense (rows may be strided).
void require_heads_view(const Tensor& t, int64_t rows, int heads, int head_dim, const char* device,
                        const char* op, const char* what);

}  // namespace switchyard::backend
