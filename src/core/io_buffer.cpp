#include "core/io_buffer.hpp"

#include <sys/mman.h>

#include <new>

namespace portico {

PageBlock::PageBlock(size_t size) : size_(size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<char*>(p);
}

PageBlock::~PageBlock() {
  if (data_) ::munmap(data_, size_);
}

PageBlock& PageBlock::operator=(PageBlock&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(data_, size_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

}  // namespace portico
