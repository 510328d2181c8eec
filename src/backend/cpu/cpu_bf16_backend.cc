#include "backend/cpu/cpu_bf16_backend.h"

#include "backend/cpu/blocked_weights.h"

#include <fstream>
#include <sstream>
#include <string>

namespace switchyard::backend::cpu {

Bf16Units host_bf16_units() {
  // The kernel's names for the features oneDNN dispatches on (amx_bf16: Sapphire Rapids on;
  // avx512_bf16: Cooper Lake, Zen 4 on).
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream flags(line.substr(line.find(':') + 1));
    bool amx = false, avx512 = false;
    for (std::string flag; flags >> flag;) {
      amx = amx || flag == "amx_bf16";
      avx512 = avx512 || flag == "avx512_bf16";
    }
    return amx ? Bf16Units::kAmx : avx512 ? Bf16Units::kAvx512Bf16 : Bf16Units::kNone;
  }
  return Bf16Units::kNone;
}

std::string describe_bf16_units(Bf16Units units) {
  switch (units) {
    case Bf16Units::kAmx:
      return "bf16 products on AMX";
    case Bf16Units::kAvx512Bf16:
      return "bf16 products on AVX-512 BF16 (no AMX)";
    case Bf16Units::kNone:
      break;
  }
  return "no native bf16 products on this CPU: oneDNN emulates them (correct, slower than fp32)";
}

CpuBf16Backend::CpuBf16Backend() : blocked_(std::make_unique<BlockedWeights>()) {}
CpuBf16Backend::~CpuBf16Backend() = default;

std::string CpuBf16Backend::description() const {
  return "bf16 mixed precision (bf16 activations, fp32 master weights held as bf16 weights and "
         "their low halves, fp32 reductions), " + describe_bf16_units(host_bf16_units()) + "; " + describe_host_cpu();
}

}  // namespace switchyard::backend::cpu
