// A per-thread 64-bit generator seeded with 256 bits from the OS, for ids that must not repeat
// across the threads and restarts of a fleet (request ids, trace and span ids): seeded from a
// single 32-bit word, each thread would draw one of only 2^32 sequences.
#pragma once

#include <random>

namespace portico {

inline std::mt19937_64& thread_rng() {
  thread_local std::mt19937_64 rng = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(),
                       device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return rng;
}

}  // namespace portico
