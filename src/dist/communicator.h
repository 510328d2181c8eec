// The ranks of a multi-device job and the collectives between them.
//
// A Communicator joins `size()` processes (or devices), each knowing its `rank()`. Its collectives
// work in place on device buffers (Tensor: fp32 or f64) and are called by every rank in the same
// order with the same shapes; they return when this rank's part is done. Implementations: one rank
// (nothing to do), Open MPI for CPU processes (mpi/), NCCL for GPUs (nccl/).
//
// Sums over MPI are exact functions of the inputs, whatever algorithm MPI picks: every element is
// summed in rank order, ((x_0 + x_1) + x_2) + ..., so that every rank and every run get the same
// bits, and a two-rank sum equals the one a single process makes accumulating the same two
// halves. NCCL sums in its own (fixed) order.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace switchyard::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // What carries the collectives ("single process", "Open MPI 4.1.4", "NCCL 2.x").
  virtual std::string description() const = 0;

  // x holds size() consecutive pieces of counts[r] elements. Afterwards piece rank() holds the sum
  // of that piece over the ranks; the other pieces hold what they held or scratch.
  virtual void reduce_scatter_sum(const Tensor& x, std::span<const int64_t> counts) = 0;
  // x holds size() consecutive pieces of counts[r] elements; afterwards every rank's x holds every
  // rank's own piece.
  virtual void all_gather(const Tensor& x, std::span<const int64_t> counts) = 0;
  // Every element of x becomes its sum over the ranks (a reduce-scatter then an all-gather).
  void all_reduce_sum(const Tensor& x);
  // x becomes root's x on every rank.
  virtual void broadcast(const Tensor& x, int root) = 0;
  virtual void barrier() = 0;
  // Every rank's `mine`, by rank (host strings: settings to compare, host names and process ids).
  virtual std::vector<std::string> all_gather_text(const std::string& mine) = 0;
};

// Splits n elements into `ranks` consecutive pieces, the first n % ranks one longer.
std::vector<int64_t> even_counts(int64_t n, int ranks);

// A job of one rank: every collective leaves its buffer as it is.
class SingleRankCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string description() const override { return "single process"; }
  void reduce_scatter_sum(const Tensor&, std::span<const int64_t>) override {}
  void all_gather(const Tensor&, std::span<const int64_t>) override {}
  void broadcast(const Tensor&, int) override {}
  void barrier() override {}
  std::vector<std::string> all_gather_text(const std::string& mine) override { return {mine}; }
};

}  // namespace switchyard::dist
