// The timeline of the instructions a core ran, as Chrome trace-event JSON (Perfetto opens it):
// one track per compute engine, per DMA queue and one for TensorE's LoadStationary, each slice
// named "kernel.op"; and, when a data-parallel step put any there, a track of the collectives
// that ran beside the core on the simulated interconnect (dist/simulated_interconnect.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "neuron/config.h"
#include "neuron/kernel_context.h"

namespace switchyard::neuron {

class Trace {
 public:
  // Slices are recorded only while on.
  void record(bool on) { on_ = on; }
  void clear() {
    events_.clear();
    collectives_.clear();
  }
  // One instruction of kernel `kernel` (a KernelContext id) on `track` (the compute engines,
  // then the DMA queues, then LoadStationary).
  void add(int32_t kernel, int32_t track, const char* op, double start_ns, double end_ns) {
    if (on_) events_.push_back(Event{kernel, track, op, start_ns, end_ns});
  }
  // A collective that ran beside the core (not on its engines), on the collectives track.
  void add_collective(std::string name, double start_ns, double end_ns) {
    if (on_) collectives_.push_back(Collective{std::move(name), start_ns, end_ns});
  }
  // Writes the recorded slices to `path`; throws Error when the file cannot be written.
  void write(const std::string& path, const CoreConfig& config,
             const KernelContext& kernels) const;

 private:
  struct Event {
    int32_t kernel;
    int32_t track;
    const char* op;
    double start_ns;
    double end_ns;
  };
  struct Collective {
    std::string name;
    double start_ns;
    double end_ns;
  };
  bool on_ = false;
  std::vector<Event> events_;
  std::vector<Collective> collectives_;
};

}  // namespace switchyard::neuron
