#include "api/access.hpp"

#include "api/backend.hpp"
#include "core/ids.hpp"

namespace docflow::api {

boost::asio::awaitable<core::result<core::document>> caller_document(services& s, const http::request& req) {
  const std::string id(req.param("id"));
  if (!core::is_uuid(id)) co_return core::errc::not_found;
  const auto owner = owner_scope(req);
  auto found =
      co_await backend_call(s, cost::point_read, [&s, &id, &owner] { return s.db.find_document(id, owner); });
  if (!found) co_return core::errc::not_found;
  co_return std::move(*found);
}

}  // namespace docflow::api
