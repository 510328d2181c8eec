#include "backend/neuron/attention_plan.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace switchyard::backend::neuron::attention_detail {

void check_shape(const char* kernel, const AttentionShape& s, DType compute) {
  require(s.batch >= 1 && s.seq >= 1, "{}: batch = {} and seq = {} must be >= 1", kernel, s.batch,
          s.seq);
  require(s.heads >= 1 && s.kv_heads >= 1 && s.heads % s.kv_heads == 0,
          "{}: heads = {} must be a positive multiple of kv_heads = {}", kernel, s.heads,
          s.kv_heads);
  require(s.head_dim >= 1 && s.head_dim <= kPartitions,
          "{}: head_dim = {} must be in [1, {}] (the PE array's rows)", kernel, s.head_dim,
          kPartitions);
  require(s.window >= 0, "{}: window = {} must be >= 0 (0: no window)", kernel, s.window);
  require(s.scale > 0.0f && std::isfinite(s.scale), "{}: scale = {} must be positive", kernel,
          s.scale);
  require_compute(kernel, compute);
}

void require_lse(const char* kernel, const View& lse, int64_t n) {
  require(lse.memory() == Memory::kHbm && lse.partitions() == 1 && lse.free_dims() == 1 &&
              lse.free_size() == n && lse.free_dim(0).stride == 1,
          "{}: lse must be one contiguous HBM row of B*H*T = {} values, got {}", kernel, n,
          lse.describe());
  require(lse.dtype() == DType::kF32, "{}: lse must be float32, got {}", kernel,
          nki_dtype_name(lse.dtype()));
}

void require_optional_row(const char* kernel, const char* what, const View& row, int64_t n) {
  if (!present(row)) return;
  require(row.memory() == Memory::kHbm && row.dtype() == DType::kF32 && row.partitions() == 1 &&
              row.free_dims() == 1 && row.free_size() == n && row.free_dim(0).stride == 1,
          "{}: {} must be one contiguous fp32 HBM row of {} values (one per head), got {}",
          kernel, what, n, row.describe());
}

std::vector<HeadUnit> plan_units(const AttentionShape& s, HeadBytes bytes, int64_t free) {
  const int64_t KV = s.kv_heads, G = s.group();
  std::vector<HeadUnit> units;
  const int64_t groups = free / (2 * (G * bytes.per_q + bytes.per_kv));
  if (groups >= 1) {
    const int64_t n = ceil_div(KV, ceil_div(KV, std::min(KV, groups)));
    for (int64_t b = 0; b < s.batch; ++b) {
      for (int64_t kv0 = 0; kv0 < KV; kv0 += n) {
        const int64_t kvn = std::min(n, KV - kv0);
        const auto set = static_cast<int64_t>(units.size());
        units.push_back({b, kv0 * G, kvn * G, kv0, kvn, set, true, true});
      }
    }
    return units;
  }
  const int64_t fit = (free / 2 - bytes.per_kv) / bytes.per_q;
  if (fit < 1) return {};
  const int64_t n = ceil_div(G, ceil_div(G, fit));
  int64_t set = 0;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t kv = 0; kv < KV; ++kv, ++set) {
      for (int64_t j = 0; j < G; j += n) {
        units.push_back({b, kv * G + j, std::min(n, G - j), kv, 1, set, j == 0, j + n >= G});
      }
    }
  }
  return units;
}

int64_t max_query_heads(const std::vector<HeadUnit>& units) {
  int64_t n = 0;
  for (const HeadUnit& u : units) n = std::max(n, u.hn);
  return n;
}

int64_t max_kv_heads(const std::vector<HeadUnit>& units) {
  int64_t n = 0;
  for (const HeadUnit& u : units) n = std::max(n, u.kvn);
  return n;
}

KeySpan key_span(const AttentionShape& s, int64_t q0, int64_t mq) {
  const int64_t first = s.window > 0 ? std::max<int64_t>(0, q0 - s.window + 1) : 0;
  return {first / kPartitions * kPartitions, q0 + mq};
}

AttentionShape gpt2_shape(int B, int T, int C, int NH) {
  return {.batch = B, .seq = T, .heads = NH, .kv_heads = NH, .head_dim = C / NH, .window = 0,
          .scale = 1.0f / std::sqrt(static_cast<float>(C / NH))};
}

int64_t psum_footprint(int64_t bytes) {
  int64_t p = 64;
  while (p < bytes) p *= 2;
  return p;
}

void load_transposed(NeuronCore& core, const View& dst, const HeadRows& src, int64_t b,
                     int64_t head, int64_t n, QueueRing& queues) {
  dma_split(core, dst.slice(0, 0, n),
            src.hbm.pattern(src.offset(b, head), Dim{src.hd, 1},
                            {Dim{n, src.hd}, Dim{src.T, src.width}}),
            0, queues);
}

void move_rows(NeuronCore& core, const View& tile, const View& hbm, int64_t offset,
               int64_t row_stride, const std::vector<Dim>& inner, int64_t T, bool to_hbm,
               QueueRing& queues) {
  const int64_t full = T / kPartitions, tail = T % kPartitions;
  auto move = [&](const View& on_chip, const View& in_hbm, int dim) {
    if (to_hbm) {
      dma_split(core, in_hbm, on_chip, dim, queues);
    } else {
      dma_split(core, on_chip, in_hbm, dim, queues);
    }
  };
  if (full > 0) {
    std::vector<Dim> dims{Dim{full, kPartitions * row_stride}};
    dims.insert(dims.end(), inner.begin(), inner.end());
    move(tile.slice(0, 0, full), hbm.pattern(offset, Dim{kPartitions, row_stride}, dims), 0);
  }
  if (tail > 0) {
    move(tile.rows(0, tail).slice(0, full, 1),
         hbm.pattern(offset + full * kPartitions * row_stride, Dim{tail, row_stride}, inner), -1);
  }
}

}  // namespace switchyard::backend::neuron::attention_detail
