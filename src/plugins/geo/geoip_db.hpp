// Where an IP address is, from a MaxMind DB file (GeoLite2-City or GeoIP2-City, or any database
// with the same `location` and `country` fields), through libmaxminddb. Files are memory-mapped
// once and shared by every config that names them; a file replaced on disk (the weekly GeoLite2
// update) is opened again by the next config change.
#pragma once

#include <memory>
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

// Great-circle distance in kilometres (haversine, on a sphere of the Earth's mean radius).
double distance_km(Coordinates a, Coordinates b);

}  // namespace portico::plugins
