// The path routes are matched against: percent-decoded, duplicate slashes merged, "." and ".."
// resolved (as nginx's $uri), so "/%61dmin" or "/x/../admin" cannot slip past a route meant
// for "/admin". The request is still forwarded with the path the client sent.
#pragma once

#include <string>
#include <string_view>

namespace portico::router {

// Returns false for paths that cannot be normalised safely (%00, bad escapes, ".." above the
// root). `out` is only used when the path needs rewriting; `result` views `path` or `out`.
bool normalize_path(std::string_view path, std::string& out, std::string_view& result);

}  // namespace portico::router
