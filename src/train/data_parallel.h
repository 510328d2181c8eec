// Data-parallel training with a sharded optimizer (ZeRO-1) over a Communicator: the StepSync a
// Model trains with when several ranks share every step.
//
// Each rank runs the forward and backward passes on its share of the global batch. As the backward
// pass of the step's last micro-batch finishes a bucket of layers (gradient_buckets.h), a thread of
// this class reduce-scatters that bucket's gradients while the pass goes on: every rank then holds
// the sum over the ranks of its own pieces. The Model updates only those pieces, and keeps AdamW
// moments only for them (1/N of the whole); the updated pieces are then all-gathered into every
// rank's parameters. Over MPI every sum is in rank order, so two ranks reproduce exactly the
// gradients one process gets accumulating the same two halves of the batch.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "dist/communicator.h"
#include "model/model.h"
#include "train/gradient_buckets.h"

namespace switchyard::train {

class DataParallelSync : public model::StepSync {
 public:
  // Buckets of at least `bucket_floats` gradients. Registers itself with model.set_step_sync.
  DataParallelSync(model::Model& model, dist::Communicator& comm, size_t bucket_floats);
  ~DataParallelSync() override;
  DataParallelSync(const DataParallelSync&) = delete;
  DataParallelSync& operator=(const DataParallelSync&) = delete;

  // Says whether the micro-batch whose backward pass comes next is the step's last: only its
  // finished layers start reductions (earlier ones are still accumulating).
  void begin_micro_batch(bool last) { last_micro_batch_ = last; }

  // Whole-layout AdamW moments on every rank, from each rank's own pieces (Model::adam_*_to_host
  // fills only those): collective, for checkpoints.
  std::vector<float> gather_pieces(std::vector<float> whole) const;

  const std::vector<GradientBucket>& buckets() const { return buckets_; }

  // model::StepSync
  std::vector<model::FloatRange> owned_ranges() const override;
  void layer_gradients_done(int layer) override;
  void gradients_reduced() override;
  void sum_statistics(const Tensor& statistics) override;
  void parameters_updated() override;

 private:
  void send_buckets();  // the thread's loop
  void reduce_bucket(const GradientBucket& bucket);

  model::Model& model_;
  dist::Communicator& comm_;
  std::vector<GradientBucket> buckets_;
  bool last_micro_batch_ = true;
  size_t next_bucket_ = 0;  // buckets queued so far in this step

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<size_t> queue_;  // buckets ready to reduce
  size_t in_flight_ = 0;      // queued or being reduced
  bool stopping_ = false;
  std::exception_ptr error_;  // the thread's failure, rethrown by gradients_reduced
  std::thread thread_;
};

}  // namespace switchyard::train
