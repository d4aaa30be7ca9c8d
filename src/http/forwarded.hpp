#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/ip_network.hpp"
#include "http/message.hpp"

namespace docflow::http {

/// Who sent a request, as far as this server can tell.
struct client_origin {
  std::string address;         ///< the client: the TCP peer, or what a trusted proxy says
  std::string scheme{"http"};  ///< "http" or "https": what the client used
};

/// The client behind `peer` (the TCP peer's address as the socket reports
/// it). Only when `peer` is in `trusted_proxies` are X-Forwarded-For and
/// X-Forwarded-Proto read; from any other peer both are ignored, so a client
/// cannot claim another's address.
///
/// X-Forwarded-For: every field, in order, as one comma-separated list. Read
/// right to left, the entries that are themselves trusted proxies are
/// passed over and the first other one is the client; when all are trusted,
/// the leftmost. An entry that is not a bare IP address (garbage, "unknown",
/// a port) stops the walk: what lies left of it cannot be vouched for, so
/// the client is the last address read before it (a trusted proxy), or the
/// peer when it is the rightmost.
///
/// X-Forwarded-Proto: the first field, when it is exactly http or https
/// (any case); anything else leaves "http", the only scheme this server speaks.
client_origin forwarded_client(const std::string& peer, const headers& fields,
                               const std::vector<core::ip_network>& trusted_proxies);

}  // namespace docflow::http
