#include "admin/admin_api.hpp"

#include "plugins/registry.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <set>

#include "admin/redaction.hpp"
#include "config/change_check.hpp"
#include "core/json_depth.hpp"
#include "core/log.hpp"
#include "router/route_explain.hpp"

namespace portico::admin {

using config::Errors;
using config::json;
using config::Kind;

namespace {

constexpr const char* kApiPrefix = "/apisix/admin/";
constexpr int kWriteAttempts = 3;  // optimistic concurrency: re-read and retry on a race
// Referenced objects a write's transaction requires unchanged, at most: etcd refuses a
// transaction of more than 128 compares (--max-txn-ops). Past this, a concurrent change to a
// referenced object is not caught at write time (a stream route with 100+ sub-route upstreams).
constexpr size_t kMaxCompares = 100;

// A value written to etcd by hand may hold bytes that are not UTF-8: shown replaced (U+FFFD)
// rather than failing the whole answer (a listing would fail for every object of the kind).
HttpResponse reply(int status, const json& body) {
  return {status, body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"};
}
HttpResponse error_reply(int status, const std::string& message) {
  return reply(status, {{"error_msg", message}});
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Ids for POST: time-ordered like APISIX's, unique per process; a txn guards against clashes.
std::string generate_id() {
  static std::atomic<uint64_t> counter{0};
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  return std::to_string(static_cast<uint64_t>(ms) * 1000 + counter++ % 1000);
}

std::array<unsigned char, SHA256_DIGEST_LENGTH> digest(const std::string& s) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> d{};
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return d;
}

std::vector<std::string> split_path(std::string_view p) {
  std::vector<std::string> out;
  while (!p.empty()) {
    size_t slash = p.find('/');
    if (slash != 0) out.emplace_back(p.substr(0, slash));
    if (slash == std::string_view::npos) break;
    p.remove_prefix(slash + 1);
  }
  return out;
}

std::string errors_text(const Errors& errors) {
  std::string out;
  for (const auto& e : errors.list())
    out += (out.empty() ? "" : "; ") + (e.path.empty() ? e.message : e.path + ": " + e.message);
  return out;
}

bool is_write(const std::string& method) {
  return method == "PUT" || method == "POST" || method == "PATCH" || method == "DELETE";
}

}  // namespace

struct AdminApi::Impl {
  AdminContext ctx;
  // etcd revision of this node's latest write through the Admin API, and the source's resync
  // count then: after a resync (a restored etcd) the revision means nothing any more.
  int64_t last_write = 0;
  uint64_t last_write_resyncs = 0;

  void wrote(int64_t revision) {
    const auto& status = ctx.etcd->status();
    if (status.resyncs != last_write_resyncs) last_write = 0;
    last_write = std::max(last_write, revision);
    last_write_resyncs = status.resyncs;
  }

  // One object as the Admin API shows it.
  struct Item {
    std::string key;
    json value;
    int64_t created = 0;
    int64_t modified = 0;
    json to_json() const {
      return {
          {"key", key}, {"value", value}, {"createdIndex", created}, {"modifiedIndex", modified}};
    }
  };

  std::string prefix() const { return ctx.node->etcd.prefix; }
  std::string key(Kind kind, const std::string& id) const {
    return prefix() + "/" + std::string(config::kind_name(kind)) + "/" + id;
  }

  bool admits(const asio::ip::address& peer) const {
    std::array<uint8_t, 16> remote = router::address_bytes(peer.to_string());
    for (const auto& text : ctx.node->admin_allow) {
      router::Cidr c;
      if (router::Cidr::parse(text, c) && c.contains(remote)) return true;
    }
    return false;
  }

  // Role of the caller, or an error response.
  std::optional<HttpResponse> authorize(const HttpRequest& req, bool& admin) {
    // Checked at accept too; again here, as admin.allow may have changed since (a reload).
    if (!admits(req.remote))
      return error_reply(403, "address " + req.remote.to_string() + " is not in admin.allow");
    std::string given = req.header("x-api-key");
    if (given.empty()) given = req.param("api_key");
    // Comparing digests in constant time: neither the key's bytes nor its length leak.
    auto given_digest = digest(given);
    const config::AdminKey* found = nullptr;
    for (const auto& k : ctx.node->admin_keys) {
      auto d = digest(k.key);
      if (CRYPTO_memcmp(d.data(), given_digest.data(), d.size()) == 0 && !given.empty()) found = &k;
    }
    if (!found) return error_reply(401, "failed to check token");
    admin = found->role == "admin";
    return std::nullopt;
  }

  // APISIX's GET /plugins/list (names) and /plugins/<name> (its priority here; no JSON schema).
  static HttpResponse plugins(const std::vector<std::string>& parts) {
    if (parts.size() == 2 && parts[1] == "list") {
      json names = json::array();
      for (const auto* t : plugins::all_plugin_types()) names.push_back(t->name);
      return reply(200, names);
    }
    if (parts.size() == 2)
      if (const auto* t = plugins::find_plugin_type(parts[1]))
        return reply(200, {{"name", t->name},
                           {"priority", t->priority},
                           {"consumer", t->consumer_credential != nullptr}});
    return error_reply(404, "unknown plugin");
  }

  Task<HttpResponse> handle(HttpRequest& req) {
    if (req.path.rfind(kApiPrefix, 0) != 0) co_return error_reply(404, "not found");
    bool admin = false;
    if (auto denied = authorize(req, admin)) co_return *denied;
    if (is_write(req.method) && !admin)
      co_return error_reply(403, "the viewer role can only read (" + req.method + " refused)");
    std::vector<std::string> parts =
        split_path(std::string_view(req.path).substr(strlen(kApiPrefix)));
    if (parts.empty()) co_return error_reply(404, "not found");
    // Ids are printable ASCII (APISIX: letters, digits, - _ .): a byte that is not UTF-8 would
    // make every answer naming it, and every listing of its kind, impossible to write as JSON.
    for (const std::string& part : parts)
      for (unsigned char c : part)
        if (c <= 0x20 || c >= 0x7f)
          co_return error_reply(400, "the path may hold only printable ASCII characters");
    if (is_write(req.method) && req.query.count("ttl"))
      co_return error_reply(400, "ttl: not supported (objects do not expire here)");
    if (parts[0] == "plugins" && req.method == "GET") co_return plugins(parts);
    auto kind = config::parse_kind(parts[0]);
    if (!kind) co_return error_reply(404, "unknown kind \"" + parts[0] + "\"");
    if (*kind == Kind::Routes && parts.size() == 2 && parts[1] == "match" && req.method == "GET")
      co_return match(req);
    std::string id = parts.size() > 1 ? parts[1] : "";
    std::vector<std::string> sub(parts.size() > 2 ? parts.begin() + 2 : parts.end(), parts.end());
    try {
      if (req.method == "GET" && !sub.empty())
        co_return error_reply(400, "GET takes /" + parts[0] + "/<id>, not a sub-path");
      if (req.method == "GET" && id.empty()) co_return co_await list(*kind, req, admin);
      if (req.method == "GET") co_return co_await get(*kind, id, admin);
      if (!ctx.etcd)
        co_return error_reply(400, "config.provider is yaml: " + ctx.node->routes_file +
                                       " is the source of truth; edit that file (it is reloaded "
                                       "on change) or switch config.provider to etcd");
      if (ctx.etcd->status().resyncs == last_write_resyncs) co_await catch_up(last_write);
      if (req.method == "PUT" && sub.empty()) co_return co_await put(*kind, id, req.body);
      if (req.method == "POST" && id.empty()) co_return co_await create(*kind, req.body);
      if (req.method == "PATCH" && !id.empty()) co_return co_await patch(*kind, id, sub, req.body);
      if (req.method == "DELETE" && !id.empty() && sub.empty())
        co_return co_await remove(*kind, id, req.param("force") == "true");
      co_return error_reply(405, req.method + " is not supported on " + req.path);
    } catch (const config::EtcdError& e) {
      co_return error_reply(503, std::string("config store unavailable: ") + e.what());
    } catch (const std::exception& e) {  // a bug, or a value in etcd no JSON can hold
      log::error(std::string("admin api: ") + req.method + " " + req.path + " failed: " + e.what());
      co_return error_reply(500, "internal error; see the error log");
    }
  }

  // ---- reads ------------------------------------------------------------------------------

  // `fresh`: from etcd itself. Otherwise this node's view is tried first: a write that starts
  // from it saves an etcd round trip, and if the view was behind, the write's revision check
  // fails and the next attempt reads fresh.
  Task<std::optional<Item>> read(Kind kind, const std::string& id, bool fresh = true) {
    if (!ctx.etcd || !fresh) {
      if (const config::StoredObject* obj = ctx.store->find(kind, id))
        co_return Item{key(kind, id), obj->value, obj->create_revision, obj->mod_revision};
      if (!ctx.etcd) co_return std::nullopt;
    }
    auto range = co_await ctx.etcd->client().get(key(kind, id));
    if (range.kvs.empty()) co_return std::nullopt;
    co_return to_item(range.kvs.front());
  }

  static Item to_item(const config::EtcdKv& kv) {
    json value = json_too_deep(kv.value, kMaxConfigJsonDepth)
                     ? json(kv.value)
                     : json::parse(kv.value, nullptr, false);
    if (value.is_discarded()) value = kv.value;  // hand-written garbage is shown as it is
    return Item{kv.key, std::move(value), kv.create_revision, kv.mod_revision};
  }

  // Viewers read everything but secrets (private keys, credentials).
  Task<HttpResponse> get(Kind kind, const std::string& id, bool admin) {
    auto item = co_await read(kind, id);
    if (item && !admin) item->value = redact_secrets(kind, std::move(item->value));
    if (!item)
      co_return error_reply(404,
                            std::string(config::kind_singular(kind)) + " \"" + id + "\" not found");
    co_return reply(200, item->to_json());
  }

  Task<HttpResponse> list(Kind kind, const HttpRequest& req, bool admin) {
    std::vector<Item> items;
    if (!ctx.etcd) {
      for (const auto& [id, obj] : ctx.store->all(kind))
        items.push_back({key(kind, id), obj.value, obj.create_revision, obj.mod_revision});
    } else {
      auto range = co_await ctx.etcd->client().get_prefix(key(kind, ""));
      for (const auto& kv : range.kvs) items.push_back(to_item(kv));
    }
    size_t begin = 0, end = items.size();
    if (!req.param("page").empty() || !req.param("page_size").empty()) {
      long page = std::strtol(req.param("page", "1").c_str(), nullptr, 10);
      long size = std::strtol(req.param("page_size", "10").c_str(), nullptr, 10);
      if (page < 1 || page > 1000000000) co_return error_reply(400, "page: must be 1..1000000000");
      if (size < 10 || size > 500) co_return error_reply(400, "page_size: must be 10..500");
      begin = std::min(items.size(), static_cast<size_t>((page - 1) * size));
      end = std::min(items.size(), begin + static_cast<size_t>(size));
    }
    json list = json::array();
    for (size_t i = begin; i < end; ++i) {
      if (!admin) items[i].value = redact_secrets(kind, std::move(items[i].value));
      list.push_back(items[i].to_json());
    }
    co_return reply(200, {{"total", items.size()}, {"list", std::move(list)}});
  }

  HttpResponse match(const HttpRequest& req) {
    auto snap = ctx.snapshot();
    if (!snap) return error_reply(503, "no configuration loaded yet");
    router::ExplainQuery q{req.param("method", "GET"), req.param("host"), req.param("uri", "/"),
                           req.param("remote_addr")};
    error_code bad_ip;
    if (!q.remote_addr.empty()) asio::ip::make_address(q.remote_addr, bad_ip);
    if (bad_ip) return error_reply(400, "remote_addr: must be an IP address");
    router::Explanation e;
    std::string error;
    if (!router::explain_query(snap->router, q, e, error)) return error_reply(400, "uri: " + error);
    const auto& rules = snap->router.rules();
    json candidates = json::array();
    for (const auto& v : e.near_misses) {
      std::string why;
      for (const auto& f : v.failures) why += (why.empty() ? "" : "; ") + f;
      candidates.push_back({{"id", rules[v.rule]->id}, {"result", why.empty() ? "match" : why}});
    }
    json matched =
        e.winner == router::RouteIndex::kNoMatch ? json(nullptr) : json(rules[e.winner]->id);
    return reply(200, {{"matched", matched},
                       {"explain", router::format_explanation(snap->router, e)},
                       {"candidates", candidates}});
  }

  // ---- writes (etcd mode) -----------------------------------------------------------------

  // What a write's transaction must still find as its validation saw it.
  using Compares = std::vector<config::EtcdCompare>;

  // Checks `value` as the new version of (kind, id): on its own; that what it refers to exists
  // in etcd, read now (this node's view may lag a write made a moment ago, through this node or
  // another); and that it leaves nothing out of the served config (config::check_change). The
  // revisions of the objects it refers to go to `compares`: a concurrent delete or change of
  // one fails the write, which is then checked again.
  // The objects one write's checks read from etcd, and what its transaction compares.
  struct Reads {
    config::FreshObjects fresh;
    config::UnseenRefs unseen;
    std::set<std::pair<Kind, std::string>> missing;
    Compares& compares;
    bool done(const std::pair<Kind, std::string>& k) const {
      return fresh.count(k) || unseen.count(k) || missing.count(k);
    }
  };

  // Reads (kind, id) from etcd into `reads`, once: the transaction then requires it unchanged.
  Task<> fetch(Reads& reads, const std::pair<Kind, std::string>& k) {
    if (reads.done(k)) co_return;
    auto range = co_await ctx.etcd->client().get(key(k.first, k.second));
    if (range.kvs.empty()) {
      reads.missing.insert(k);
      co_return;
    }
    if (reads.compares.size() < kMaxCompares)
      reads.compares.push_back({key(k.first, k.second), config::EtcdCompare::Result::Equal,
                                range.kvs.front().mod_revision});
    if (auto now = stored_object(k.first, k.second, range.kvs.front().value))
      reads.fresh.emplace(k, std::move(*now));
    else
      reads.unseen.insert(k);  // not valid to this node: nodes keep serving what they had
  }

  Task<std::optional<HttpResponse>> validate(Kind kind, const std::string& id, const json& value,
                                             const std::optional<Item>& old, Compares& compares) {
    Errors errors;
    config::StoredObject obj;
    config::validate_object(kind, value, "", errors, obj,
                            old ? old->created : std::numeric_limits<int64_t>::max());
    Reads reads{{}, {}, {}, compares};
    if (errors.empty()) {
      for (const auto& [field, ref] : obj.refs) {
        std::pair<Kind, std::string> k{ref.kind, ref.id};
        co_await fetch(reads, k);
        if (reads.missing.count(k)) {
          errors.add(field, "unknown " + std::string(config::kind_singular(ref.kind)) + " \"" +
                                ref.id + "\"");
          continue;
        }
        // tls.client_cert_id must name a client certificate, not one that serves handshakes.
        const config::StoredObject* target =
            reads.fresh.count(k) ? &reads.fresh.at(k) : ctx.store->find(ref.kind, ref.id);
        if (ref.kind == Kind::Ssls && target && !target->client_identity)
          errors.add(field, config::not_a_client_certificate(ref.id));
      }
      // What those refer to, fresh too (route -> service -> upstream -> ssl): a chain written
      // through other nodes a moment ago is judged as etcd has it, not as this node's view. A
      // missing one is reported by check_change, against its referrer.
      for (int level = 0; level < 3; ++level) {
        std::vector<std::pair<Kind, std::string>> next;
        for (const auto& [at, found] : reads.fresh)
          for (const auto& [field, ref] : found.refs)
            if (!reads.done({ref.kind, ref.id})) next.emplace_back(ref.kind, ref.id);
        if (next.empty()) break;
        for (const auto& k : next) co_await fetch(reads, k);
      }
    }
    if (errors.empty() && kind == Kind::Consumers) check_credentials_unique(obj, errors);
    if (errors.empty()) {
      // The objects that use this one are judged as this node sees them: an update must not
      // land after one of them changed through another node unseen (a route written there a
      // moment ago that relies on what this update takes away).
      if (old) require_users_unchanged(kind, compares);
      config::check_change(*ctx.store, kind, id, obj, reads.fresh, reads.unseen, errors);
    }
    if (errors.empty()) co_return std::nullopt;
    co_return error_reply(400, "invalid configuration: " + errors_text(errors));
  }

  // A value read from etcd as this node would hold it; nullopt when it does not validate.
  static std::optional<config::StoredObject> stored_object(Kind kind, const std::string& id,
                                                           const std::string& text) {
    if (json_too_deep(text, kMaxConfigJsonDepth)) return std::nullopt;
    json value = json::parse(text, nullptr, false);
    if (!value.is_object()) return std::nullopt;
    if (!value.contains(id_field(kind))) value[id_field(kind)] = id;
    Errors errors;
    config::StoredObject obj;
    if (!config::validate_object(kind, value, "", errors, obj)) return std::nullopt;
    return obj;
  }

  // Waits (up to 2 s) until this node's view has etcd's `revision`: after a transaction lost a
  // race with a change this node had not seen, and before each write, for this node's own
  // previous write (a script's next request may rely on it).
  Task<> catch_up(int64_t revision) {
    Timer timer(co_await asio::this_coro::executor);
    for (int i = 0; i < 200 && ctx.etcd->status().revision < revision; ++i) {
      timer.expires_after(std::chrono::milliseconds(10));
      co_await timer.async_wait(await_ec);
    }
  }

  // A key (key-auth) or jwt key another consumer has would be ignored on every node (the
  // older consumer keeps it): refused here instead of accepted and then skipped.
  void check_credentials_unique(const config::StoredObject& obj, Errors& errors) const {
    const auto& mine = obj.consumer;
    if (!mine || !mine->plugins) return;
    for (const plugins::PluginEntry& e : mine->plugins->entries) {
      if (!e.credential || e.disabled) continue;
      for (const auto& [id, other] : ctx.store->all(Kind::Consumers)) {
        if (id == mine->username || !other.consumer || !other.consumer->plugins) continue;
        const plugins::PluginEntry* theirs = other.consumer->plugins->find(e.type->name);
        if (theirs && theirs->credential && !theirs->disabled &&
            theirs->credential->lookup_key == e.credential->lookup_key)
          errors.add("plugins." + std::string(e.type->name),
                     "credential already used by consumer \"" + id + "\"");
      }
    }
  }

  static std::optional<json> parse_body(const std::string& body, std::string& error) {
    if (json_too_deep(body, kMaxConfigJsonDepth)) {
      error = "invalid request body: nested deeper than " + std::to_string(kMaxConfigJsonDepth) +
              " levels";
      return std::nullopt;
    }
    json value = json::parse(body, nullptr, false);
    if (value.is_discarded()) {
      error = "invalid request body: malformed JSON";
      return std::nullopt;
    }
    if (!value.is_object()) {
      error = "invalid request body: must be a JSON object";
      return std::nullopt;
    }
    return value;
  }

  static const char* id_field(Kind kind) { return kind == Kind::Consumers ? "username" : "id"; }

  // The id in the body must agree with the path; the path wins when the body has none.
  static std::optional<std::string> settle_id(Kind kind, json& value, const std::string& path_id,
                                              std::string& error) {
    std::string body_id;
    if (auto it = value.find(id_field(kind)); it != value.end()) {
      if (it->is_string())
        body_id = it->get<std::string>();
      else if (it->is_number_unsigned())
        body_id = it->dump();
      else {
        error = std::string("invalid configuration: ") + id_field(kind) + ": must be a string";
        return std::nullopt;
      }
    }
    if (kind == Kind::Consumers) value.erase("id");
    if (!path_id.empty() && !body_id.empty() && body_id != path_id) {
      error = std::string("invalid configuration: ") + id_field(kind) + ": \"" + body_id +
              "\" does not match the path id \"" + path_id + "\"";
      return std::nullopt;
    }
    std::string id = path_id.empty() ? body_id : path_id;
    if (id.empty()) {
      error = std::string("invalid configuration: ") + id_field(kind) + ": is required";
      return std::nullopt;
    }
    if (id.size() > 64 || id.find_first_of("/ \t\r\n") != std::string::npos) {
      error = std::string("invalid configuration: ") + id_field(kind) +
              ": must be 1..64 characters without '/' or spaces";
      return std::nullopt;
    }
    value[id_field(kind)] = id;
    return id;
  }

  // A write's answer, or (no response) the revision at which another writer got there first.
  struct Outcome {
    std::optional<HttpResponse> response;
    int64_t raced_at = 0;
  };

  // Validates and writes `value` if the key is still at `old`'s revision (absent: must not
  // exist) and what it refers to is unchanged.
  Task<Outcome> store(Kind kind, const std::string& id, json value, const std::optional<Item>& old,
                      int created_status) {
    int64_t now = now_seconds();
    value["create_time"] = old && old->value.is_object() && old->value.contains("create_time")
                               ? old->value["create_time"]
                               : json(now);
    value["update_time"] = now;
    std::string text = value.dump();
    // A PATCH sub-path nests what it writes deeper than the body says: every node would skip a
    // value deeper than it reads (and keep serving the old one until restarted).
    if (json_too_deep(text, kMaxConfigJsonDepth))
      co_return Outcome{error_reply(400, "invalid configuration: nested deeper than " +
                                             std::to_string(kMaxConfigJsonDepth) + " levels")};
    std::string k = key(kind, id);
    Compares compares{{k, config::EtcdCompare::Result::Equal, old ? old->modified : 0}};
    if (auto bad = co_await validate(kind, id, value, old, compares)) co_return Outcome{bad};
    // (A named local: GCC 12 mishandles class-type temporaries in co_await arguments.)
    std::vector<std::string> touch{changed_marker(kind)};
    auto w = co_await ctx.etcd->client().put_when(k, std::move(text), std::move(compares),
                                                  std::move(touch));
    if (!w.succeeded) co_return Outcome{std::nullopt, w.conflict_revision};
    wrote(w.revision);
    log::info("admin: " + std::string(old ? "updated " : "created ") + k + " at revision " +
              std::to_string(w.revision));
    co_return Outcome{reply(old ? 200 : created_status, {{"key", k}, {"value", value}})};
  }

  Task<HttpResponse> put(Kind kind, const std::string& path_id, const std::string& body) {
    std::string error;
    auto value = parse_body(body, error);
    if (!value) co_return error_reply(400, error);
    auto id = settle_id(kind, *value, path_id, error);
    if (!id) co_return error_reply(400, error);
    for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
      auto old = co_await read(kind, *id, attempt > 0);
      auto out = co_await store(kind, *id, *value, old, 201);
      if (out.response) co_return *out.response;
      co_await catch_up(out.raced_at);
    }
    co_return error_reply(409, "the object kept changing while being written; retry");
  }

  Task<HttpResponse> create(Kind kind, const std::string& body) {
    std::string error;
    auto value = parse_body(body, error);
    if (!value) co_return error_reply(400, error);
    if (kind == Kind::Consumers) co_return co_await put(kind, "", body);  // keyed by username
    if (value->contains("id"))
      co_return error_reply(
          400, "invalid configuration: id: POST generates the id; use PUT to choose one");
    for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
      std::string id = generate_id();
      (*value)["id"] = id;
      auto out = co_await store(kind, id, *value, std::nullopt, 201);
      if (out.response) co_return *out.response;
      co_await catch_up(out.raced_at);
    }
    co_return error_reply(409, "could not allocate an id; retry");
  }

  Task<HttpResponse> patch(Kind kind, const std::string& id, const std::vector<std::string>& sub,
                           const std::string& body) {
    if (json_too_deep(body, kMaxConfigJsonDepth) ||
        sub.size() > static_cast<size_t>(kMaxConfigJsonDepth))
      co_return error_reply(400, "invalid request body: nested deeper than " +
                                     std::to_string(kMaxConfigJsonDepth) + " levels");
    json patch = json::parse(body, nullptr, false);
    if (patch.is_discarded()) co_return error_reply(400, "invalid request body: malformed JSON");
    if (sub.empty() && !patch.is_object())
      co_return error_reply(400, "invalid request body: must be a JSON object (a merge patch)");
    for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
      auto old = co_await read(kind, id, attempt > 0);
      if (!old)
        co_return error_reply(
            404, std::string(config::kind_singular(kind)) + " \"" + id + "\" not found");
      if (!old->value.is_object())
        co_return error_reply(400, "the stored value is not a JSON object; replace it with PUT");
      json value = old->value;
      if (sub.empty()) {
        value.merge_patch(patch);  // RFC 7386: null removes a field
      } else {
        // A sub-path PATCH replaces what is at the path (APISIX), creating objects on the way.
        json* at = &value;
        for (size_t i = 0; i + 1 < sub.size(); ++i) {
          if (!at->is_object())
            co_return error_reply(400, "invalid path: " + sub[i] + " is not an object");
          at = &(*at)[sub[i]];
          if (at->is_null()) *at = json::object();
        }
        if (!at->is_object()) co_return error_reply(400, "invalid path: not an object");
        if (patch.is_null())
          at->erase(sub.back());
        else
          (*at)[sub.back()] = patch;
      }
      value[id_field(kind)] = id;
      auto out = co_await store(kind, id, value, old, 200);
      if (out.response) co_return *out.response;
      co_await catch_up(out.raced_at);
    }
    co_return error_reply(409, "the object kept changing while being patched; retry");
  }

  // The kinds whose objects may name one of `kind` (see config::validate_object's refs).
  static std::vector<Kind> referring_kinds(Kind kind) {
    switch (kind) {
      case Kind::Upstreams:
        return {Kind::Routes, Kind::Services, Kind::StreamRoutes};
      case Kind::Services:
        return {Kind::Routes, Kind::StreamRoutes};
      case Kind::PluginConfigs:
        return {Kind::Routes};
      case Kind::ConsumerGroups:
        return {Kind::Consumers};
      case Kind::Ssls:
        return {Kind::Routes, Kind::Services, Kind::Upstreams, Kind::StreamRoutes};
      case Kind::Protos:
        return {Kind::Routes, Kind::Services, Kind::PluginConfigs, Kind::GlobalRules};
      default:
        return {};
    }
  }

  // Every write of a kind through this API also writes the kind's marker key, in the same
  // transaction: "an object of this kind changed at this revision", as one key. (A compare on
  // the kind's whole range would do without it, but etcd reads every value of the range, on
  // every member, in its single apply loop: 30 MB per write with 50,000 routes.) The key is
  // outside every kind: nodes and APISIX ignore it.
  std::string changed_marker(Kind kind) const {
    return prefix() + "/.portico/changed/" + std::string(config::kind_name(kind));
  }

  // The transaction will also require that no object of a kind that could use `kind` changed
  // (through this API) after this node's view (read now, with no wait before the view is used).
  void require_users_unchanged(Kind kind, Compares& compares) const {
    int64_t seen = ctx.etcd->status().revision;
    for (Kind user : referring_kinds(kind))
      compares.push_back({changed_marker(user), config::EtcdCompare::Result::Less, seen + 1});
  }

  // Refused while this node sees a user of the object (unless forced). The delete's transaction
  // also requires that no object of a kind that could use it changed after this node's view:
  // else a route naming it, written a moment ago through another node, would be left dangling.
  Task<HttpResponse> remove(Kind kind, const std::string& id, bool force) {
    std::string k = key(kind, id);
    for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
      auto old = co_await read(kind, id);
      if (!old)
        co_return error_reply(
            404, std::string(config::kind_singular(kind)) + " \"" + id + "\" not found");
      // On its own revision: a copy sent again after a lost answer must not delete an object
      // created anew under the same id in between.
      Compares compares{{k, config::EtcdCompare::Result::Equal, old->modified}};
      if (!force) {
        auto users = ctx.store->referrers(kind, id);
        if (!users.empty()) {
          std::string list;
          for (const auto& u : users) list += (list.empty() ? "" : ", ") + u;
          co_return error_reply(400, "can not delete this " +
                                         std::string(config::kind_singular(kind)) + ", " + list +
                                         " is still using it now");
        }
        require_users_unchanged(kind, compares);
      }
      std::vector<std::string> touch{changed_marker(kind)};
      auto w = co_await ctx.etcd->client().remove_when(k, std::move(compares), std::move(touch));
      if (!w.succeeded) {
        co_await catch_up(w.conflict_revision);
        continue;
      }
      if (w.deleted == 0)  // (nothing written: w.revision may be another prefix's)
        co_return error_reply(
            404, std::string(config::kind_singular(kind)) + " \"" + id + "\" not found");
      wrote(w.revision);
      log::info("admin: deleted " + k + " at revision " + std::to_string(w.revision));
      co_return reply(200, {{"deleted", "1"}, {"key", k}});
    }
    co_return error_reply(409, "the object, or objects that could use it, kept changing; retry");
  }
};

AdminApi::AdminApi(AdminContext context)
    : impl_(std::make_unique<Impl>(Impl{std::move(context)})) {}
AdminApi::~AdminApi() = default;
Task<HttpResponse> AdminApi::handle(HttpRequest& req) { return impl_->handle(req); }
bool AdminApi::admits(const asio::ip::address& peer) const { return impl_->admits(peer); }

}  // namespace portico::admin
