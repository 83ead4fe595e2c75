#include "admin/admin_key.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/node_config.hpp"
#include "config/yaml_json.hpp"

using namespace portico;
using config::json;

namespace {

constexpr const char* kKey = "0123456789abcdef0123456789abcdef";

// Parses the edited text as YAML and as a node config; fails the test on any error.
config::NodeConfig parsed(const std::string& text) {
  json doc;
  try {
    doc = config::yaml_to_json(text);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not YAML: " << e.what() << "\n" << text;
    return {};
  }
  config::Errors errors;
  config::NodeConfig node = config::parse_node_config(doc, "/etc/portico/config.yaml", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string() << "\n" << text;
  return node;
}

// The admin.keys list of the edited text, straight from the YAML.
json keys_of(const std::string& text) { return config::yaml_to_json(text)["admin"]["keys"]; }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A config file in a fresh temp dir, removed with the dir at the end of the test.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    dir_ = std::filesystem::temp_directory_path() /
           ("portico-admin-key-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "config.yaml").string();
    std::ofstream(path_) << text;
  }
  ~ConfigFile() { std::filesystem::remove_all(dir_); }
  const std::string& path() const { return path_; }
  std::string read() const {
    std::ifstream in(path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  std::filesystem::path dir_;
  std::string path_;
};

}  // namespace

TEST(AddAdminKey, AddsAdminSectionWhenThereIsNone) {
  const std::string text =
      "# Portico node config\n"
      "node:\n"
      "  listen: [\"127.0.0.1:9080\"]  # the HTTP listener\n"
      "log:\n"
      "  level: info\n";
  std::string out = admin::add_admin_key(text, kKey);
  EXPECT_EQ(out.substr(0, text.size()), text);  // everything before is kept as it was
  EXPECT_EQ(keys_of(out), json::parse(R"([{"key": "0123456789abcdef0123456789abcdef",
                                          "role": "admin"}])"));
  config::NodeConfig node = parsed(out);
  ASSERT_EQ(node.admin_keys.size(), 1u);
  EXPECT_EQ(node.admin_keys[0].key, kKey);
  EXPECT_EQ(node.admin_keys[0].role, "admin");
  EXPECT_EQ(node.listen.at(0).port, 9080);
  EXPECT_EQ(node.log_level, "info");
}

TEST(AddAdminKey, AddsKeysToAnAdminSectionWithoutThem) {
  const std::string text =
      "node:\n"
      "  workers: 2\n"
      "admin:  # the Admin API\n"
      "  listen: \"127.0.0.1:9181\"   # loopback only\n"
      "  allow: [\"127.0.0.0/8\"]\n"
      "control:\n"
      "  listen: \"127.0.0.1:9091\"\n";
  std::string out = admin::add_admin_key(text, kKey);
  config::NodeConfig node = parsed(out);
  ASSERT_EQ(node.admin_keys.size(), 1u);
  EXPECT_EQ(node.admin_keys[0].key, kKey);
  EXPECT_EQ(node.admin_keys[0].role, "admin");
  // the rest of the admin section and the sections around it are intact
  EXPECT_EQ(node.admin_listen.port, 9181);
  EXPECT_EQ(node.admin_allow, std::vector<std::string>{"127.0.0.0/8"});
  EXPECT_EQ(node.control_listen.port, 9091);
  EXPECT_EQ(node.workers, 2);
  EXPECT_TRUE(contains(out, "admin:  # the Admin API\n"));
  EXPECT_TRUE(contains(out, "  listen: \"127.0.0.1:9181\"   # loopback only\n"));
}

TEST(AddAdminKey, ReplacesAnEmptyKeysList) {
  const std::string text =
      "admin:\n"
      "  listen: \"127.0.0.1:9180\"\n"
      "  keys: []   # none yet\n"
      "  max_body: 1m\n";
  std::string out = admin::add_admin_key(text, kKey);
  EXPECT_FALSE(contains(out, "keys: []")) << out;
  EXPECT_EQ(keys_of(out).size(), 1u) << out;
  config::NodeConfig node = parsed(out);
  ASSERT_EQ(node.admin_keys.size(), 1u);
  EXPECT_EQ(node.admin_keys[0].key, kKey);
  EXPECT_EQ(node.admin_max_body, 1024 * 1024);
}

TEST(AddAdminKey, ReplacesKeysWithNoValueOrNull) {
  for (const char* empty : {"  keys:\n", "  keys: null\n", "  keys: ~\n", "  keys: [ ]\n"}) {
    std::string text = std::string("admin:\n") + empty + "  listen: \"127.0.0.1:9180\"\n";
    std::string out = admin::add_admin_key(text, kKey);
    config::NodeConfig node = parsed(out);
    ASSERT_EQ(node.admin_keys.size(), 1u) << out;
    EXPECT_EQ(node.admin_keys[0].key, kKey);
    EXPECT_EQ(node.admin_listen.port, 9180);
  }
}

TEST(AddAdminKey, FollowsTheIndentOfTheAdminSection) {
  const std::string text =
      "admin:\n"
      "    listen: \"127.0.0.1:9180\"\n"
      "    keys: []\n";
  std::string out = admin::add_admin_key(text, kKey);
  EXPECT_TRUE(contains(out, "\n    keys:")) << out;
  config::NodeConfig node = parsed(out);
  ASSERT_EQ(node.admin_keys.size(), 1u) << out;
  EXPECT_EQ(node.admin_listen.port, 9180);
}

TEST(AddAdminKey, KeepsCommentsAndBlankLines) {
  const std::string text =
      "# Portico\n"
      "\n"
      "node:\n"
      "  # one worker per core\n"
      "  workers: auto\n"
      "\n"
      "admin:\n"
      "  # keys come later\n"
      "  listen: \"127.0.0.1:9180\"\n"
      "# end of file\n";
  std::string out = admin::add_admin_key(text, kKey);
  for (const char* line : {"# Portico\n\nnode:\n", "  # one worker per core\n",
                           "  # keys come later\n", "# end of file\n"})
    EXPECT_TRUE(contains(out, line)) << line << "\n---\n" << out;
  EXPECT_TRUE(contains(out, "generated at first start")) << out;
  config::NodeConfig node = parsed(out);
  ASSERT_EQ(node.admin_keys.size(), 1u);
}

TEST(AddAdminKey, EmptyFileBecomesAValidConfig) {
  std::string out = admin::add_admin_key("", kKey);
  config::NodeConfig node = parsed(out);
  ASSERT_EQ(node.admin_keys.size(), 1u) << out;
  EXPECT_EQ(node.admin_keys[0].key, kKey);
}

TEST(AddAdminKey, FileWithoutTrailingNewlineStaysValid) {
  std::string out = admin::add_admin_key("node:\n  workers: 3", kKey);
  config::NodeConfig node = parsed(out);
  EXPECT_EQ(node.workers, 3);
  ASSERT_EQ(node.admin_keys.size(), 1u) << out;
}

TEST(GenerateAdminKey, SavesARandomKeyInTheConfigFile) {
  ConfigFile file("node:\n  workers: 2\nadmin:\n  listen: \"127.0.0.1:9180\"\n");
  std::string key = admin::generate_admin_key(file.path());
  ASSERT_EQ(key.size(), 32u);
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef"), std::string::npos) << key;
  config::NodeConfig node = parsed(file.read());
  ASSERT_EQ(node.admin_keys.size(), 1u);
  EXPECT_EQ(node.admin_keys[0].key, key);
  EXPECT_EQ(node.workers, 2);
}

TEST(GenerateAdminKey, LeavesAFlowStyleAdminSectionUntouched) {
  // a textual edit would add a second `admin:` and the next start could not read the file:
  // the key works for this run only and the file stays as it was
  const std::string text = "admin: {listen: \"127.0.0.1:9181\"}  # flow style\n";
  ConfigFile file(text);
  std::string key = admin::generate_admin_key(file.path());
  EXPECT_EQ(key.size(), 32u);
  EXPECT_EQ(file.read(), text);
  EXPECT_FALSE(std::filesystem::exists(file.path() + ".tmp"));
}
