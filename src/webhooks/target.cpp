#include "webhooks/target.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "core/webhook.hpp"

namespace docflow::webhooks {

std::optional<target> parse_target(std::string_view url, std::string& why) {
  if (url.size() > max_url_length) {
    why = "must be at most " + std::to_string(max_url_length) + " characters";
    return std::nullopt;
  }
  const auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) {
    why = "must be an absolute http or https URL";
    return std::nullopt;
  }
  const auto& u = *parsed;
  target t;
  if (u.scheme_id() == boost::urls::scheme::https) {
    t.https = true;
  } else if (u.scheme_id() != boost::urls::scheme::http) {
    why = "must be an http or https URL";
    return std::nullopt;
  }
  if (u.has_userinfo()) {
    // A password in a URL ends up in logs and in the delivery log's answers.
    why = "must not contain a user name or password";
    return std::nullopt;
  }
  if (u.has_fragment()) {
    why = "must not have a fragment (#...)";
    return std::nullopt;
  }
  switch (u.host_type()) {
    case boost::urls::host_type::ipv4: t.host = u.host_ipv4_address().to_string(); break;
    case boost::urls::host_type::ipv6: t.host = u.host_ipv6_address().to_string(); break;
    case boost::urls::host_type::name: {
      const auto encoded = u.encoded_host();
      if (encoded.find('%') != std::string_view::npos) {
        why = "must name its host without percent-encoding";
        return std::nullopt;
      }
      t.host.assign(encoded.data(), encoded.size());
      std::transform(t.host.begin(), t.host.end(), t.host.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      break;
    }
    default: break;
  }
  if (t.host.empty()) {
    why = "must name a host";
    return std::nullopt;
  }
  t.port = t.https ? 443 : 80;
  if (u.has_port()) {
    const auto port = u.port_number();
    if (port == 0) {
      why = "must have a port from 1 to 65535";
      return std::nullopt;
    }
    t.port = port;
  }
  return t;
}

resolution resolve(const target& t, const std::vector<core::ip_network>& allowed_networks) {
  std::vector<core::ip_address> found;
  if (const auto literal = core::parse_ip_address(t.host)) {
    found.push_back(*literal);
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    if (::getaddrinfo(t.host.c_str(), nullptr, &hints, &list) == 0) {
      const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(list, &::freeaddrinfo);
      for (const auto* a = list; a != nullptr; a = a->ai_next) {
        char text[INET6_ADDRSTRLEN] = {};
        const void* raw = nullptr;
        if (a->ai_family == AF_INET) {
          raw = &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr;
        } else if (a->ai_family == AF_INET6) {
          raw = &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr;
        } else {
          continue;
        }
        // Through text, so that an IPv4-mapped answer becomes its IPv4 address.
        if (::inet_ntop(a->ai_family, raw, text, sizeof text) == nullptr) continue;
        if (const auto ip = core::parse_ip_address(text)) {
          if (std::find(found.begin(), found.end(), *ip) == found.end()) found.push_back(*ip);
        }
      }
    }
  }
  resolution r;
  for (const auto& a : found) {
    (core::webhook_address_allowed(a, allowed_networks) ? r.allowed : r.refused).push_back(a);
  }
  return r;
}

}  // namespace docflow::webhooks
