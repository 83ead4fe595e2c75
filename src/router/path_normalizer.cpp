#include "router/path_normalizer.hpp"

namespace portico::router {
namespace {
int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool needs_work(std::string_view p) {
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '%') return true;
    if (c == '/' && i + 1 < p.size() && (p[i + 1] == '/' || p[i + 1] == '.')) return true;
  }
  return false;
}
}  // namespace

bool normalize_path(std::string_view path, std::string& out, std::string_view& result) {
  if (path.empty() || path.front() != '/' || !needs_work(path)) {
    result = path;
    return true;
  }
  // 1. percent-decode
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') {
      decoded.push_back(path[i]);
      continue;
    }
    if (i + 2 >= path.size()) return false;
    int h = hex(path[i + 1]);
    int l = hex(path[i + 2]);
    if (h < 0 || l < 0) return false;
    char c = static_cast<char>(h * 16 + l);
    if (c == 0) return false;
    decoded.push_back(c);
    i += 2;
  }
  // 2. merge slashes and resolve dot segments
  out.clear();
  out.reserve(decoded.size());
  size_t i = 0;
  while (i < decoded.size()) {
    // decoded[i] == '/' here
    size_t j = i + 1;
    while (j < decoded.size() && decoded[j] == '/') ++j;  // merge slashes
    size_t end = decoded.find('/', j);
    if (end == std::string::npos) end = decoded.size();
    std::string_view seg(decoded.data() + j, end - j);
    if (seg == ".") {
      if (end == decoded.size()) out.push_back('/');
    } else if (seg == "..") {
      if (out.empty()) return false;  // above the root
      size_t cut = out.rfind('/');
      out.resize(cut);
      if (end == decoded.size()) out.push_back('/');  // "/a/.." is "/", like "/a/../"
    } else {
      out.push_back('/');
      out.append(seg);
    }
    i = end;
  }
  if (out.empty()) out.push_back('/');
  result = out;
  return true;
}

}  // namespace portico::router
