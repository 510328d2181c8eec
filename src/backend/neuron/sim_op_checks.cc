#include "backend/neuron/sim_op_checks.h"

namespace switchyard::backend::neuron {

void require_dense(const std::string& at, const Tensor& t, const char* what) {
  require(t.is_contiguous(), "{}: {} must be dense, got {}", at, what, t.describe());
}

void require_matrix(const std::string& at, const Tensor& t, int64_t rows, int64_t cols,
                    const char* what) {
  require(t.rank == 2 && (rows < 0 || t.shape[0] == rows) && (cols < 0 || t.shape[1] == cols),
          "{}: {} must be [{}, {}], got {}", at, what, rows < 0 ? "*" : std::to_string(rows),
          cols < 0 ? "*" : std::to_string(cols), t.describe());
  require_dense(at, t, what);
}

void require_elements(const std::string& at, const Tensor& t, int64_t n, const char* what) {
  require(t.numel() == n, "{}: {} must have {} elements, got {}", at, what, n, t.describe());
  require_dense(at, t, what);
}

void require_ids(const std::string& at, const Tensor& t, int64_t n, int64_t limit,
                 const char* what) {
  require_elements(at, t, n, what);
  const int32_t* ids = t.as<const int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    require(ids[i] >= 0 && ids[i] < limit, "{}: {} {} at row {} is outside [0, {})", at, what,
            ids[i], i, limit);
  }
}

View strided_rows(Launch& l, const Tensor& t, int64_t rows, int64_t width, int64_t stride,
                  const char* name) {
  const View all = l.hbm(t.data, t.dtype, {(rows - 1) * stride + width}, name);
  return all.pattern(0, Dim{rows, stride}, {Dim{width, 1}});
}

}  // namespace switchyard::backend::neuron
