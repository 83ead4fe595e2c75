// What a write would make the running config leave out. The store accepts any object that is
// valid on its own, and the compile then skips what does not fit the rest (a route whose service
// lost its upstream, a second limit-count setting for one group, a tlv-bridge message the proto
// no longer has). In etcd mode that is right for what arrives by watch (one bad object must not
// hold every other change back), but a write through the Admin API should be refused instead of
// answered 200 and then silently not served. This answers, for one change: which objects would
// be skipped afterwards that are not skipped now, and why.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>

#include "config/field_reader.hpp"
#include "config/object_store.hpp"

namespace portico::config {

// Objects the caller has just read from etcd, by (kind, id): they stand in for this node's
// versions, which may lag (a write made through this or another node a moment ago).
using FreshObjects = std::map<std::pair<Kind, std::string>, StoredObject>;
// Objects that exist in etcd but cannot be looked into (a value this version cannot validate):
// taken as present and sound.
using UnseenRefs = std::set<std::pair<Kind, std::string>>;

// `replacement`: the validated new version of (kind, id) (validate_object's output; its
// create_revision orders it among routes: the old one's, or above every other for a new one).
// Adds to `errors`:
// - every reason the new object itself would be skipped, under its own field names;
// - for other objects, each reason they would be skipped that does not hold now, under
//   "<kind>/<id>.<field>"; objects that would fall only because another listed one does are
//   counted in one more error.
void check_change(const ObjectStore& store, Kind kind, const std::string& id,
                  const StoredObject& replacement, const FreshObjects& fresh,
                  const UnseenRefs& unseen, Errors& errors);

}  // namespace portico::config
