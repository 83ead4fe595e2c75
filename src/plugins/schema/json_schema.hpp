// A JSON Schema validator for request-validation (APISIX checks bodies and headers with
// jsonschema, drafts 4 to 7): compiled once with the config, then run per request with no
// allocation beyond the error text. Keywords: type, enum, const, properties, required,
// additionalProperties, patternProperties, minProperties, maxProperties, items (one schema or a
// list), additionalItems, minItems, maxItems, uniqueItems, minLength, maxLength (in code
// points), pattern (RE2: linear time, so a hostile value cannot stall a worker), minimum,
// maximum, exclusiveMinimum, exclusiveMaximum (draft 4's booleans and the later numbers),
// multipleOf, allOf, anyOf, oneOf, not, format (email, ipv4, ipv6, hostname, date, date-time;
// others are annotations, as the standard allows), and $ref to "#" or "#/definitions/..." /
// "#/$defs/...". Annotations (title, description, default, examples, $schema, $id, $comment)
// are skipped. A keyword it does not apply (if/then/else, contains, dependencies, ...) is a
// config error, so a schema is never checked more loosely than written.
#pragma once

#include <memory>
#include <string>

#include "config/field_reader.hpp"

namespace portico::plugins {

class JsonSchema {
 public:
  // nullptr, with errors under `path`, when `schema` is not one this validator applies.
  static std::shared_ptr<const JsonSchema> compile(const config::json& schema,
                                                   const std::string& path, config::Errors& errors);
  ~JsonSchema();
  // Empty when `value` satisfies the schema, else the first reason it does not, in the words of
  // APISIX's jsonschema ("property \"name\" is required").
  std::string check(const config::json& value) const;

  struct Node;

 private:
  JsonSchema();
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace portico::plugins
