// Collectives between processes over Open MPI (or any MPI), for backends whose device memory is
// host memory (the CPU, the simulators).
//
// The launcher (mpirun, srun) starts the processes; this joins them. Every collective runs on
// MPI_COMM_WORLD. MPI is initialised for serialised use from several threads (the data-parallel
// engine sends gradients from a thread of its own while the backward pass goes on, never two
// threads at once).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace switchyard::dist {

class MpiCommunicator : public Communicator {
 public:
  // Initialises MPI; throws Error when it fails or cannot serve two threads in turn.
  MpiCommunicator();
  ~MpiCommunicator() override;  // finalises MPI

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string description() const override { return description_; }

  // The sum runs on the receiving rank: MPI_Alltoallv brings every rank's copy of this rank's
  // piece, which is then added up in rank order (so the result does not depend on the
  // algorithm MPI picks).
  void reduce_scatter_sum(const Tensor& x, std::span<const int64_t> counts) override;
  void all_gather(const Tensor& x, std::span<const int64_t> counts) override;
  void broadcast(const Tensor& x, int root) override;
  void barrier() override;
  std::vector<std::string> all_gather_text(const std::string& mine) override;

 private:
  int rank_ = 0;
  int size_ = 1;
  std::string description_;
  std::vector<char> staging_;  // reduce_scatter_sum's incoming pieces
};

}  // namespace switchyard::dist
