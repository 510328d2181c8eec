#include "backend/cpu/mxfp4_bf16_gemm.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
// GCC 12 takes the deliberately undefined pass-through operand inside its AVX-512 extract
// intrinsics for an uninitialised variable.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstddef>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/mxfp4_bf16_decode.h"
#include "backend/cpu/weight_decode.h"
#include "core/dtype.h"
#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

constexpr int kBlock = 32;  // MXFP4 values sharing a scale

// One row's blocks as bf16 values.
void decode_row(uint16_t* out, const uint8_t* codes, const uint8_t* scales, int C) {
  for (int b = 0; b < C / kBlock; ++b) {
#if defined(__AVX512F__) && defined(__AVX512BW__)
    const __m512i table = mxfp4_bf16::lookup_table(weight_decode::kE8M0Scales[scales[b]]);
    _mm512_storeu_si512(out + b * kBlock, mxfp4_bf16::decode_block(codes + b * kBlock / 2, table));
#else
    float values[kBlock];
    decode_mxfp4_block(codes + b * kBlock / 2, scales[b], values);
    // Each value is a bf16 value (see mxfp4_bf16_decode.h): the rounding leaves it as it is.
    for (int i = 0; i < kBlock; ++i) out[b * kBlock + i] = narrow_to_bf16_bits(values[i]);
#endif
  }
}

// Rows of a panel: an even split of OC into panels of about 8 MiB of bf16 values (in the last-level
// cache while the product reads them), in multiples of 16 rows, and at least kMinPanelRows. oneDNN
// 2.6's bf16 matmul ran far slower on narrow panels (AVX-512 BF16, gpt-oss-20b's experts, 64 rows:
// ~250 GFLOP/s at 256-720 outputs a panel, 420-500 at 1,024, 550-610 at 1,440, the same product
// over weights decoded beforehand ~510; kernel bench ExpertProduct). The buffer is therefore
// 1,024 rows of C at least: 16 MiB at C = 8,192.
int panel_rows(int C, int OC) {
  constexpr size_t kPanelBytes = size_t{8} << 20;
  constexpr size_t kMinPanelRows = 1024;
  const size_t rows_that_fit = std::max(kMinPanelRows, kPanelBytes / (sizeof(uint16_t) * C));
  const size_t panels = (static_cast<size_t>(OC) + rows_that_fit - 1) / rows_that_fit;
  const size_t rows = (static_cast<size_t>(OC) + panels - 1) / panels;
  return static_cast<int>(std::min<size_t>(OC, (rows + 15) / 16 * 16));
}

}  // namespace

void decode_mxfp4_rows_to_bf16(uint16_t* out, const WeightMatrix& weight, int first, int rows,
                               int C) {
  require(weight.dtype == DType::kMXFP4 && weight.scales != nullptr && C % kBlock == 0,
          "decode_mxfp4_rows_to_bf16: needs mxfp4 weights with scales and C a multiple of 32 "
          "(got {}, C = {})",
          dtype_name(weight.dtype), C);
  const auto* codes = static_cast<const uint8_t*>(weight.data);
  const bool parallel = static_cast<size_t>(rows) * C > kParallelThreshold;
#pragma omp parallel for schedule(static) if (parallel)
  for (int r = 0; r < rows; ++r) {
    const size_t row = static_cast<size_t>(first + r);
    decode_row(out + static_cast<size_t>(r) * C, codes + row * C / 2,
               weight.scales + row * C / kBlock, C);
  }
}

void mxfp4_bf16_gemm(uint16_t* out, const uint16_t* inp, const WeightMatrix& weight,
                     const float* bias, int N, int C, int OC) {
  if (N == 0 || OC == 0) return;
  require(C > 0, "mxfp4_bf16_gemm: empty products (C = 0) are not supported");
  const int rows = panel_rows(C, OC);
  // One buffer per calling thread, kept: a fresh allocation of megabytes would be mapped and
  // faulted in page by page on every call.
  thread_local std::vector<uint16_t> panel;
  panel.resize(static_cast<size_t>(rows) * C);
  for (int o0 = 0; o0 < OC; o0 += rows) {
    const int panel_outputs = std::min(rows, OC - o0);
    decode_mxfp4_rows_to_bf16(panel.data(), weight, o0, panel_outputs, C);
    bf16_gemm(false, true, N, panel_outputs, C, inp, C, panel.data(), C, out + o0, DType::kBF16, OC,
              false, bias ? bias + o0 : nullptr);
  }
}

}  // namespace switchyard::backend::cpu
