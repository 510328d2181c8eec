#include "dist/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <numeric>

#include <fmt/format.h>

#include "core/error.h"

namespace switchyard::dist {

namespace {

void check_cuda(cudaError_t code, const char* call) {
  if (code != cudaSuccess) fail("{} failed: {}", call, cudaGetErrorString(code));
}

void check_nccl(ncclResult_t code, const char* call) {
  if (code != ncclSuccess) fail("{} failed: {}", call, ncclGetErrorString(code));
}

ncclDataType_t nccl_type(const Tensor& x) {
  if (x.dtype == DType::kF32) return ncclFloat32;
  if (x.dtype == DType::kF64) return ncclFloat64;
  fail("NCCL collectives here take fp32 or f64 buffers, not {}", dtype_name(x.dtype));
}

// The rank of this process among those on its host.
int local_rank() {
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  int rank = 0;
  MPI_Comm_rank(local, &rank);
  MPI_Comm_free(&local);
  return rank;
}

// Byte offsets of consecutive pieces of `counts` elements, checked against x's size.
std::vector<size_t> piece_offsets(const Tensor& x, std::span<const int64_t> counts, int ranks) {
  require(static_cast<int>(counts.size()) == ranks, "{} counts for {} ranks", counts.size(), ranks);
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  require(total == x.numel(), "the pieces hold {} elements, the buffer {}", total, x.numel());
  const size_t element = x.dtype == DType::kF64 ? sizeof(double) : sizeof(float);
  std::vector<size_t> offsets(counts.size(), 0);
  for (size_t r = 1; r < counts.size(); ++r) {
    offsets[r] = offsets[r - 1] + static_cast<size_t>(counts[r - 1]) * element;
  }
  return offsets;
}

}  // namespace

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
};

NcclCommunicator::NcclCommunicator() : state_(std::make_unique<State>()) {
  int devices = 0;
  check_cuda(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  require(devices > 0, "no CUDA device for rank {}", mpi_.rank());
  device_ = local_rank() % devices;
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  ncclUniqueId id{};
  if (mpi_.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  const std::string mine = mpi_.rank() == 0 ? std::string(id.internal, sizeof(id.internal)) : "";
  const std::string root = mpi_.all_gather_text(mine)[0];
  require(root.size() == sizeof(id.internal), "rank 0 sent no NCCL id");
  std::copy(root.begin(), root.end(), id.internal);
  check_nccl(ncclCommInitRank(&state_->comm, mpi_.size(), id, mpi_.rank()), "ncclCommInitRank");
  check_cuda(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
}

NcclCommunicator::~NcclCommunicator() {
  if (state_->stream) cudaStreamDestroy(state_->stream);
  if (state_->comm) ncclCommDestroy(state_->comm);
}

std::string NcclCommunicator::description() const {
  int version = 0;
  ncclGetVersion(&version);
  return fmt::format("NCCL {}.{}.{} (GPU {} of this host) over {}", version / 10000,
                     version / 100 % 100, version % 100, device_, mpi_.description());
}

void NcclCommunicator::reduce_scatter_sum(const Tensor& x, std::span<const int64_t> counts) {
  const std::vector<size_t> offsets = piece_offsets(x, counts, size());
  char* base = static_cast<char*>(x.data);
  check_nccl(ncclGroupStart(), "ncclGroupStart");
  for (int r = 0; r < size(); ++r) {
    char* piece = base + offsets[static_cast<size_t>(r)];
    check_nccl(ncclReduce(piece, piece, static_cast<size_t>(counts[static_cast<size_t>(r)]),
                          nccl_type(x), ncclSum, r, state_->comm, state_->stream),
               "ncclReduce");
  }
  check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  check_cuda(cudaStreamSynchronize(state_->stream), "cudaStreamSynchronize");
}

void NcclCommunicator::all_gather(const Tensor& x, std::span<const int64_t> counts) {
  const std::vector<size_t> offsets = piece_offsets(x, counts, size());
  char* base = static_cast<char*>(x.data);
  check_nccl(ncclGroupStart(), "ncclGroupStart");
  for (int r = 0; r < size(); ++r) {
    char* piece = base + offsets[static_cast<size_t>(r)];
    check_nccl(ncclBroadcast(piece, piece, static_cast<size_t>(counts[static_cast<size_t>(r)]),
                             nccl_type(x), r, state_->comm, state_->stream),
               "ncclBroadcast");
  }
  check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  check_cuda(cudaStreamSynchronize(state_->stream), "cudaStreamSynchronize");
}

void NcclCommunicator::broadcast(const Tensor& x, int root) {
  require(root >= 0 && root < size(), "broadcast from rank {} of {}", root, size());
  check_nccl(ncclBroadcast(x.data, x.data, static_cast<size_t>(x.numel()), nccl_type(x), root,
                           state_->comm, state_->stream),
             "ncclBroadcast");
  check_cuda(cudaStreamSynchronize(state_->stream), "cudaStreamSynchronize");
}

}  // namespace switchyard::dist
