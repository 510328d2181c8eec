#include "dist/job.h"

#include <cstdlib>
#include <string>

#include "core/error.h"
#if SWITCHYARD_WITH_MPI
#include "dist/mpi/mpi_communicator.h"
#endif
#if SWITCHYARD_WITH_NCCL
#include "dist/nccl/nccl_communicator.h"
#endif

namespace switchyard::dist {

namespace {

int env_int(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return 0;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  return *end == '\0' && parsed > 0 && parsed < (1 << 24) ? static_cast<int>(parsed) : 0;
}

}  // namespace

int launched_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"}) {
    if (int n = env_int(name)) return n;
  }
  // srun sets SLURM_NTASKS for the job and SLURM_STEP_ID inside a step it launched.
  if (std::getenv("SLURM_STEP_ID")) {
    if (int n = env_int("SLURM_STEP_NUM_TASKS")) return n;
    if (int n = env_int("SLURM_NTASKS")) return n;
  }
  return 1;
}

bool supports(Transport transport) {
#if SWITCHYARD_WITH_NCCL
  if (transport == Transport::kCuda) return true;
#endif
#if SWITCHYARD_WITH_MPI
  if (transport == Transport::kHostMemory) return true;
#endif
  return false;
}

std::unique_ptr<Communicator> join_job(Transport transport) {
  const int launched = launched_ranks();
  if (launched == 1) return std::make_unique<SingleRankCommunicator>();
  require(supports(transport),
          "the launcher started {} processes, but this build has no {} (install Open MPI's "
          "libopenmpi-dev{} and rebuild)",
          launched, transport == Transport::kCuda ? "NCCL communicator" : "MPI communicator",
          transport == Transport::kCuda ? " with CUDA's NCCL" : "");
  std::unique_ptr<Communicator> comm;
#if SWITCHYARD_WITH_NCCL
  if (transport == Transport::kCuda) comm = std::make_unique<NcclCommunicator>();
#endif
#if SWITCHYARD_WITH_MPI
  if (transport == Transport::kHostMemory) comm = std::make_unique<MpiCommunicator>();
#endif
  require(comm->size() == launched,
          "the launcher started {} processes but MPI joined {} (under Slurm, start them with "
          "srun --mpi=pmix)",
          launched, comm->size());
  return comm;
}

}  // namespace switchyard::dist
