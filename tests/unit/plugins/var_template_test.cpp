#include "plugins/var_template.hpp"

#include <gtest/gtest.h>

#include "plugins/context.hpp"

namespace portico::plugins {
namespace {

class VarTemplateTest : public ::testing::Test {
 protected:
  VarTemplateTest() {
    req.method = "GET";
    req.target = "/p?a=1";
    req.path = "/p";
    req.query = "a=1";
    req.host = "example.com";
    req.headers = {{"X-Evil", "a\r\nInjected: 1"}};
    ctx.req = &req;
    ctx.path = req.path;
    ctx.client_ip = "10.0.0.1";
  }
  std::string render(std::string_view text) { return VarTemplate(text).render(ctx); }

  http::RequestHead req;
  Context ctx;
};

TEST_F(VarTemplateTest, FillsNamedAndBracedVariables) {
  EXPECT_EQ(render("$remote_addr"), "10.0.0.1");
  EXPECT_EQ(render("ip=${remote_addr};m=$request_method/$arg_a"), "ip=10.0.0.1;m=GET/1");
  EXPECT_EQ(render("[$unknown_var]"), "[]");
  EXPECT_TRUE(VarTemplate("x $uri").has_vars());
}

TEST_F(VarTemplateTest, TextThatIsNoVariableStaysAsWritten) {
  for (std::string_view text : {"plain", "cost: 5$", "$", "${", "${uri", "$-x", "a $ b"}) {
    EXPECT_FALSE(VarTemplate(text).has_vars()) << text;
    EXPECT_EQ(render(text), text);
  }
  EXPECT_EQ(render("\\$uri is $uri"), "$uri is /p");
}

TEST_F(VarTemplateTest, ValuesCannotSplitAHeader) {
  EXPECT_EQ(render("$http_x_evil"), "aInjected: 1");
}

}  // namespace
}  // namespace portico::plugins
