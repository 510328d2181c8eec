// How the C library's heap treats freed memory in the inference commands.
#pragma once

namespace switchyard::cli {

// Every decoding step allocates and frees host vectors of megabytes (the logits of each sequence
// that samples, widened from bf16). glibc returns such memory at the top of its heap to the system
// when freed and takes it back, page fault by page fault, on the next step: in some processes, by
// where those blocks happen to lie, that doubled a step at 32 sequences. This keeps freed memory
// (up to a bound) and serves these sizes from the heap. `serve` and its peer `bench generate` both
// call it, so that the two decode under the same allocator.
void keep_freed_memory_for_reuse();

}  // namespace switchyard::cli
