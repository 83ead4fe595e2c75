#include "tls/server_certificates.hpp"

#include <gtest/gtest.h>

using namespace portico::tls;

namespace {

std::shared_ptr<const ServerCertificate> named(std::vector<std::string> snis) {
  auto cert = std::make_shared<ServerCertificate>();
  cert->snis = std::move(snis);
  return cert;
}

}  // namespace

TEST(CertificateTable, ExactNamesIgnoreCaseAndATrailingDot) {
  CertificateTable table;
  auto a = named({"a.example.com", "b.example.com"});
  table.add(a);
  EXPECT_EQ(table.find("a.example.com"), a.get());
  EXPECT_EQ(table.find("B.Example.COM"), a.get());
  EXPECT_EQ(table.find("a.example.com."), a.get());
  EXPECT_EQ(table.find("c.example.com"), nullptr);
  EXPECT_EQ(table.find(""), nullptr);  // no SNI
  EXPECT_EQ(table.find("."), nullptr);
}

TEST(CertificateTable, WildcardCoversOneLabelAndLosesToAnExactName) {
  CertificateTable table;
  auto wild = named({"*.example.com"});
  auto exact = named({"www.example.com"});
  table.add(wild);
  table.add(exact);
  EXPECT_EQ(table.find("api.example.com"), wild.get());
  EXPECT_EQ(table.find("API.example.com"), wild.get());
  EXPECT_EQ(table.find("www.example.com"), exact.get());
  // As a certificate's own wildcard: not the apex, not two labels down.
  EXPECT_EQ(table.find("example.com"), nullptr);
  EXPECT_EQ(table.find("a.b.example.com"), nullptr);
  EXPECT_EQ(table.find(".example.com"), nullptr);
  EXPECT_EQ(table.find("com"), nullptr);
}

TEST(CertificateTable, TheNewestObjectTakesANameOver) {
  CertificateTable table;
  auto old_cert = named({"a.example.com", "keep.example.com"});
  auto new_cert = named({"a.example.com"});
  table.add(old_cert);
  table.add(new_cert);
  EXPECT_EQ(table.find("a.example.com"), new_cert.get());
  EXPECT_EQ(table.find("keep.example.com"), old_cert.get());
  EXPECT_FALSE(table.empty());
  EXPECT_TRUE(CertificateTable().empty());
}
