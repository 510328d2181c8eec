// How a simulated NeuronCore executes the instructions it is given.
#pragma once

namespace switchyard::neuron {

enum class ExecutionMode {
  // Every instruction is checked against the hardware rules, executed on real values (the
  // memories hold bytes; fresh memory is NaN) and timed.
  kFunctional,
  // The same rule checks, dependency tracking, cost model, simulated times, statistics and trace
  // as kFunctional, but no arithmetic: the core's memories hold no values and DMA moves no bytes,
  // so shapes far too large to compute on the host can be timed. What instructions write is
  // unspecified: host reads of SBUF, PSUM and the core's own HBM tensors give zeros, and HBM
  // tensors attached from caller memory keep whatever the caller put there. Two things depend on
  // data and so are not done: the range check of gather/scatter indices, and skipping the rows of
  // an indirect store whose index is negative (every row is timed as written).
  kTimingOnly,
};

inline const char* execution_mode_name(ExecutionMode mode) {
  return mode == ExecutionMode::kFunctional ? "functional" : "timing-only";
}

}  // namespace switchyard::neuron
