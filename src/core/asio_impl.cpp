// The one translation unit that compiles Asio (BOOST_ASIO_SEPARATE_COMPILATION), its TLS layer
// and Beast (BOOST_BEAST_SEPARATE_COMPILATION): every other file includes headers only.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
