// ParallelFor over XLA's intra-op thread pool, for the FFI handlers of this directory.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace jaxvision {

// Runs fn(i) for every i in [0, n), on the calling thread and on up to max_workers - 1 tasks
// of XLA's CPU thread pool. The caller claims items as the tasks do, so the loop completes
// even where no task ever starts (a busy pool, the caller itself a pool thread); the caller
// then waits only for items that running tasks have claimed. A task that starts after the
// loop ended claims nothing and never touches fn.
template <typename F>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, int64_t max_workers, const F& fn) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  const F* body = &fn;
  // The caller is one of the workers: at most as many as the pool has threads.
  const int64_t tasks = std::min<int64_t>({max_workers, pool.num_threads(), n} ) - 1;
  for (int64_t t = 0; t < tasks; ++t) {
    pool.Schedule([state, body, n]() {
      for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
        (*body)(i);
        state->done.fetch_add(1, std::memory_order_release);
      }
    });
  }
  for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
    fn(i);
    state->done.fetch_add(1, std::memory_order_release);
  }
  while (state->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

}  // namespace jaxvision
