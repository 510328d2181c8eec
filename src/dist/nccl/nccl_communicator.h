// Collectives between GPUs over NCCL, one GPU per MPI process, bootstrapped over MPI: the processes
// on one host take its GPUs in turn (local rank i uses device i modulo the count), rank 0 makes
// NCCL's unique id and MPI hands it to the others.
//
// Sums follow NCCL's own order (fixed for a given topology and NCCL version, not rank order).
// Pieces of unequal size (the ZeRO-1 pieces of a span) go as one group of reduces or broadcasts,
// one per owning rank. Every call waits for its stream: the caller has synchronised the backend
// before, and may reuse the buffer after.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/mpi/mpi_communicator.h"

namespace switchyard::dist {

class NcclCommunicator : public Communicator {
 public:
  // Joins the MPI job, picks this process's GPU and creates the NCCL communicator; throws Error
  // when there is no GPU or NCCL fails.
  NcclCommunicator();
  ~NcclCommunicator() override;

  int rank() const override { return mpi_.rank(); }
  int size() const override { return mpi_.size(); }
  std::string description() const override;
  // The GPU this rank uses (select it before creating the CUDA backend).
  int device() const { return device_; }

  void reduce_scatter_sum(const Tensor& x, std::span<const int64_t> counts) override;
  void all_gather(const Tensor& x, std::span<const int64_t> counts) override;
  void broadcast(const Tensor& x, int root) override;
  void barrier() override { mpi_.barrier(); }
  std::vector<std::string> all_gather_text(const std::string& mine) override {
    return mpi_.all_gather_text(mine);
  }

 private:
  struct State;  // the NCCL communicator and its stream
  MpiCommunicator mpi_;
  int device_ = 0;
  std::unique_ptr<State> state_;
};

}  // namespace switchyard::dist
