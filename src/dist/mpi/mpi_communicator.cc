#include "dist/mpi/mpi_communicator.h"

#include <mpi.h>

#include <climits>
#include <cstring>
#include <numeric>

#include <fmt/format.h>

#include "core/error.h"

namespace switchyard::dist {

namespace {

// Throws Error naming the call when an MPI function fails (errors return, they do not abort).
void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  fail("{} failed: {}", call, std::string(text, static_cast<size_t>(length)));
}

// Sums take fp32 or f64; gathers and broadcasts also move 16-bit elements (bf16, and the low
// halves of parameters held as fp32 halves) as they are.
MPI_Datatype mpi_type(const Tensor& x) {
  if (x.dtype == DType::kF32) return MPI_FLOAT;
  if (x.dtype == DType::kF64) return MPI_DOUBLE;
  if (x.dtype == DType::kBF16 || x.dtype == DType::kU16) return MPI_UINT16_T;
  fail("MPI collectives take fp32, f64 or 16-bit buffers, not {}", dtype_name(x.dtype));
}

// MPI counts and displacements are ints: one per rank, from counts whose sum must be x's size.
std::vector<int> int_counts(const Tensor& x, std::span<const int64_t> counts, int ranks) {
  require(static_cast<int>(counts.size()) == ranks, "{} counts for {} ranks", counts.size(), ranks);
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  require(total == x.numel(), "the pieces hold {} elements, the buffer {}", total, x.numel());
  require(total <= INT_MAX, "a collective of {} elements is beyond MPI's int counts", total);
  return {counts.begin(), counts.end()};
}

std::vector<int> displacements(const std::vector<int>& counts) {
  std::vector<int> displs(counts.size(), 0);
  std::exclusive_scan(counts.begin(), counts.end(), displs.begin(), 0);
  return displs;
}

// out[i] = ((in[0][i] + in[1][i]) + in[2][i]) + ... over `ranks` consecutive pieces of n.
template <typename T>
void sum_in_rank_order(T* out, const T* in, int64_t n, int ranks) {
  std::memcpy(out, in, static_cast<size_t>(n) * sizeof(T));
  for (int q = 1; q < ranks; ++q) {
    const T* piece = in + static_cast<int64_t>(q) * n;
    for (int64_t i = 0; i < n; ++i) out[i] += piece[i];
  }
}

std::string library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string version(text, static_cast<size_t>(length));
  return version.substr(0, version.find_first_of(",\n"));
}

}  // namespace

MpiCommunicator::MpiCommunicator() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  require(!initialized, "MPI is already initialised in this process");
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    fail("this MPI library serves one thread only (MPI_THREAD_SERIALIZED is needed)");
  }
  check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  description_ = library_version();
}

MpiCommunicator::~MpiCommunicator() { MPI_Finalize(); }

void MpiCommunicator::reduce_scatter_sum(const Tensor& x, std::span<const int64_t> counts) {
  require(x.dtype == DType::kF32 || x.dtype == DType::kF64, "MPI sums take fp32 or f64 buffers, not {}",
          dtype_name(x.dtype));
  const std::vector<int> send_counts = int_counts(x, counts, size_);
  if (size_ == 1) return;
  const std::vector<int> send_displs = displacements(send_counts);
  const int mine = send_counts[static_cast<size_t>(rank_)];
  const std::vector<int> recv_counts(static_cast<size_t>(size_), mine);
  const std::vector<int> recv_displs = displacements(recv_counts);
  const size_t element = x.dtype == DType::kF64 ? sizeof(double) : sizeof(float);
  staging_.resize(static_cast<size_t>(size_) * static_cast<size_t>(mine) * element);
  const MPI_Datatype type = mpi_type(x);
  check(MPI_Alltoallv(x.data, send_counts.data(), send_displs.data(), type, staging_.data(),
                      recv_counts.data(), recv_displs.data(), type, MPI_COMM_WORLD),
        "MPI_Alltoallv");
  const int offset = send_displs[static_cast<size_t>(rank_)];
  if (x.dtype == DType::kF64) {
    sum_in_rank_order(static_cast<double*>(x.data) + offset,
                      reinterpret_cast<const double*>(staging_.data()), mine, size_);
  } else {
    sum_in_rank_order(static_cast<float*>(x.data) + offset,
                      reinterpret_cast<const float*>(staging_.data()), mine, size_);
  }
}

void MpiCommunicator::all_gather(const Tensor& x, std::span<const int64_t> counts) {
  const std::vector<int> recv_counts = int_counts(x, counts, size_);
  if (size_ == 1) return;
  const std::vector<int> displs = displacements(recv_counts);
  check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x.data, recv_counts.data(),
                       displs.data(), mpi_type(x), MPI_COMM_WORLD),
        "MPI_Allgatherv");
}

void MpiCommunicator::broadcast(const Tensor& x, int root) {
  require(root >= 0 && root < size_, "broadcast from rank {} of {}", root, size_);
  require(x.numel() <= INT_MAX, "a broadcast of {} elements is beyond MPI's int counts", x.numel());
  check(MPI_Bcast(x.data, static_cast<int>(x.numel()), mpi_type(x), root, MPI_COMM_WORLD),
        "MPI_Bcast");
}

void MpiCommunicator::barrier() { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

std::vector<std::string> MpiCommunicator::all_gather_text(const std::string& mine) {
  require(mine.size() <= INT_MAX, "a text of {} bytes is beyond MPI's int counts", mine.size());
  const int length = static_cast<int>(mine.size());
  std::vector<int> lengths(static_cast<size_t>(size_));
  check(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD),
        "MPI_Allgather");
  const std::vector<int> displs = displacements(lengths);
  std::vector<char> all(static_cast<size_t>(displs.back() + lengths.back()) + 1);
  check(MPI_Allgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), displs.data(),
                       MPI_CHAR, MPI_COMM_WORLD),
        "MPI_Allgatherv");
  std::vector<std::string> texts;
  for (size_t r = 0; r < lengths.size(); ++r) {
    texts.emplace_back(all.data() + displs[r], static_cast<size_t>(lengths[r]));
  }
  return texts;
}

}  // namespace switchyard::dist
