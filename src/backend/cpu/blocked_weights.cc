#include "backend/cpu/blocked_weights.h"

#include <omp.h>
#include <unistd.h>

#include <utility>

#include "backend/cpu/bf16_panel_linear.h"

namespace switchyard::backend::cpu {
namespace {

using dnnl::memory;
using Type = memory::data_type;

// oneDNN picks a weight's blocked layout by the product's shape; the one it picks at this many rows
// is the one every row count up to kMaxRows is given.
constexpr int kReferenceRows = 32;

memory::desc rows_desc(int rows, int width) {
  return memory::desc({rows, width}, Type::bf16, memory::dims{width, 1});
}

}  // namespace

size_t BlockedWeights::default_budget() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  const size_t physical = pages > 0 && page_size > 0 ? size_t(pages) * size_t(page_size) : 0;
  return physical / 8;
}

BlockedWeights::BlockedWeights(size_t budget_bytes)
    : budget_(budget_bytes), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

const BlockedWeights::Copy* BlockedWeights::copy_for(const uint16_t* weight, int C, int OC,
                                                      uint64_t stamp) {
  auto it = copies_.find(weight);
  if (it != copies_.end() && it->second.stamp == stamp && it->second.C == C && it->second.OC == OC) {
    return it->second.usable() ? &it->second : nullptr;
  }
  if (it != copies_.end()) {  // another state of these weights, or other weights at this address
    bytes_ -= it->second.bytes;
    copies_.erase(it);
  }
  Copy copy;
  copy.stamp = stamp;
  copy.C = C;
  copy.OC = OC;
  make_copy(copy, weight);
  bytes_ += copy.bytes;
  const Copy& placed = copies_[weight] = std::move(copy);
  return placed.usable() ? &placed : nullptr;
}

void BlockedWeights::make_copy(Copy& copy, const uint16_t* weight) {
  const int C = copy.C, OC = copy.OC;
  if (bf16_panel_linear_available() && C % 2 == 0) {
    const size_t values = bf16_panel_values(C, OC);
    if (bytes_ + values * sizeof(uint16_t) > budget_) return;
    copy.panels.resize(values);
    pack_bf16_panels(copy.panels.data(), weight, C, OC);
    copy.bytes = values * sizeof(uint16_t);
    return;
  }
  try {
    const memory::desc any({C, OC}, Type::bf16, memory::format_tag::any);
    const dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(rows_desc(kReferenceRows, C), any, rows_desc(kReferenceRows, OC)), engine_);
    const memory::desc blocked = pd.weights_desc();
    if (bytes_ + blocked.get_size() > budget_) return;
    // The weights as stored, [OC, C] row-major: the product's [C, OC] operand transposed.
    memory stored(memory::desc({C, OC}, Type::bf16, memory::dims{1, C}), engine_,
                  const_cast<uint16_t*>(weight));
    copy.blocked = memory(blocked, engine_);
    dnnl::reorder(stored, copy.blocked).execute(stream_, stored, copy.blocked);
    stream_.wait();
    copy.bytes = blocked.get_size();
  } catch (const dnnl::error&) {  // no blocked form for this shape: remembered as such
    copy.blocked = memory();
    copy.bytes = 0;
  }
}

dnnl::matmul* BlockedWeights::primitive(const memory::desc& blocked, int M, int C, int OC,
                                        bool bias) {
  const auto key = std::make_tuple(M, C, OC, bias, omp_get_max_threads());
  auto it = primitives_.find(key);
  if (it == primitives_.end()) {
    std::optional<dnnl::matmul> built;
    try {
      const memory::desc bias_desc({1, OC}, Type::f32, memory::dims{OC, 1});
      const dnnl::matmul::desc desc =
          bias ? dnnl::matmul::desc(rows_desc(M, C), blocked, bias_desc, rows_desc(M, OC))
               : dnnl::matmul::desc(rows_desc(M, C), blocked, rows_desc(M, OC));
      built.emplace(dnnl::matmul::primitive_desc(desc, engine_));
    } catch (const dnnl::error&) {  // this row count cannot take the layout: the plain product
    }
    it = primitives_.emplace(key, std::move(built)).first;
  }
  return it->second ? &*it->second : nullptr;
}

bool BlockedWeights::linear(uint16_t* out, const uint16_t* inp, const uint16_t* weight,
                            const float* bias, int M, int C, int OC, uint64_t stamp) {
  if (stamp == 0 || M < 1 || M > kMaxRows || C < 1 || OC < 1) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  const Copy* copy = copy_for(weight, C, OC, stamp);
  if (copy == nullptr) return false;
  if (!copy->panels.empty()) {
    bf16_panel_linear(out, inp, copy->panels.data(), bias, M, C, OC);
    return true;
  }
  dnnl::matmul* product = primitive(copy->blocked.get_desc(), M, C, OC, bias != nullptr);
  if (product == nullptr) return false;
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, memory(rows_desc(M, C), engine_, const_cast<uint16_t*>(inp))},
      {DNNL_ARG_WEIGHTS, copy->blocked},
      {DNNL_ARG_DST, memory(rows_desc(M, OC), engine_, out)}};
  if (bias) {
    args.emplace(DNNL_ARG_BIAS, memory(memory::desc({1, OC}, Type::f32, memory::dims{OC, 1}),
                                       engine_, const_cast<float*>(bias)));
  }
  product->execute(stream_, args);
  stream_.wait();
  return true;
}

}  // namespace switchyard::backend::cpu
