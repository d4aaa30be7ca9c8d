#include "http/forwarded.hpp"

#include <optional>

#include "core/encoding.hpp"

namespace docflow::http {

client_origin forwarded_client(const std::string& peer, const headers& fields,
                               const std::vector<core::ip_network>& trusted_proxies) {
  client_origin origin{peer};
  const auto peer_address = core::parse_ip_address(peer);
  if (trusted_proxies.empty() || !peer_address || !core::any_contains(trusted_proxies, *peer_address)) {
    return origin;
  }
  if (const auto proto = fields.get("X-Forwarded-Proto")) {
    const auto value = core::trim_ows(*proto);
    if (core::iequals(value, "https")) origin.scheme = "https";
  }
  // One list of every X-Forwarded-For field, joined as RFC 9110 §5.3 joins
  // repeated fields.
  std::string list;
  for (const auto& [name, value] : fields) {
    if (!core::iequals(name, "X-Forwarded-For")) continue;
    if (!list.empty()) list.push_back(',');
    list += value;
  }
  std::string_view rest = list;
  while (!rest.empty()) {
    const auto comma = rest.rfind(',');
    const auto entry = core::trim_ows(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
    const auto address = core::parse_ip_address(entry);
    if (!address) break;
    origin.address = address->to_string();
    if (!core::any_contains(trusted_proxies, *address)) break;
  }
  return origin;
}

}  // namespace docflow::http
