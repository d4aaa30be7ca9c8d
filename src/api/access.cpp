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

boost::asio::awaitable<std::optional<core::error>> quota_refusal(services& s, const http::request& req,
                                                                 std::uint64_t bytes) {
  const auto& user = req.user->user_id;
  auto q = co_await backend_call(s, cost::point_read, [&s, &user] { return s.db.find_quota(user); });
  if (core::fits(q, bytes)) co_return std::nullopt;
  co_return core::quota_exceeded(q);
}

}  // namespace docflow::api
