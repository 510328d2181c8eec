// The job this process belongs to: how many ranks its launcher started, and the Communicator that
// joins them (Switchyard launches nothing itself: mpirun and srun do).
#pragma once

#include <memory>
#include <string>

#include "dist/communicator.h"

namespace switchyard::dist {

// The number of processes the launcher started, from its environment: Open MPI's mpirun
// (OMPI_COMM_WORLD_SIZE), PMIx or PMI launchers (srun --mpi=pmix, MPICH's hydra) and Slurm's
// srun (SLURM_NTASKS inside a job step). 1 when none started this process.
int launched_ranks();

// What carries the job's collectives: the device's memory decides between MPI (host memory) and
// NCCL (CUDA devices).
enum class Transport { kHostMemory, kCuda };

// A single-rank Communicator when the launcher started one process; otherwise joins the job.
// Throws Error when this build has no MPI (or no NCCL for a CUDA job), or when MPI sees fewer
// ranks than the launcher started (srun without a PMI plugin MPI understands).
std::unique_ptr<Communicator> join_job(Transport transport);

// Whether this build can join jobs of several ranks over `transport`.
bool supports(Transport transport);

}  // namespace switchyard::dist
