// Threads that build and free big configurations (control, compile) allocate from an arena of
// their own: sharing one with a worker means sharing its locks, and a compile thread at idle
// priority holding an arena lock a worker waits for stalled that worker for up to 100 ms.
#pragma once

namespace portico {

// Gives the calling thread a private jemalloc arena whose freed pages are kept for 30 s (a big
// compile frees and re-allocates the same memory again and again). `who` names the thread in
// the warning logged when that is not possible.
void use_private_arena(const char* who);

}  // namespace portico
