#include "backend/attention_operands.h"

#include "core/error.h"

namespace switchyard::backend {

void require_attention_spec(const ops::AttentionSpec& spec, const char* device, const char* op) {
  require(spec.heads > 0 && spec.kv_heads > 0 && spec.head_dim > 0 &&
              spec.heads % spec.kv_heads == 0 && spec.window >= 0,
          "{} {}: heads {} must be a positive multiple of kv_heads {}, head_dim {} positive and "
          "window {} >= 0",
          device, op, spec.heads, spec.kv_heads, spec.head_dim, spec.window);
}

void require_heads_view(const Tensor& t, int64_t rows, int heads, int head_dim, const char* device,
                        const char* op, const char* what) {
  require(t.rank == 3 && t.shape[0] == rows && t.shape[1] == heads && t.shape[2] == head_dim &&
              t.strides[2] == 1 && t.strides[1] == head_dim &&
              t.strides[0] >= static_cast<int64_t>(heads) * head_dim,
          "{} {}: {} must be a [{}, {}, {}] view with dense heads, got {}", device, op, what, rows,
          heads, head_dim, t.describe());
}

}  // namespace switchyard::backend
