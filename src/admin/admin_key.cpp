#include "admin/admin_key.hpp"

#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "config/yaml_json.hpp"
#include "core/hex.hpp"
#include "core/log.hpp"

namespace portico::admin {
namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool is_top_level_key(const std::string& line) {
  return !line.empty() && line[0] != ' ' && line[0] != '#' && line[0] != '\t';
}

// Whether `text` parses and lists `key` under admin.keys.
bool lists_key(const std::string& text, const std::string& key) {
  try {
    const nlohmann::json doc = config::yaml_to_json(text);
    for (const auto& k : doc.at("admin").at("keys"))
      if (k.value("key", "") == key) return true;
  } catch (const std::exception&) {
  }
  return false;
}

}  // namespace

std::string add_admin_key(const std::string& text, const std::string& key) {
  std::vector<std::string> lines = split_lines(text);
  static const std::regex admin_line(R"(^admin:\s*(#.*)?$)");
  // An empty `keys:` (nothing, [] or null) inside the admin section is replaced.
  static const std::regex empty_keys(R"(^\s+keys:\s*(\[\s*\]|null|~)?\s*(#.*)?$)");
  size_t admin = lines.size();
  for (size_t i = 0; i < lines.size(); ++i)
    if (std::regex_match(lines[i], admin_line)) admin = i;
  std::string entry_indent = "  ";
  if (admin == lines.size()) {
    if (!lines.empty() && !lines.back().empty()) lines.push_back("");
    lines.push_back("admin:");
    admin = lines.size() - 1;
  } else {
    size_t end = admin + 1;
    while (end < lines.size() && !is_top_level_key(lines[end])) ++end;
    for (size_t i = admin + 1; i < end; ++i) {
      if (lines[i].find_first_not_of(' ') != std::string::npos &&
          lines[i][lines[i].find_first_not_of(' ')] != '#') {
        entry_indent = lines[i].substr(0, lines[i].find_first_not_of(' '));
        break;
      }
    }
    for (size_t i = admin + 1; i < end; ++i)
      if (std::regex_match(lines[i], empty_keys)) {
        lines.erase(lines.begin() + static_cast<long>(i));
        break;
      }
  }
  std::vector<std::string> block = {
      entry_indent + "keys:                          # generated at first start; keep it secret",
      entry_indent + "  - key: \"" + key + "\"", entry_indent + "    role: admin"};
  lines.insert(lines.begin() + static_cast<long>(admin) + 1, block.begin(), block.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::string generate_admin_key(const std::string& config_path) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1)
    throw std::runtime_error("cannot generate an Admin API key: no randomness");
  std::string key = hex::encode(bytes, sizeof(bytes));
  std::ifstream in(config_path);
  std::stringstream text;
  text << in.rdbuf();
  std::string updated = add_admin_key(text.str(), key);
  // The edit is textual: never write a file the next start cannot read (a flow-style
  // `admin: {...}` would get a second `admin:`).
  if (!lists_key(updated, key)) {
    log::warn("could not add the generated Admin API key to " + config_path +
              " (its admin section is not a plain block): it works until the next restart only");
    return key;
  }
  // The file now holds a secret. Written to a new file of a name nobody can guess, created
  // readable by the owner only (mkstemp), so no one reads the key while it is being written;
  // then given the config's mode, never world-readable, and renamed over it.
  std::string tmp = config_path + ".XXXXXX";
  int fd = mkstemp(tmp.data());
  bool saved = fd >= 0;
  for (size_t at = 0; saved && at < updated.size();) {
    ssize_t n = ::write(fd, updated.data() + at, updated.size() - at);
    if (n <= 0 && errno != EINTR) saved = false;
    if (n > 0) at += static_cast<size_t>(n);
  }
  if (fd >= 0) {
    std::error_code ec;
    auto perms = std::filesystem::status(config_path, ec).permissions();
    if (ec) perms = std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
    auto mode = perms & ~std::filesystem::perms::others_all;
    if (fchmod(fd, static_cast<mode_t>(mode)) != 0) saved = false;
    if (close(fd) != 0) saved = false;
  }
  if (saved) saved = std::rename(tmp.c_str(), config_path.c_str()) == 0;
  if (!saved) {
    if (fd >= 0) std::remove(tmp.c_str());
    log::warn("could not save the generated Admin API key in " + config_path +
              ": it works until the next restart only");
  }
  return key;
}

}  // namespace portico::admin
