// How a training step joins the gradients of several replicas of the model: the Model calls it at
// the points of a step where a data-parallel engine must act (train/data_parallel.h for ranks,
// the simulated NeuronCore cluster for timing). Without one, a Model trains on its own.
#pragma once

#include <vector>

#include "core/tensor.h"
#include "model/parameter_layout.h"

namespace switchyard::model {

class StepSync {
 public:
  virtual ~StepSync() = default;

  // The parameter ranges this replica updates and keeps optimizer state for (ZeRO-1: its pieces);
  // the Model asks once, before its first update. The ranges of all replicas cover every tensor.
  virtual std::vector<FloatRange> owned_ranges() const = 0;
  // A backward pass has finished `layer`'s gradients (layers finish from the last down; -1 once
  // the whole pass is done). Called for every micro-batch; after the step's last one, the
  // gradients of that layer's tensors stay untouched until the update.
  virtual void layer_gradients_done(int layer) = 0;
  // Before the update: once this returns, the owned ranges of the gradients hold their sums over
  // the replicas.
  virtual void gradients_reduced() = 0;
  // Sums the step's statistics over the replicas, in place: host memory, f64 [2] (the loss, the
  // owned gradients' sum of squares).
  virtual void sum_statistics(const Tensor& statistics) = 0;
  // After the update of the owned ranges: once this returns, every parameter is up to date.
  virtual void parameters_updated() = 0;
};

}  // namespace switchyard::model
