#include "plugins/geo/geoip_db.hpp"

#include <fcntl.h>
#include <maxminddb.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "core/deadline.hpp"
#include "core/log.hpp"

namespace portico::plugins {

struct GeoIpDb::Handle {
  MMDB_s mmdb{};
  bool opened = false;
  ~Handle() {
    if (opened) MMDB_close(&mmdb);
  }
};

namespace {

// A private copy of the file, in memory, for libmaxminddb to map. Mapping the file itself would
// let anyone rewriting it in place (cp over it, a download tool writing into it) change or
// truncate pages under lookups: SIGBUS in every worker. A replaced file (rename over it) is
// harmless either way; this makes the in-place case harmless too, for the price of the file's
// size in memory per version in use (GeoLite2-City: about 70 MB). Returns a descriptor whose
// /proc/self/fd path MMDB_open can open, or -1 with `error`.
int private_copy(const std::string& path, std::string& error) {
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return -1;
  }
  struct stat before {};
  if (::fstat(in, &before) != 0) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    ::close(in);
    return -1;
  }
  int out = ::memfd_create("portico-geoip", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (out < 0) {
    error = std::string("cannot copy the GeoIP database into memory: ") + std::strerror(errno);
    ::close(in);
    return -1;
  }
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(in, buffer, sizeof(buffer));
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    bool failed = n < 0;
    for (ssize_t done = 0; !failed && done < n;) {
      ssize_t w = ::write(out, buffer + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      failed = w <= 0;
      done += w;
    }
    if (failed) {
      error = "cannot copy " + path + " into memory: " + std::strerror(errno);
      ::close(in);
      ::close(out);
      return -1;
    }
  }
  // A file rewritten while it was read may be a mix of two versions: not used (the one in use
  // goes on; the next check tries again).
  struct stat after {};
  bool changed = ::fstat(in, &after) != 0 || after.st_size != before.st_size ||
                 after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
                 after.st_mtim.tv_nsec != before.st_mtim.tv_nsec;
  ::close(in);
  if (changed) {
    error = path + " changed while it was read";
    ::close(out);
    return -1;
  }
  // Sealed: nothing (not even another process of ours through /proc) can shrink the copy under
  // the mapping.
  ::fcntl(out, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  return out;
}

}  // namespace

GeoIpDb::GeoIpDb(std::unique_ptr<Handle> handle) : handle_(std::move(handle)) {}
GeoIpDb::~GeoIpDb() = default;

std::shared_ptr<const GeoIpDb> GeoIpDb::open(const std::string& path, std::string& error) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  // One mapping per file version, shared by every config naming it.
  struct Cached {
    std::weak_ptr<const GeoIpDb> db;
    timespec mtime{};
    off_t size = 0;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  // Never destroyed: a reload thread may still be copying while the process exits.
  static std::mutex& mutex = *new std::mutex;
  static std::map<std::string, Cached>& cache = *new std::map<std::string, Cached>;
  std::lock_guard lock(mutex);
  Cached& slot = cache[path];
  if (auto db = slot.db.lock(); db && slot.size == st.st_size && slot.dev == st.st_dev &&
                                slot.ino == st.st_ino && slot.mtime.tv_sec == st.st_mtim.tv_sec &&
                                slot.mtime.tv_nsec == st.st_mtim.tv_nsec)
    return db;
  int copy = private_copy(path, error);
  if (copy < 0) {
    cache.erase(path);
    return nullptr;
  }
  auto handle = std::make_unique<Handle>();
  // libmaxminddb maps what it opens and keeps no descriptor, so the copy lives as long as the
  // mapping and goes with MMDB_close.
  std::string copy_path = "/proc/self/fd/" + std::to_string(copy);
  int status = MMDB_open(copy_path.c_str(), MMDB_MODE_MMAP, &handle->mmdb);
  ::close(copy);
  if (status != MMDB_SUCCESS) {
    error = path + ": " + MMDB_strerror(status);
    cache.erase(path);
    return nullptr;
  }
  handle->opened = true;
  std::shared_ptr<const GeoIpDb> db(new GeoIpDb(std::move(handle)));
  slot = Cached{db, st.st_mtim, st.st_size, st.st_dev, st.st_ino};
  return db;
}

GeoLocation GeoIpDb::lookup(std::string_view ip) const {
  GeoLocation where;
  char text[64];
  if (ip.empty() || ip.size() >= sizeof(text)) return where;
  std::memcpy(text, ip.data(), ip.size());
  text[ip.size()] = '\0';
  int gai_error = 0, mmdb_error = 0;
  MMDB_lookup_result_s found = MMDB_lookup_string(&handle_->mmdb, text, &gai_error, &mmdb_error);
  if (gai_error != 0 || mmdb_error != MMDB_SUCCESS || !found.found_entry) return where;
  MMDB_entry_data_s lat{}, lon{}, country{};
  if (MMDB_get_value(&found.entry, &lat, "location", "latitude", nullptr) == MMDB_SUCCESS &&
      MMDB_get_value(&found.entry, &lon, "location", "longitude", nullptr) == MMDB_SUCCESS &&
      lat.has_data && lon.has_data && lat.type == MMDB_DATA_TYPE_DOUBLE &&
      lon.type == MMDB_DATA_TYPE_DOUBLE)
    where.at = Coordinates{lat.double_value, lon.double_value};
  if (MMDB_get_value(&found.entry, &country, "country", "iso_code", nullptr) == MMDB_SUCCESS &&
      country.has_data && country.type == MMDB_DATA_TYPE_UTF8_STRING && country.data_size <= 8)
    where.country.assign(country.utf8_string, country.data_size);
  return where;
}

std::shared_ptr<GeoIpFile> GeoIpFile::open(const std::string& path, int64_t recheck_ms,
                                           std::string& error) {
  auto file = std::make_shared<GeoIpFile>();
  file->path_ = path;
  file->recheck_ms_ = recheck_ms;
  file->db_ = GeoIpDb::open(path, error);
  if (!file->db_) return nullptr;
  file->checked_ms_ = steady_now_ms();
  return file;
}

GeoLocation GeoIpFile::lookup(std::string_view ip) {
  std::shared_ptr<const GeoIpDb> db;
  {
    std::lock_guard lock(mutex_);
    int64_t now = steady_now_ms();
    if (now - checked_ms_ >= recheck_ms_ && !reloading_) {
      checked_ms_ = now;
      reloading_ = true;
      // Off the worker: a new file version is copied into memory (tens of MB), which must not
      // stall this worker's requests, nor the others' waiting for mutex_ meanwhile.
      std::thread([self = shared_from_this()] { self->reload(); }).detach();
    }
    db = db_;
  }
  return db->lookup(ip);
}

void GeoIpFile::reload() {
  std::string error;
  std::shared_ptr<const GeoIpDb> fresh = GeoIpDb::open(path_, error);
  std::lock_guard lock(mutex_);
  reloading_ = false;
  if (fresh) {
    db_ = std::move(fresh);  // the same object while the file is unchanged
    warned_ = false;
  } else if (!warned_) {
    log::warn("httpdns: keeping the GeoIP database in use: " + error);
    warned_ = true;
  }
}

double distance_km(Coordinates a, Coordinates b) {
  constexpr double kEarthRadiusKm = 6371.0088;
  constexpr double kRadians = M_PI / 180.0;
  double dlat = (b.lat - a.lat) * kRadians;
  double dlon = (b.lon - a.lon) * kRadians;
  double h = std::sin(dlat / 2) * std::sin(dlat / 2) + std::cos(a.lat * kRadians) *
                                                           std::cos(b.lat * kRadians) *
                                                           std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * kEarthRadiusKm * std::asin(std::min(1.0, std::sqrt(h)));
}

}  // namespace portico::plugins
