// Rules: operand checks every instruction shares (views, engine access, PSUM groups).
#include "neuron/rules.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace switchyard::neuron {

ReduceShape reduce_shape(const View& in, int axes) {
  ReduceShape r;
  r.reduced = std::min(axes, std::max(in.free_dims(), 1));
  for (int d = in.free_dims() - r.reduced; d < in.free_dims(); ++d) r.inner *= in.free_dim(d).size;
  r.outer = in.free_size() / r.inner;
  return r;
}

Rules::Rules(const CoreConfig& config, const Memories& memories, const KernelContext& context)
    : config_(config), memories_(memories), context_(context) {}

void Rules::fail(const char* op, const std::string& message) const {
  ::switchyard::fail("kernel '{}', instruction #{} ({}): {}", context_.kernel_name(),
                     context_.instructions(), op, message);
}

void Rules::check_view(const char* op, const char* role, const View& v, bool written) const {
  if (!memories_.known(v.allocation()))
    fail(op, fmt::format("{} is not a view of any allocation on this core", role));
  const Memories::Allocation* found = memories_.find(v.allocation());
  // Formatted only for an error: this check runs for every operand of every instruction.
  auto what = [&] { return fmt::format("{} '{}' {}", role, memories_.name_of(v), v.describe()); };
  if (found == nullptr) fail(op, fmt::format("{} uses an allocation that was released", what()));
  const Memories::Allocation& a = *found;
  if (v.memory() != a.memory)
    fail(op, fmt::format("{} claims memory {} but its allocation is in {}", what(),
                         memory_name(v.memory()), memory_name(a.memory)));
  if (v.partitions() < 1) fail(op, fmt::format("{} has no partitions", what()));
  for (int d = 0; d < v.free_dims(); ++d) {
    if (v.free_dim(d).size < 1 || v.free_dim(d).stride < 0)
      fail(op, fmt::format("{} free dimension {} needs size >= 1 and stride >= 0", what(), d));
    if (written && v.free_dim(d).stride == 0 && v.free_dim(d).size > 1)
      fail(op, fmt::format("{} is written through a broadcast (stride 0) dimension", what()));
  }
  if (v.memory() == Memory::kHbm) {
    if (written && v.partition_stride() == 0 && v.partitions() > 1)
      fail(op, fmt::format("{} is written through a broadcast (stride 0) row dimension", what()));
    int64_t end = v.offset_bytes() + extent_bytes(v, true);
    if (v.offset_bytes() < 0 || end > a.bytes)
      fail(op, fmt::format("{} reaches byte {} of an HBM tensor of {} bytes", what(), end, a.bytes));
  } else {
    if (v.partition_start() < 0 || v.partition_start() + v.partitions() > a.partitions)
      fail(op, fmt::format("{} covers partitions {}..{} but the tile has {}", what(),
                           v.partition_start(), v.partition_start() + v.partitions() - 1,
                           a.partitions));
    int64_t end = v.offset_bytes() + extent_bytes(v, false);
    if (v.offset_bytes() < a.offset || end > a.offset + a.bytes)
      fail(op, fmt::format("{} reaches bytes {}..{} of each partition but the tile holds "
                           "bytes {}..{}",
                           what(), v.offset_bytes(), end, a.offset, a.offset + a.bytes));
  }
}

void Rules::check_release(const View& view) const {
  require(memories_.known(view.allocation()),
          "release: the view belongs to no allocation of this core");
  require(memories_.find(view.allocation()) != nullptr, "release: '{}' was already released",
          memories_.name_of(view));
  const int32_t slot = Memories::slot_of(view.allocation());
  for (const Region& g : open_groups_) {
    require(g.allocation != slot,
            "kernel '{}': release of PSUM tile '{}' while an accumulation group in it is still "
            "open (its last matmul had stop=false)",
            context_.kernel_name(), memories_.name_of(view));
  }
}

void Rules::check_psum_closed(const char* op, const char* role, const View& v) const {
  if (v.memory() != Memory::kPsum) return;
  Region r = memories_.region_of(v);
  for (const Region& g : open_groups_) {
    if (g.overlaps(r))
      fail(op, fmt::format("{} '{}' {} is in a PSUM accumulation group that is still open "
                           "(its last matmul had stop=false)",
                           role, memories_.name_of(v), v.describe()));
  }
}

void Rules::check_engine_operand(const char* op, const char* role, Engine engine, const View& v,
                                 bool written) const {
  check_view(op, role, v, written);
  auto what = [&] { return fmt::format("{} '{}' {}", role, memories_.name_of(v), v.describe()); };
  if (v.memory() == Memory::kHbm)
    fail(op, fmt::format("{}: {} cannot access HBM (move data with a DMA first)", what(),
                         engine_name(engine)));
  if (engine == Engine::kGpSimd && v.memory() == Memory::kPsum)
    fail(op, fmt::format("{}: GpSimd cannot access PSUM", what()));
  // Partition start alignment: > 64 partitions start at 0; 33..64 at 0 or 64; <= 32 at 0, 32,
  // 64 or 96.
  int64_t start = v.partition_start();
  int64_t count = v.partitions();
  bool aligned = count > 64   ? start == 0
                 : count > 32 ? (start == 0 || start == 64)
                              : start % 32 == 0;
  if (!aligned)
    fail(op, fmt::format("{}: a tile of {} partitions cannot start at partition {} (over 64 "
                         "partitions start at 0; 33-64 at 0 or 64; up to 32 at 0/32/64/96)",
                         what(), count, start));
  if (engine != Engine::kTensor) {
    int64_t limit = v.memory() == Memory::kPsum ? 4096 : 65536;
    if (v.free_size() > limit)
      fail(op, fmt::format("{}: free size {} exceeds the {} limit of {} elements per "
                           "partition for {}",
                           what(), v.free_size(), memory_name(v.memory()), limit,
                           engine_name(engine)));
  }
  if (!written) check_psum_closed(op, role, v);
}

void Rules::check_scalar_operands(const char* op, const char* role, Engine engine, const View& out,
                                  std::initializer_list<const Operand*> operands) const {
  for (const Operand* s : operands) {
    if (!s->is_view()) continue;
    check_engine_operand(op, role, engine, s->view(), false);
    if (s->view().partitions() != out.partitions() || s->view().free_size() != 1)
      fail(op, fmt::format("{} {} must be [{}, 1]", role, s->view().describe(), out.partitions()));
  }
}

void Rules::check_engine(const char* op, Engine engine, bool allowed) const {
  if (!allowed) fail(op, fmt::format("{} cannot run {}", engine_name(engine), op));
}

void Rules::check_input_shape(const char* op, const View& in, const View& out) const {
  if (in.partitions() != out.partitions() || in.free_size() != out.free_size())
    fail(op, fmt::format("in {} does not match out {}", in.describe(), out.describe()));
}

void Rules::check_free_steps(const char* op, const View& out,
                             const std::vector<float>& steps) const {
  if (static_cast<int>(steps.size()) != out.free_dims())
    fail(op, fmt::format("needs one step per free dimension of out {} ({}), got {}", out.describe(),
                         out.free_dims(), steps.size()));
}

}  // namespace switchyard::neuron
