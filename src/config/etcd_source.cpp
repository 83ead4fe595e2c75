#include "config/etcd_source.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <random>

#include "core/json_depth.hpp"
#include "core/log.hpp"

namespace portico::config {
namespace {
constexpr auto kBackoffStart = std::chrono::milliseconds(100);
constexpr auto kBackoffMax = std::chrono::milliseconds(5000);
// A watch on a silent network path can look alive for a long time: a cheap read this often
// notices, and also notices a revision going backwards while no change is flowing.
constexpr auto kProbeInterval = std::chrono::seconds(2);
// How often a probe may ask etcd for the newest change under the prefix (a sorted read: etcd
// walks the whole prefix for it).
constexpr auto kWatchCheckInterval = std::chrono::seconds(10);
}  // namespace

EtcdSource::EtcdSource(Executor ex, EtcdSettings settings, ObjectStore& store,
                       std::function<void()> changed)
    : ex_(ex),
      settings_(settings),
      client_(ex, std::move(settings)),
      store_(store),
      changed_(std::move(changed)),
      backoff_(kBackoffStart) {}

EtcdSource::~EtcdSource() { *alive_ = false; }

std::string EtcdSource::key(Kind kind, const std::string& id) const {
  return settings_.prefix + "/" + std::string(kind_name(kind)) + "/" + id;
}

void EtcdSource::stop() {
  stopped_ = true;
  client_.cancel_watch();
}

void EtcdSource::note_failure(const std::string& error) {
  if (status_.reachable || status_.last_error.empty())
    log::warn("etcd unreachable: " + error +
              (status_.synced ? "; serving the last good config (revision " +
                                    std::to_string(status_.revision) + ") and retrying"
                              : "; retrying"));
  status_.reachable = false;
  status_.last_error = error;
}

void EtcdSource::note_reachable() {
  if (!status_.reachable && status_.synced)
    log::info("etcd reachable again at " + client_.endpoint() + ", at revision " +
              std::to_string(status_.revision));
  status_.reachable = true;
  status_.last_error.clear();
  backoff_ = kBackoffStart;
}

Task<> EtcdSource::sleep_backoff(std::chrono::steady_clock::time_point not_after) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  // Full jitter in the upper half: many nodes reconnecting after an etcd restart spread out.
  auto ms = std::uniform_int_distribution<int64_t>(backoff_.count() / 2, backoff_.count())(rng);
  Timer timer(ex_);
  timer.expires_at(
      std::min(std::chrono::steady_clock::now() + std::chrono::milliseconds(ms), not_after));
  co_await timer.async_wait(await_ec);
  backoff_ =
      std::min(backoff_ * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kBackoffMax));
}

// Key -> (kind, id); false for keys that are not ours (other tools may share the prefix).
static bool split_key(const std::string& key, const std::string& prefix, Kind& kind,
                      std::string& id) {
  if (key.size() <= prefix.size() + 1 || key.compare(0, prefix.size(), prefix) != 0 ||
      key[prefix.size()] != '/')
    return false;
  std::string_view rest = std::string_view(key).substr(prefix.size() + 1);
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash + 1 >= rest.size()) return false;
  auto k = parse_kind(rest.substr(0, slash));
  id = std::string(rest.substr(slash + 1));
  if (!k || id.find('/') != std::string::npos) return false;
  kind = *k;
  return true;
}

bool EtcdSource::apply_put(ObjectStore& store, const EtcdKv& kv, const ObjectStore* previous) {
  Kind kind;
  std::string id;
  if (!split_key(kv.key, settings_.prefix, kind, id)) return false;
  Errors errors;
  const bool too_deep = json_too_deep(kv.value, kMaxConfigJsonDepth);
  json value = too_deep ? json() : json::parse(kv.value, nullptr, false);
  if (too_deep) {
    errors.add(kv.key, "is nested deeper than " + std::to_string(kMaxConfigJsonDepth) + " levels");
  } else if (value.is_discarded()) {
    errors.add(kv.key, "is not valid JSON");
  } else if (value.is_object()) {
    const char* id_field = kind == Kind::Consumers ? "username" : "id";
    auto it = value.find(id_field);
    if (it == value.end())
      value[id_field] = id;
    else if (!(it->is_string() ? it->get<std::string>() == id : it->dump() == id))
      errors.add(kv.key + "." + id_field, "does not match the key");
  }
  if (errors.empty() &&
      store.put(kind, id, std::move(value), kv.key, kv.create_revision, kv.mod_revision, errors))
    return true;
  ++status_.skipped;
  const StoredObject* keep = previous ? previous->find(kind, id) : store.find(kind, id);
  std::string reasons;
  for (const auto& e : errors.list())
    reasons += (reasons.empty() ? "" : "; ") + e.path + ": " + e.message;
  log::error("etcd value skipped (revision " + std::to_string(kv.mod_revision) + ", " +
             (keep ? "its previous version keeps serving" : "nothing served for this key") +
             "): " + reasons);
  if (keep && previous) {
    Errors ignored;
    store.put(kind, id, keep->value, keep->source, keep->create_revision, keep->mod_revision,
              ignored);
  }
  return false;
}

Task<> EtcdSource::full_sync() {
  auto range = co_await client_.get_prefix(settings_.prefix + "/");
  ObjectStore fresh;
  for (const auto& kv : range.kvs) apply_put(fresh, kv, &store_);
  store_ = std::move(fresh);
  if (status_.synced) ++status_.resyncs;
  note_reachable();  // before `synced`: the first read is not a "reachable again"
  status_.synced = true;
  status_.revision = range.revision;
  need_full_sync_ = false;
  undelivered_ = 0;
  keys_ = static_cast<int64_t>(range.kvs.size());
  miscounted_at_ = -1;
  recounted_at_ = -1;
  log::info("etcd: read " + std::to_string(range.kvs.size()) + " keys under " + settings_.prefix +
            "/ at revision " + std::to_string(range.revision) + " from " + client_.endpoint());
  changed_();
}

void EtcdSource::apply(std::vector<EtcdEvent>& events, int64_t revision) {
  for (const auto& ev : events) {
    if (ev.deleted)
      --keys_;  // etcd only tells of deletes of keys that were there
    else if (ev.kv.create_revision == ev.kv.mod_revision)
      ++keys_;
    try {
      if (ev.deleted) {
        Kind kind;
        std::string id;
        if (split_key(ev.kv.key, settings_.prefix, kind, id)) store_.erase(kind, id);
      } else {
        apply_put(store_, ev.kv, nullptr);
      }
    } catch (const std::exception& e) {
      // A bug in validating one value: skipped like an invalid one. Thrown out of here it
      // would end the watch, and the same event would come back with every restart, forever.
      ++status_.skipped;
      log::error("etcd value skipped (revision " + std::to_string(ev.kv.mod_revision) +
                 "): " + log::one_line(ev.kv.key, 512) + ": " + e.what());
    }
    status_.revision = std::max(status_.revision, ev.kv.mod_revision);
  }
  // A message with events may carry etcd's current revision while more events are still to come
  // (a watch catching up sends them in batches, each headed with the current revision): taken
  // as "applied", a watch broken mid-way would resume past the rest. A message without events
  // (a progress notice) is only sent to a watch that has everything up to its revision.
  if (events.empty()) status_.revision = std::max(status_.revision, revision);
  changed_();
}

Task<bool> EtcdSource::initial_sync(double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (!stopped_) {
    try {
      co_await full_sync();
      co_return true;
    } catch (const EtcdError& e) {
      note_failure(e.what());
    }
    if (std::chrono::steady_clock::now() >= deadline) co_return false;
    co_await sleep_backoff(deadline);
  }
  co_return false;
}

Task<> EtcdSource::run() {
  auto alive = alive_;
  asio::co_spawn(ex_, probe_loop(), asio::detached);
  EtcdClient::WatchHandlers handlers;
  handlers.on_created = [this](int64_t revision) {
    restarting_watch_ = false;  // set while no watch ran (during a resync): nothing to swallow
    if (revision < status_.revision) {
      need_full_sync_ = true;
      throw EtcdError("etcd revision went backwards (" + std::to_string(status_.revision) + " -> " +
                      std::to_string(revision) + "): restored from a backup? resyncing");
    }
    note_reachable();
  };
  handlers.on_events = [this](std::vector<EtcdEvent>& events, int64_t revision) {
    apply(events, revision);
  };
  // A resync is retried at once when the watch asked for it (compaction, a restored etcd), but
  // a full read that fails itself (a large prefix past etcd.timeout) backs off like any
  // failure: retried in a tight loop, it would hammer etcd while the config stays frozen.
  bool resync_retried = false;
  while (!stopped_ && *alive) {
    try {
      if (need_full_sync_) {
        co_await full_sync();
        resync_retried = false;
      }
      co_await client_.watch(settings_.prefix + "/", status_.revision + 1, handlers);
    } catch (const EtcdCompacted& c) {
      log::warn("etcd: " + std::string(c.what()) + " while watching from revision " +
                std::to_string(status_.revision + 1) + "; resyncing with a full read");
      need_full_sync_ = true;
      continue;
    } catch (const EtcdError& e) {
      if (stopped_ || !*alive) break;
      if (restarting_watch_) {
        restarting_watch_ = false;
        continue;
      }
      if (need_full_sync_ && status_.reachable && !resync_retried) {
        log::warn(std::string("etcd: ") + e.what());
        resync_retried = true;
        continue;
      }
      note_failure(e.what());
    } catch (const std::exception& e) {  // a bug: logged and retried, never a silent stop
      if (stopped_ || !*alive) break;
      log::error(std::string("etcd: the watch failed: ") + e.what());
      note_failure(e.what());
    }
    co_await sleep_backoff();
  }
}

Task<> EtcdSource::probe_loop() {
  auto alive = alive_;
  Timer timer(ex_);
  while (!stopped_ && *alive) {
    timer.expires_after(kProbeInterval);
    co_await timer.async_wait(await_ec);
    if (stopped_ || !*alive || !status_.reachable) continue;
    try {
      // Compared with the revision known when the probe was sent: watch events applied while
      // it was in flight may carry newer revisions than its answer, and taking that for "etcd
      // went backwards" made every busy node re-read all its keys every few seconds.
      int64_t known = status_.revision;
      // Inside the prefix: a user granted only `<prefix>/` may not read `<prefix>` itself.
      auto range = co_await client_.first_key(settings_.prefix + "/");
      if (*alive && range.revision < known) {
        need_full_sync_ = true;
        client_.cancel_watch();
      } else if (*alive && (range.revision > known || undelivered_ > 0 || miscounted_at_ >= 0)) {
        co_await check_watch_delivers(known);
      }
    } catch (const EtcdError& e) {
      if (!*alive) co_return;
      note_failure(e.what());
      client_.cancel_watch();
    } catch (const std::exception& e) {  // a bug: logged, and the probes go on
      if (!*alive) co_return;
      log::error(std::string("etcd: the probe failed: ") + e.what());
    }
  }
}

// etcd is past the last revision the watch delivered. Usually that is keys outside the prefix,
// or an event on its way. But a watch connection that died without a word (a NAT or middlebox
// that forgot it: half-open) delivers nothing ever again, and reads on other connections work.
// The newest change under the prefix tells them apart for puts: if it is still undelivered at
// the next probe, the watch is restarted from the last revision it delivered. A delete leaves no
// revision under the prefix, but it changes how many keys there are: if etcd's count differs
// from the watch's and the watch has delivered nothing more by the next probe, likewise.
Task<> EtcdSource::check_watch_delivers(int64_t known) {
  if (undelivered_ > 0) {
    if (status_.revision < undelivered_)
      restart_watch("has not delivered revision " + std::to_string(undelivered_) + " (it is at " +
                    std::to_string(status_.revision) + ")");
    undelivered_ = 0;
    miscounted_at_ = -1;
    co_return;
  }
  if (miscounted_at_ >= 0) {
    if (status_.revision == miscounted_at_ && recounted_at_ == miscounted_at_) {
      // A new watch from the same revision delivered nothing either: the count itself is off,
      // or the change is lost. A full read settles both.
      log::warn("etcd: the key count under the prefix still differs at revision " +
                std::to_string(status_.revision) + "; resyncing with a full read");
      need_full_sync_ = true;
      client_.cancel_watch();
    } else if (status_.revision == miscounted_at_) {
      restart_watch(
          "has delivered nothing since etcd's count of keys under the prefix differed "
          "from its own (at revision " +
          std::to_string(status_.revision) + ")");
      recounted_at_ = miscounted_at_;
    }
    miscounted_at_ = -1;
    co_return;
  }
  auto now = std::chrono::steady_clock::now();
  if (now - last_watch_check_ < kWatchCheckInterval) co_return;
  last_watch_check_ = now;
  auto newest = co_await client_.newest_key(settings_.prefix + "/");
  if (!newest.kvs.empty() && newest.kvs.front().mod_revision > known)
    undelivered_ = newest.kvs.front().mod_revision;
  else if (newest.count != keys_ && status_.revision == known)
    miscounted_at_ = known;
}

void EtcdSource::restart_watch(const std::string& why) {
  log::warn("etcd: the watch " + why + ": its connection looks dead; watching again");
  // Only when a watch was there to close: else the flag would swallow the next real error.
  restarting_watch_ = client_.cancel_watch();
}

}  // namespace portico::config
