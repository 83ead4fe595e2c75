#include "core/private_arena.hpp"

#include <jemalloc/jemalloc.h>
#include <sys/types.h>

#include <string>

#include "core/log.hpp"

namespace portico {

void use_private_arena(const char* who) {
  unsigned arena = 0;
  size_t len = sizeof(arena);
  if (mallctl("arenas.create", &arena, &len, nullptr, 0) != 0 ||
      mallctl("thread.arena", nullptr, nullptr, &arena, sizeof(arena)) != 0) {
    log::warn(std::string("could not give the ") + who + " its own allocator arena");
    return;
  }
  ssize_t decay_ms = 30000;
  std::string key = "arena." + std::to_string(arena) + ".dirty_decay_ms";
  mallctl(key.c_str(), nullptr, nullptr, &decay_ms, sizeof(decay_ms));
}

}  // namespace portico
