// GPT-2's layouts over the general CPU kernels, for the tests that check those kernels in GPT-2's
// terms: the encoder (token rows plus the row of each window position) and attention over one
// packed q|k|v projection [B, T, 3C] with C / NH channels per head.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_kernels.h"

namespace switchyard::gpt2_kernels {

namespace cpu = backend::cpu;

inline std::vector<int32_t> window_positions(int B, int T) {
  std::vector<int32_t> positions(static_cast<size_t>(B) * T);
  for (size_t i = 0; i < positions.size(); ++i) positions[i] = static_cast<int32_t>(i % T);
  return positions;
}

template <typename T>
void encoder_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int T_, int C) {
  const std::vector<int32_t> positions = window_positions(B, T_);
  cpu::embedding_forward(out, tokens, wte, positions.data(), wpe, B * T_, C);
}

template <typename T>
void encoder_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B, int T_, int C) {
  const std::vector<int32_t> positions = window_positions(B, T_);
  cpu::embedding_backward(dwte, dwpe, dout, tokens, positions.data(), B * T_, C);
}

inline cpu::AttentionGeometry packed_geometry(int B, int T_, int C, int NH) {
  cpu::AttentionGeometry g;
  g.batch = B;
  g.seq = T_;
  g.heads = g.kv_heads = NH;
  g.head_dim = C / NH;
  g.ldq = g.ldk = g.ldv = 3 * static_cast<int64_t>(C);
  g.ldo = C;
  return g;
}

template <typename T>
T packed_scale(int C, int NH) {
  return T(1) / std::sqrt(static_cast<T>(C / NH));
}

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int B, int T_, int C, int NH) {
  cpu::attention_forward(out, att, qkv, qkv + C, qkv + 2 * C, nullptr,
                         packed_geometry(B, T_, C, NH), packed_scale<T>(C, NH));
}

template <typename T>
void attention_backward(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                        int T_, int C, int NH) {
  cpu::attention_backward(dqkv, dqkv + C, dqkv + 2 * C, nullptr, scratch, dout, att, qkv, qkv + C,
                          qkv + 2 * C, nullptr, packed_geometry(B, T_, C, NH),
                          packed_scale<T>(C, NH));
}

// One position: qkv[B, 3C] holds the new position's projection.
template <typename T>
void attention_decode(T* out, const T* qkv, T* k_cache, T* v_cache, int B, int pos, int max_T,
                      int C, int NH) {
  cpu::attention_decode(out, C, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C, k_cache, v_cache, B,
                        pos, max_T, NH, C / NH);
}

}  // namespace switchyard::gpt2_kernels
