// A data-parallel step on N simulated NeuronCores, as core 0 of them lives it.
//
// The cores of a data-parallel step do the same work on different sequences, so one simulated
// core stands for all of them: it runs its share of the batch as any single core would, and this
// StepSync puts on its clock what the others and the links add (ZeRO-1, as llm.c does it):
//
//   - as the backward pass finishes each gradient bucket (train/gradient_buckets.h; the buckets of
//     the MPI engine, train/data_parallel.h, by default), that bucket's
//     reduce-scatter starts on the simulated interconnect (dist/simulated_interconnect.h), one
//     after another, beside the core's own work on the layers before it;
//   - after the backward pass the core waits for whatever part of them is still running (the
//     exposed part), then for the all-reduce of the step's two statistics (loss, squared norm);
//   - it updates its own 1/N of the parameters (its owned pieces: the simulated optimizer step is
//     that of 1/N of the elements, in as many launches as pieces);
//   - it waits for the all-gather of every parameter.
//
// The collectives run on the chip's collective engines and DMA, not on the core's compute engines,
// and their traffic is not charged to the core's HBM bandwidth. A trace shows the waits on GpSimd's
// track (kernels "data_parallel.*") and the collectives on a track of their own.
//
// Nothing is communicated: there is one process and one core. Functionally the core computes what
// core 0 would if every core had its batch: the cluster's mean gradient is then its own, so the
// owned pieces are updated with the gradient a real cluster would reduce and the statistics are
// the cluster's (the squared norm is that of the whole gradient, summed on the host). The pieces
// other cores own are not updated (nothing computes them): after the first step the parameters
// outside core 0's share keep their values, and later losses are those of that partly updated
// model. Use it to time a step (bench train); `train --cores` trains a separate model without it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "dist/simulated_interconnect.h"
#include "model/model.h"
#include "model/step_sync.h"
#include "train/gradient_buckets.h"
#include "train/trainer.h"

namespace switchyard::train {

// What the collectives of one step cost, in simulated milliseconds on core 0's clock.
struct ClusterCollectives {
  int buckets = 0;
  double reduce_scatter_ms = 0;          // every bucket's reduce-scatter, durations added
  double exposed_reduce_scatter_ms = 0;  // what the core waited for them after its backward pass
  double statistics_ms = 0;              // the all-reduce of loss and squared norm (waited for)
  double all_gather_ms = 0;              // the parameters' all-gather (waited for)
  double total_ms() const { return reduce_scatter_ms + statistics_ms + all_gather_ms; }
  double exposed_ms() const { return exposed_reduce_scatter_ms + statistics_ms + all_gather_ms; }
};

class SimulatedCluster final : public model::StepSync {
 public:
  // Core 0 of `cores` (laid out by dist::layout_cores) training `model`, whose backend must be a
  // simulator, with `micro_batches` forward-backward passes per optimizer step. Install it with
  // model.set_step_sync(this) before the first step; it must outlive the training.
  SimulatedCluster(model::Model& model, const dist::Interconnect& links, int cores,
                   int micro_batches,
                   size_t min_bucket_floats = TrainOptions{}.bucket_floats);  // as mpirun's

  std::vector<model::FloatRange> owned_ranges() const override;
  void layer_gradients_done(int layer) override;
  void gradients_reduced() override;
  void sum_statistics(const Tensor& statistics) override;
  void parameters_updated() override;

  const dist::CoreLayout& layout() const { return layout_; }
  // The collectives of the last step that reached parameters_updated().
  const ClusterCollectives& last_step() const { return last_; }

 private:
  double now_ns() const;
  // Starts `bucket`'s reduce-scatter once the links are free, no earlier than now.
  void start_reduce_scatter(size_t bucket);
  // The core waits until `until_ns` (nothing when that has passed); returns the wait.
  double wait_until(double until_ns, const char* what);
  double collective_ns(double bytes) const;

  model::Model& model_;
  backend::SimulatorBackend& sim_;
  dist::Interconnect links_;
  dist::CoreLayout layout_;
  int micro_batches_;
  std::vector<GradientBucket> buckets_;
  int micro_done_ = 0;        // forward-backward passes finished in this step
  double links_free_ns_ = 0;  // when the last reduce-scatter started so far ends
  ClusterCollectives step_, last_;
};

}  // namespace switchyard::train
