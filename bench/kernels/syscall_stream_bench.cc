// What a system call costs a thread that streams memory, as a decode step streams its weights:
// 256 MiB (on 2 MiB pages where the kernel grants them) read one cache line at a time, plainly and
// with a cheap system call (getppid) every 64 KiB. On a guest whose kernel entries flush the TLB
// (page-table isolation without PCID, as on the paravirtualised VMs this project has run on) a call
// costs the stream more than the call itself: the stream restarts with empty TLBs and prefetchers.
// The OpenMP runtime (libgomp) makes a futex system call at the end of every barrier, whether or
// not a thread sleeps, so the figure bounds what the barriers of a decode step cost it.
//
//   build/switchyard_kernel_bench --benchmark_filter=SyscallStream
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace {

constexpr size_t kStreamBytes = size_t{256} << 20;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kCallEvery = size_t{64} << 10;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

std::unique_ptr<uint8_t[], FreeDeleter> touched_buffer() {
  auto* bytes = static_cast<uint8_t*>(std::aligned_alloc(kHugePage, kStreamBytes));
  if (bytes == nullptr) return nullptr;
  madvise(bytes, kStreamBytes, MADV_HUGEPAGE);  // a hint: the stream is timed either way
  for (size_t i = 0; i < kStreamBytes; i += 4096) bytes[i] = static_cast<uint8_t>(i >> 12);
  return std::unique_ptr<uint8_t[], FreeDeleter>(bytes);
}

// One pass over the buffer, a system call every kCallEvery bytes when `with_calls`.
uint64_t stream_once(const uint8_t* bytes, bool with_calls) {
  uint64_t sum = 0;
  for (size_t i = 0; i < kStreamBytes; i += 64) {
    sum += bytes[i];
    if (with_calls && i % kCallEvery == 0) syscall(SYS_getppid);
  }
  return sum;
}

void time_stream(benchmark::State& state, bool with_calls) {
  const auto bytes = touched_buffer();
  if (!bytes) {
    state.SkipWithError("cannot allocate the 256 MiB buffer");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(stream_once(bytes.get(), with_calls));
  const double passes = static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(passes * kStreamBytes / 1e9, benchmark::Counter::kIsRate);
  if (with_calls) {
    state.counters["calls/s"] =
        benchmark::Counter(passes * (kStreamBytes / kCallEvery), benchmark::Counter::kIsRate);
  }
}

void SyscallStreamPlain(benchmark::State& state) { time_stream(state, false); }
void SyscallStreamEvery64KiB(benchmark::State& state) { time_stream(state, true); }

// The call alone, with nothing to restart after it.
void SyscallAlone(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(syscall(SYS_getppid));
}

BENCHMARK(SyscallStreamPlain)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(SyscallStreamEvery64KiB)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(SyscallAlone);

}  // namespace
