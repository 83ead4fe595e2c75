// Byte buffers for sockets, recycled per worker so a request costs no allocation and an idle
// keep-alive connection holds no buffer at all.
#pragma once

#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace portico {

// [begin, end) holds unread bytes; [end, capacity) is free space for the next read.
class IoBuffer {
 public:
  IoBuffer() = default;
  explicit IoBuffer(size_t capacity) : data_(new char[capacity]), capacity_(capacity) {}

  bool allocated() const { return data_ != nullptr; }
  size_t capacity() const { return capacity_; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::string_view view() const { return {data_.get() + begin_, end_ - begin_}; }
  const char* data() const { return data_.get() + begin_; }

  char* write_ptr() { return data_.get() + end_; }
  size_t writable() const { return capacity_ - end_; }
  void commit(size_t n) { end_ += n; }
  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }
  // Moves unread bytes to the front so the free space is contiguous.
  void compact() {
    if (begin_ == 0) return;
    std::memmove(data_.get(), data_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  // Grows to `capacity`, keeping unread bytes (used for heads larger than one pool buffer).
  void grow(size_t capacity) {
    std::unique_ptr<char[]> bigger(new char[capacity]);
    std::memcpy(bigger.get(), data(), size());
    end_ = size();
    begin_ = 0;
    data_ = std::move(bigger);
    capacity_ = capacity;
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
};

class BufferPool {
 public:
  static constexpr size_t kBufferSize = 16 * 1024;
  static constexpr size_t kMaxKept = 4096;

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
