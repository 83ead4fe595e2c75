// Byte buffers for sockets, recycled per worker so a request costs no allocation and an idle
// keep-alive connection holds no buffer at all.
#pragma once

#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace portico {

// Memory of an IoBuffer comes straight from mmap: a buffer freed beyond what the pool keeps is
// returned to the kernel at once, so a burst of connections does not leave RSS behind (a heap
// allocator would keep the pages).
class PageBlock {
 public:
  PageBlock() = default;
  explicit PageBlock(size_t size);
  ~PageBlock();
  PageBlock(PageBlock&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  PageBlock& operator=(PageBlock&& o) noexcept;
  char* get() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

// [begin, end) holds unread bytes; [end, capacity) is free space for the next read.
class IoBuffer {
 public:
  IoBuffer() = default;
  explicit IoBuffer(size_t capacity) : block_(capacity) {}

  bool allocated() const { return block_.get() != nullptr; }
  size_t capacity() const { return block_.size(); }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::string_view view() const { return {block_.get() + begin_, end_ - begin_}; }
  const char* data() const { return block_.get() + begin_; }
  char* data() { return block_.get() + begin_; }  // unread bytes, to edit in place (unmasking)

  char* write_ptr() { return block_.get() + end_; }
  size_t writable() const { return capacity() - end_; }
  void commit(size_t n) { end_ += n; }
  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }
  // Moves unread bytes to the front so the free space is contiguous.
  void compact() {
    if (begin_ == 0) return;
    std::memmove(block_.get(), block_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  // Grows to `capacity`, keeping unread bytes (used for heads larger than one pool buffer).
  void grow(size_t capacity) {
    PageBlock bigger(capacity);
    std::memcpy(bigger.get(), data(), size());
    end_ = size();
    begin_ = 0;
    block_ = std::move(bigger);
  }

 private:
  PageBlock block_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

class BufferPool {
 public:
  static constexpr size_t kBufferSize = 16 * 1024;
  // Enough for the steady state of a busy worker; bursts beyond it go back to the kernel.
  static constexpr size_t kMaxKept = 256;

  IoBuffer acquire() {
    if (free_.empty()) return IoBuffer(kBufferSize);
    IoBuffer b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  // Takes the buffer's memory back (oversized buffers are freed).
  void release(IoBuffer& b) {
    if (!b.allocated()) return;
    b.clear();
    if (b.capacity() == kBufferSize && free_.size() < kMaxKept) free_.push_back(std::move(b));
    b = IoBuffer();
  }

 private:
  std::vector<IoBuffer> free_;
};

}  // namespace portico
