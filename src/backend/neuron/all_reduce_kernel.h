// One NeuronCore's part of a ring all-reduce over the cores of one chip, as a tile program: what
// a tensor-parallel step adds to each core's time (model/tensor_parallel_shard.h).
//
// A ring of R ranks cuts the data into R chunks. In each of the R - 1 reduce-scatter steps a core
// adds the chunk its neighbour sent to its own (the neighbour's buffer is in the chip's HBM: a DMA
// read, an add, a store); in each of the R - 1 all-gather steps it copies the reduced chunk its
// neighbour holds into its own buffer. Before each step the core waits for its neighbour's signal
// (kRingStepWaitNs). Only this core runs: the peer buffer stands for what the neighbour sent.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// The wait for the neighbour's signal before each ring step: the per-step latency the planner
// assumes for collectives (plan/serving_model.h, ServingChip::link_latency_s); no published
// figure for core-to-core signalling within a Trainium chip is known to us.
inline constexpr double kRingStepWaitNs = 5000.0;

// own, peer: HBM views of the same n contiguous elements (fp32 or bf16); own ends up holding
// own + the neighbours' chunks in a real ring. ranks >= 2. `compute`: the dtype of the adds.
void ring_all_reduce(NeuronCore& core, const View& own, const View& peer, int ranks,
                     DType compute);

}  // namespace switchyard::backend::neuron
