// Where an IP address is, from a MaxMind DB file (GeoLite2-City or GeoIP2-City, or any database
// with the same `location` and `country` fields), through libmaxminddb. Files are copied into
// memory once (so rewriting one in place cannot pull pages from under lookups) and shared by
// every config that names them; a file replaced on disk (the weekly GeoLite2
// update) is followed within a minute (GeoIpFile).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace portico::plugins {

struct Coordinates {
  double lat = 0;  // degrees, north positive
  double lon = 0;  // degrees, east positive
};

struct GeoLocation {
  std::optional<Coordinates> at;
  std::string country;  // ISO 3166-1 alpha-2, empty when unknown
};

class GeoIpDb {
 public:
  // The database at `path` (shared while unchanged on disk); null with `error` when it cannot be
  // opened or is not a MaxMind DB.
  static std::shared_ptr<const GeoIpDb> open(const std::string& path, std::string& error);
  ~GeoIpDb();
  GeoIpDb(const GeoIpDb&) = delete;
  GeoIpDb& operator=(const GeoIpDb&) = delete;

  // Thread-safe (the mapped file is only read). Empty for addresses the database does not know
  // (private ranges, or not an IP at all).
  GeoLocation lookup(std::string_view ip) const;

 private:
  struct Handle;
  explicit GeoIpDb(std::unique_ptr<Handle> handle);
  std::unique_ptr<Handle> handle_;
};

// A database file followed on disk: a new version replaces the old within `recheck_ms` of being
// written, without a config change; a file that cannot be read keeps the old one serving.
class GeoIpFile : public std::enable_shared_from_this<GeoIpFile> {
 public:
  // Null with `error` when the file cannot be opened now.
  static std::shared_ptr<GeoIpFile> open(const std::string& path, int64_t recheck_ms,
                                         std::string& error);
  // Thread-safe. A due check of the file runs on a thread of its own; lookups meanwhile (and
  // after a failed one) use the version in use.
  GeoLocation lookup(std::string_view ip);

 private:
  void reload();

  std::string path_;
  std::mutex mutex_;  // the httpdns endpoint is not the proxy's hot path: a lock per lookup
  std::shared_ptr<const GeoIpDb> db_;
  int64_t checked_ms_ = 0;
  int64_t recheck_ms_ = 60'000;
  bool warned_ = false;
  bool reloading_ = false;
};

// Great-circle distance in kilometres (haversine, on a sphere of the Earth's mean radius).
double distance_km(Coordinates a, Coordinates b);

}  // namespace portico::plugins
