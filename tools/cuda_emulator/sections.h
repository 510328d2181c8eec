// The sections of the kernel checks that live in files of their own, one function each
// (kernel_checks.cc's main runs them by name).
#pragma once

namespace checks {

void check_norm_rope();       // norm_rope_checks.cc: norm_rope_kernels.cu
void check_moe();             // moe_checks.cc: moe_kernels.cu, the row gather and scatter
void check_expert_linear();   // expert_linear_checks.cc: expert_linear_kernels.cu
void check_attention_gqa();   // attention_gqa_checks.cc: attention over views, any spec

}  // namespace checks
