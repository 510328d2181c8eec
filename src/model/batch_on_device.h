// A Batch's index tensors on the device, uploaded once per forward pass into one reusable
// allocation: what the ops of every layer read (token ids, positions, targets, the rows that get
// logits, and over a KvCache each group's slots and block tables and the sequences' extents).
#pragma once

#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/batch.h"
#include "model/device_buffer.h"

namespace switchyard::model {

class BatchOnDevice {
 public:
  explicit BatchOnDevice(backend::Backend& backend) : backend_(backend) {}
  // Copies `batch` to the device (growing the allocation when it is too small).
  void upload(const Batch& batch);

  int rows = 0;
  Tensor tokens, positions, targets, logits_rows;  // int32; targets empty without targets
  int logits = 0;                                  // rows that get logits
  bool all_rows_get_logits = false;
  // Uniform windows (training attention), or 0 when the batch runs over a cache.
  int windows = 0, window_length = 0;
  // Over a cache: per group, each row's slot and the block tables; the sequences' extents.
  std::vector<Tensor> slots, block_tables;
  Tensor query_start, context_len;
  int max_query = 0, max_context = 0;

 private:
  backend::Backend& backend_;
  DeviceBuffer buffer_;
  size_t capacity_ = 0;  // int32 elements
};

}  // namespace switchyard::model
