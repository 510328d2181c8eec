// A host emulator of the part of CUDA's execution model that Switchyard's kernels use, so that
// src/backend/cuda/*.cu can be compiled by g++ and checked on a machine without a GPU.
//
// preprocess.py rewrites what C++ cannot say (kernel<<<...>>> launches, __shared__ declarations,
// __launch_bounds__, the mma.sync inline PTX) into calls of this header; run.sh force-includes it
// (-include) before every preprocessed kernel file. See README.md for what it can and cannot find.
//
// Model. A launch runs its blocks one after another. The threads of a block run concurrently, one
// OS thread per CUDA thread (taken from a pool), so an ordering bug inside a block shows up as a
// wrong result or, under ThreadSanitizer, as a data race:
//   - __syncthreads is a std::barrier over the block's threads; a thread that returns drops out
//     of it (as exited threads do on the GPU).
//   - Warp operations (shuffles, __syncwarp, mma.sync) meet at a per-warp barrier: each lane
//     deposits its operand in a per-warp slot, waits for the other lanes, and reads theirs. Every
//     lane must take part in the same operation; one that has returned or is elsewhere is
//     reported (full-mask operations only, as the kernels use).
//   - __shared__ arrays become function statics (safe: one block at a time); dynamic shared
//     memory is a heap block of exactly the launch's size (so AddressSanitizer sees overruns).
//     Both are filled with 0xff bytes (NaN as float and bf16) before every block, so reading a
//     tile entry no thread wrote gives NaN rather than a stale, plausible value.
//   - Launches are checked against the hardware limits (block and grid dimensions, 48 KiB of
//     shared memory without opt-in, __launch_bounds__); a bad one does not run, and the error is
//     returned by take_launch_error() (the emulated cudaGetLastError), as check_launch expects.
//   - A block that does not finish within CUDA_EMULATOR_WATCHDOG_S seconds (default 600) aborts
//     the program: some thread waits at a barrier that the others never reach.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <semaphore>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define SWITCHYARD_CUDA_EMULATOR 1

// Function qualifiers mean nothing on the host. __launch_bounds__ and __shared__ are rewritten by
// preprocess.py; a __shared__ left over (a file that skipped preprocessing) fails to compile.
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ __shared___was_not_rewritten_by_preprocess_py

// The built-in variables, per emulated thread.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace emu {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;
inline constexpr unsigned kMaxBlockThreads = 1024;
// Shared memory a block may use without cudaFuncSetAttribute (which no kernel calls).
inline constexpr size_t kSharedMemoryLimit = 48 * 1024;
inline constexpr unsigned char kPoisonByte = 0xff;

// ---- settings, counters and errors ----

enum class BlockOrder { kForward, kReverse, kShuffle };

struct Settings {
  BlockOrder order = BlockOrder::kForward;
  double watchdog_s = 600;
};

[[noreturn]] inline void fatal(const char* format, ...);

// Read once from CUDA_EMULATOR_BLOCK_ORDER (forward | reverse | shuffle) and
// CUDA_EMULATOR_WATCHDOG_S (seconds).
inline const Settings& settings() {
  static const Settings s = [] {
    Settings r;
    if (const char* order = std::getenv("CUDA_EMULATOR_BLOCK_ORDER")) {
      if (std::strcmp(order, "reverse") == 0) {
        r.order = BlockOrder::kReverse;
      } else if (std::strcmp(order, "shuffle") == 0) {
        r.order = BlockOrder::kShuffle;
      } else if (std::strcmp(order, "forward") != 0) {
        fatal("CUDA_EMULATOR_BLOCK_ORDER=%s: expected forward, reverse or shuffle", order);
      }
    }
    if (const char* w = std::getenv("CUDA_EMULATOR_WATCHDOG_S")) {
      r.watchdog_s = std::atof(w);
      if (!(r.watchdog_s > 0)) fatal("CUDA_EMULATOR_WATCHDOG_S=%s: expected seconds > 0", w);
    }
    return r;
  }();
  return s;
}

// What the emulator has run; the checks read mma_calls to tell which attention path ran.
struct Counters {
  std::atomic<long long> launches{0};
  std::atomic<long long> blocks{0};
  std::atomic<long long> mma_calls{0};  // warp-wide mma.sync operations
  std::atomic<long long> errors{0};     // problems reported (launch refused, warp misuse, ...)
  std::atomic<long long> unchecked_launches{0};
};

inline Counters& counters() {
  static Counters c;
  return c;
}

[[noreturn]] inline void fatal(const char* format, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "cuda emulator: fatal: ");
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fprintf(stderr, "\n");
  std::abort();
}

struct ErrorState {
  std::mutex mutex;
  std::string pending;              // the first error since the last take_launch_error()
  const char* unchecked = nullptr;  // the last kernel launched, until check_launch looks
  bool quiet = false;               // set by checks that provoke errors on purpose
};

inline ErrorState& error_state() {
  static ErrorState s;
  return s;
}

// Prints a problem at once and keeps the first one for take_launch_error().
inline void report(const char* format, ...) {
  char message[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  ++counters().errors;
  ErrorState& s = error_state();
  std::lock_guard lock(s.mutex);
  if (!s.quiet) {
    std::fflush(stdout);
    std::fprintf(stderr, "cuda emulator: %s\n", message);
  }
  if (s.pending.empty()) s.pending = message;
}

// The emulated cudaGetLastError: the first problem since the previous call ("" if none). Also
// marks the last launch as checked.
inline std::string take_launch_error() {
  ErrorState& s = error_state();
  std::lock_guard lock(s.mutex);
  s.unchecked = nullptr;
  return std::exchange(s.pending, std::string());
}

// ---- blocks, warps and threads ----

enum class WarpOp : int { kNone, kShflXor, kShflDown, kShflUp, kShflIdx, kSyncWarp, kMma };

// One lane's operand of a warp operation.
struct WarpSlot {
  uint64_t seq = 0;  // which of the lane's warp operations this is (1, 2, ...)
  WarpOp op = WarpOp::kNone;
  int width = 0;
  uint64_t value = 0;  // shuffles
  uint32_t a[4] = {}, b[2] = {};
  float c[4] = {};  // mma
};

struct Warp {
  explicit Warp(int lanes_) : lanes(lanes_), barrier(lanes_) {}
  const int lanes;
  std::barrier<> barrier;
  // Two sets of slots, alternating: a lane can deposit operation k + 1 while others still read
  // operation k, and cannot reach k + 2 before every lane has left k (the barrier of k + 1).
  WarpSlot slots[2][kWarpSize];
  std::atomic<bool> reported{false};
};

struct Block {
  explicit Block(unsigned threads) : barrier(threads) {
    for (unsigned first = 0; first < threads; first += kWarpSize) {
      warps.push_back(std::make_unique<Warp>(std::min<int>(kWarpSize, threads - first)));
    }
  }
  std::barrier<> barrier;
  std::vector<std::unique_ptr<Warp>> warps;
  unsigned char* dynamic_shared = nullptr;
};

// What one launch shares between its threads.
struct Launch {
  const char* kernel = "";
  const char* file = "";
  int line = 0;
  size_t dynamic_bytes = 0;
  std::mutex mutex;
  std::vector<std::pair<const void*, size_t>> static_shared;  // touched by this launch
  std::atomic<bool> bounds_reported{false};
};

struct ThreadContext {
  Launch* launch;
  Block* block;
  Warp* warp;
  int lane;
  uint64_t warp_ops;
};

inline thread_local ThreadContext* t_context = nullptr;

inline ThreadContext& context(const char* what) {
  if (t_context == nullptr) fatal("%s called outside a kernel", what);
  return *t_context;
}

// ---- thread pool ----

// Runs body(t) for t in [0, n) on n distinct threads, all alive together (they meet at barriers),
// and returns when all have returned. Threads are kept between blocks: creating hundreds per block
// would cost far more than most blocks' work.
class ThreadPool {
 public:
  ThreadPool() = default;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  ~ThreadPool() {
    stop_ = true;
    for (auto& w : workers_) w->go.release();
    for (auto& w : workers_) w->thread.join();
  }

  void run(unsigned n, const std::function<void(unsigned)>& body, const char* what) {
    while (workers_.size() < n) {
      auto w = std::make_unique<Worker>();
      const unsigned index = static_cast<unsigned>(workers_.size());
      w->thread = std::thread([this, index, go = &w->go] { loop(index, *go); });
      workers_.push_back(std::move(w));
    }
    body_ = &body;
    remaining_.store(n);
    for (unsigned i = 0; i < n; ++i) workers_[i]->go.release();
    const auto start = std::chrono::steady_clock::now();
    while (!done_.try_acquire_for(std::chrono::seconds(1))) {
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > settings().watchdog_s) {
        fatal(
            "%s has not finished after %.0f s: some of its threads wait at a __syncthreads or "
            "warp operation that the others never reach (raise CUDA_EMULATOR_WATCHDOG_S if it "
            "is only slow)",
            what, waited);
      }
    }
  }

 private:
  struct Worker {
    std::thread thread;
    std::binary_semaphore go{0};
  };

  void loop(unsigned index, std::binary_semaphore& go) {
    for (;;) {
      go.acquire();
      if (stop_) return;
      (*body_)(index);
      if (remaining_.fetch_sub(1) == 1) done_.release();
    }
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  const std::function<void(unsigned)>* body_ = nullptr;
  std::atomic<unsigned> remaining_{0};
  std::binary_semaphore done_{0};
  std::atomic<bool> stop_{false};
};

inline ThreadPool& pool() {
  static ThreadPool p;
  return p;
}

// ---- shared memory ----

// Every static __shared__ array seen so far; each is poisoned before every block.
struct StaticSharedRegistry {
  std::mutex mutex;
  std::vector<std::pair<void*, size_t>> arrays;
};

inline StaticSharedRegistry& static_shared_registry() {
  static StaticSharedRegistry r;
  return r;
}

// Called (by preprocess.py's rewrite) where a kernel declares `__shared__ T name[...]`: registers
// the array the first time, poisoning it, and counts it towards this launch's shared memory.
inline void touch_static_shared(void* array, size_t bytes) {
  ThreadContext& ctx = context("a __shared__ declaration");
  {
    StaticSharedRegistry& r = static_shared_registry();
    std::lock_guard lock(r.mutex);
    bool known = false;
    for (const auto& a : r.arrays) known |= a.first == array;
    if (!known) {
      r.arrays.emplace_back(array, bytes);
      std::memset(array, kPoisonByte, bytes);
    }
  }
  std::lock_guard lock(ctx.launch->mutex);
  for (const auto& a : ctx.launch->static_shared) {
    if (a.first == array) return;
  }
  ctx.launch->static_shared.emplace_back(array, bytes);
}

// `extern __shared__ T name[]` becomes `T* const name = emu::dynamic_shared<T>()`.
template <typename T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(context("extern __shared__").block->dynamic_shared);
}

// Inserted by preprocess.py at the top of a kernel declared __launch_bounds__(max_threads): a
// block larger than that does not launch on the GPU.
inline void check_launch_bounds(long long max_threads, const char* kernel) {
  ThreadContext& ctx = context("check_launch_bounds");
  const long long threads = static_cast<long long>(blockDim.x) * blockDim.y * blockDim.z;
  if (threads > max_threads && !ctx.launch->bounds_reported.exchange(true)) {
    report(
        "%s (%s:%d): %lld threads per block exceed its __launch_bounds__(%lld): the GPU "
        "refuses this launch (cudaErrorLaunchOutOfResources)",
        kernel, ctx.launch->file, ctx.launch->line, threads, max_threads);
  }
}

// ---- launches ----

// Why the GPU would refuse this configuration, or "" if it would not.
inline std::string configuration_problem(dim3 grid, dim3 block, size_t dynamic_bytes) {
  char why[256] = "";
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
      block.z > 64 || threads > kMaxBlockThreads) {
    std::snprintf(
        why, sizeof(why),
        "block (%u, %u, %u) is not a valid block shape (at most (1024, 1024, 64) and 1024 "
        "threads): cudaErrorInvalidConfiguration",
        block.x, block.y, block.z);
  } else if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
             grid.z > 65535) {
    std::snprintf(why, sizeof(why),
                  "grid (%u, %u, %u) is not a valid grid (each dimension at least 1, x below 2^31, "
                  "y and z at most 65535): cudaErrorInvalidConfiguration",
                  grid.x, grid.y, grid.z);
  } else if (dynamic_bytes > kSharedMemoryLimit) {
    std::snprintf(why, sizeof(why),
                  "%zu bytes of dynamic shared memory exceed the %zu a launch gets without "
                  "cudaFuncSetAttribute: cudaErrorInvalidValue",
                  dynamic_bytes, kSharedMemoryLimit);
  }
  return why;
}

// The order in which a launch runs its blocks (CUDA_EMULATOR_BLOCK_ORDER): the i-th block to run,
// of `count`. Results that depend on it betray blocks that communicate without synchronisation.
class BlockOrderer {
 public:
  explicit BlockOrderer(dim3 grid) : grid_(grid), count_(1ull * grid.x * grid.y * grid.z) {
    if (settings().order == BlockOrder::kShuffle) {
      static std::mt19937_64 rng(20240520);
      permutation_.resize(count_);
      for (unsigned long long i = 0; i < count_; ++i) permutation_[i] = i;
      std::shuffle(permutation_.begin(), permutation_.end(), rng);
    }
  }
  unsigned long long count() const { return count_; }
  uint3 operator[](unsigned long long i) const {
    if (settings().order == BlockOrder::kReverse) i = count_ - 1 - i;
    if (settings().order == BlockOrder::kShuffle) i = permutation_[i];
    const unsigned x = static_cast<unsigned>(i % grid_.x);
    const unsigned y = static_cast<unsigned>(i / grid_.x % grid_.y);
    const unsigned z = static_cast<unsigned>(i / (1ull * grid_.x * grid_.y));
    return uint3{x, y, z};
  }

 private:
  dim3 grid_;
  unsigned long long count_;
  std::vector<unsigned long long> permutation_;
};

// One launch at a time, whatever the kernel: blocks of all kernels share the static __shared__
// arrays and the worker threads.
inline std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

struct AlignedFree {
  void operator()(unsigned char* p) const { ::operator delete(p, std::align_val_t(128)); }
};

// Replaces `kernel<<<grid, block, dynamic_bytes, stream>>>(args...)` (see preprocess.py); `kernel`
// is a generic lambda that calls the kernel with copies of the arguments, as a launch copies them.
// Runs the whole grid before returning (the emulated stream is always synchronous).
template <typename Kernel, typename... Args>
void launch(const char* name, const char* file, int line, dim3 grid, dim3 block,
            size_t dynamic_bytes, cudaStream_t /*stream*/, Kernel kernel, Args&&... args) {
  std::lock_guard launch_lock(launch_mutex());
  ++counters().launches;
  {
    ErrorState& s = error_state();
    std::lock_guard lock(s.mutex);
    if (s.unchecked != nullptr) {
      ++counters().unchecked_launches;
      std::fprintf(stderr,
                   "cuda emulator: %s launched (%s:%d) with no check_launch after the "
                   "launch of %s before it\n",
                   name, file, line, s.unchecked);
    }
    s.unchecked = name;
  }
  if (const std::string why = configuration_problem(grid, block, dynamic_bytes); !why.empty()) {
    report("%s (%s:%d) not launched: %s", name, file, line, why.c_str());
    return;
  }
  const std::tuple<std::decay_t<Args>...> params(std::forward<Args>(args)...);
  Launch state;
  state.kernel = name;
  state.file = file;
  state.line = line;
  state.dynamic_bytes = dynamic_bytes;
  const unsigned threads = block.x * block.y * block.z;
  // Exactly the requested size, so that AddressSanitizer reports any access past it.
  std::unique_ptr<unsigned char, AlignedFree> dynamic(
      static_cast<unsigned char*>(::operator new(dynamic_bytes, std::align_val_t(128))));

  const BlockOrderer order(grid);
  for (unsigned long long i = 0; i < order.count(); ++i) {
    const uint3 b = order[i];
    ++counters().blocks;
    Block state_of_block(threads);
    state_of_block.dynamic_shared = dynamic.get();
    std::memset(dynamic.get(), kPoisonByte, dynamic_bytes);
    {
      StaticSharedRegistry& r = static_shared_registry();
      std::lock_guard lock(r.mutex);
      for (const auto& a : r.arrays) std::memset(a.first, kPoisonByte, a.second);
    }
    const std::function<void(unsigned)> body = [&](unsigned t) {
      ThreadContext ctx{&state, &state_of_block, state_of_block.warps[t / kWarpSize].get(),
                        static_cast<int>(t % kWarpSize), 0};
      t_context = &ctx;
      threadIdx = uint3{t % block.x, t / block.x % block.y, t / (block.x * block.y)};
      blockIdx = b;
      blockDim = block;
      gridDim = grid;
      std::apply([&](const auto&... p) { kernel(p...); }, params);
      // Returned: no longer expected at barriers (warp operations check for missing lanes).
      ctx.warp->barrier.arrive_and_drop();
      state_of_block.barrier.arrive_and_drop();
      t_context = nullptr;
    };
    char what[256];
    std::snprintf(what, sizeof(what), "block (%u, %u, %u) of %s (%s:%d)", b.x, b.y, b.z, name, file,
                  line);
    pool().run(threads, body, what);
  }

  size_t static_bytes = 0;
  for (const auto& a : state.static_shared) static_bytes += a.second;
  if (static_bytes + dynamic_bytes > kSharedMemoryLimit) {
    report(
        "%s (%s:%d): %zu bytes of static and %zu of dynamic shared memory exceed %zu: the GPU "
        "refuses this launch",
        name, file, line, static_bytes, dynamic_bytes, kSharedMemoryLimit);
  }
}

// ---- warp operations ----

// Deposits this lane's operand of its next warp operation, waits for the warp, and returns the
// slots of all lanes, after checking that every lane of the warp deposited the same operation.
inline const WarpSlot* warp_exchange(WarpSlot mine, const char* what) {
  ThreadContext& ctx = context(what);
  Warp& w = *ctx.warp;
  const uint64_t seq = ++ctx.warp_ops;
  WarpSlot* slots = w.slots[seq & 1];
  mine.seq = seq;
  slots[ctx.lane] = mine;
  w.barrier.arrive_and_wait();
  for (int l = 0; l < kWarpSize; ++l) {
    const bool missing = l >= w.lanes || slots[l].seq != seq;
    if (missing || slots[l].op != mine.op || slots[l].width != mine.width) {
      if (!w.reported.exchange(true)) {
        report(
            "%s (%s:%d), block (%u, %u, %u), warp %u: lane %d %s the %s that lane %d "
            "executes (its %llu-th warp operation) with the full mask",
            ctx.launch->kernel, ctx.launch->file, ctx.launch->line, blockIdx.x, blockIdx.y,
            blockIdx.z,
            (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) / kWarpSize, l,
            l >= w.lanes ? "does not exist (partial warp) for"
            : missing    ? "has returned or is elsewhere, so does not take part in"
                         : "executes a different operation than",
            what, ctx.lane, static_cast<unsigned long long>(seq));
      }
      break;
    }
  }
  return slots;
}

template <typename T>
T shuffle(WarpOp op, unsigned mask, T value, int arg, int width, const char* what) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move up to 8 bytes");
  if (mask != kFullMask) fatal("%s with mask %#x: only full-warp masks are emulated", what, mask);
  if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0) {
    fatal("%s with width %d: width must be a power of 2 up to 32", what, width);
  }
  WarpSlot mine;
  mine.op = op;
  mine.width = width;
  std::memcpy(&mine.value, &value, sizeof(T));
  const WarpSlot* slots = warp_exchange(mine, what);
  // Source lanes as the CUDA Programming Guide defines them for each kind; a source outside the
  // lane's group of `width` lanes (later groups, for xor) returns the lane's own value.
  const int lane = t_context->lane;
  const int group = lane / width * width;
  int source = lane;
  switch (op) {
    case WarpOp::kShflXor:
      source = lane ^ arg;
      if (source >= group + width) source = lane;
      break;
    case WarpOp::kShflDown:
      source = lane % width + arg < width ? lane + arg : lane;
      break;
    case WarpOp::kShflUp:
      source = lane % width - arg >= 0 ? lane - arg : lane;
      break;
    case WarpOp::kShflIdx:
      source = group + ((arg % width) + width) % width;
      break;
    default:
      break;
  }
  if (source < 0 || source >= kWarpSize) fatal("%s: source lane %d out of range", what, source);
  T result;
  std::memcpy(&result, &slots[source].value, sizeof(T));
  return result;
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: D (16x8) = A (16x16) B (16x8) + C, fp32
// accumulation, executed by the 32 lanes of a warp together. Fragment layouts transcribed from
// the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type"), with
// group = lane / 4 and t = lane % 4; element i of a fragment sits in register i / 2, the even
// element in the low 16 bits:
//   A, elements a0..a7: row group + 8 * (i / 2 % 2), column 2 t + i % 2 + 8 * (i / 4)
//   B, elements b0..b3: row (k) 2 t + i % 2 + 8 * (i / 2), column (n) group
//   C, D, elements 0..3: row group + 8 * (i / 2), column 2 t + i % 2
// Products of bf16 are exact in double; the 16 of a dot product and C are added in double and
// rounded once to float (the hardware's fp32 accumulation may differ in the last bits).
inline void mma_m16n8k16_row_col_f32_bf16_bf16_f32(const std::array<float*, 4>& d,
                                                   const std::array<uint32_t, 4>& a,
                                                   const std::array<uint32_t, 2>& b,
                                                   const std::array<float, 4>& c) {
  WarpSlot mine;
  mine.op = WarpOp::kMma;
  for (int r = 0; r < 4; ++r) mine.a[r] = a[r];
  mine.b[0] = b[0];
  mine.b[1] = b[1];
  for (int i = 0; i < 4; ++i) mine.c[i] = c[i];
  const WarpSlot* slots = warp_exchange(mine, "mma.sync.m16n8k16");
  const int lane = t_context->lane;
  if (lane == 0) ++counters().mma_calls;
  auto half = [](uint32_t reg, int i) {
    const uint32_t bits = (i % 2 == 0 ? reg & 0xffffu : reg >> 16) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return static_cast<double>(f);
  };
  double A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < kWarpSize; ++l) {
    const int group = l / 4, t = l % 4;
    for (int i = 0; i < 8; ++i) {
      A[group + 8 * (i / 2 % 2)][2 * t + i % 2 + 8 * (i / 4)] = half(slots[l].a[i / 2], i);
    }
    for (int i = 0; i < 4; ++i) {
      B[2 * t + i % 2 + 8 * (i / 2)][group] = half(slots[l].b[i / 2], i);
      C[group + 8 * (i / 2)][2 * t + i % 2] = slots[l].c[i];
    }
  }
  const int group = lane / 4, t = lane % 4;
  float result[4];
  for (int i = 0; i < 4; ++i) {
    const int row = group + 8 * (i / 2), col = 2 * t + i % 2;
    double sum = C[row][col];
    for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
    result[i] = static_cast<float>(sum);
  }
  for (int i = 0; i < 4; ++i) *d[i] = result[i];
}

// The result of one float operation, rounded to float on its own: the volatile store keeps the
// compiler from fusing it into a multiply-add (as the _rn intrinsics promise).
inline float rounded(float x) {
  volatile float r = x;
  return r;
}

template <typename To, typename From>
To bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From));
  To r;
  std::memcpy(&r, &x, sizeof(r));
  return r;
}

}  // namespace emu

// ---- the CUDA device functions the kernels call ----

inline void __syncthreads() { emu::context("__syncthreads").block->barrier.arrive_and_wait(); }

inline void __syncwarp(unsigned mask = emu::kFullMask) {
  if (mask != emu::kFullMask) emu::fatal("__syncwarp with a partial mask is not emulated");
  emu::WarpSlot mine;
  mine.op = emu::WarpOp::kSyncWarp;
  emu::warp_exchange(mine, "__syncwarp");
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = emu::kWarpSize) {
  return emu::shuffle(emu::WarpOp::kShflXor, mask, var, lane_mask, width, "__shfl_xor_sync");
}

template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = emu::kWarpSize) {
  return emu::shuffle(emu::WarpOp::kShflDown, mask, var, static_cast<int>(delta), width,
                      "__shfl_down_sync");
}

template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = emu::kWarpSize) {
  return emu::shuffle(emu::WarpOp::kShflUp, mask, var, static_cast<int>(delta), width,
                      "__shfl_up_sync");
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = emu::kWarpSize) {
  return emu::shuffle(emu::WarpOp::kShflIdx, mask, var, src_lane, width, "__shfl_sync");
}

inline float __uint_as_float(unsigned x) { return emu::bits_as<float>(x); }
inline float __int_as_float(int x) { return emu::bits_as<float>(x); }
inline unsigned __float_as_uint(float x) { return emu::bits_as<unsigned>(x); }
inline int __float_as_int(float x) { return emu::bits_as<int>(x); }

inline float __fadd_rn(float a, float b) { return emu::rounded(a + b); }
inline float __fsub_rn(float a, float b) { return emu::rounded(a - b); }
inline float __fmul_rn(float a, float b) { return emu::rounded(a * b); }
inline float __fdiv_rn(float a, float b) { return emu::rounded(a / b); }
inline float __fsqrt_rn(float a) { return emu::rounded(std::sqrt(a)); }
inline float __fmaf_rn(float a, float b, float c) { return emu::rounded(std::fma(a, b, c)); }

// CUDA's integer and floating-point min and max (device code calls them unqualified).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
