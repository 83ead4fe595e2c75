#include "plugins/geo/geoip_db.hpp"

#include <maxminddb.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

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
  };
  static std::mutex mutex;
  static std::map<std::string, Cached> cache;
  std::lock_guard lock(mutex);
  Cached& slot = cache[path];
  if (auto db = slot.db.lock(); db && slot.size == st.st_size &&
                                slot.mtime.tv_sec == st.st_mtim.tv_sec &&
                                slot.mtime.tv_nsec == st.st_mtim.tv_nsec)
    return db;
  auto handle = std::make_unique<Handle>();
  int status = MMDB_open(path.c_str(), MMDB_MODE_MMAP, &handle->mmdb);
  if (status != MMDB_SUCCESS) {
    error = path + ": " + MMDB_strerror(status);
    cache.erase(path);
    return nullptr;
  }
  handle->opened = true;
  std::shared_ptr<const GeoIpDb> db(new GeoIpDb(std::move(handle)));
  slot = Cached{db, st.st_mtim, st.st_size};
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
    if (now - checked_ms_ >= recheck_ms_) {
      checked_ms_ = now;
      std::string error;
      if (auto fresh = GeoIpDb::open(path_, error)) {
        db_ = std::move(fresh);  // the same object while the file is unchanged
        warned_ = false;
      } else if (!warned_) {
        log::warn("httpdns: keeping the GeoIP database in use: " + error);
        warned_ = true;
      }
    }
    db = db_;
  }
  return db->lookup(ip);
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
