#pragma once

#include <type_traits>
#include <utility>

#include <boost/asio/awaitable.hpp>

#include "api/services.hpp"
#include "blob/blob_store.hpp"
#include "http/blocking_pool.hpp"
#include "store/database.hpp"

namespace docflow::api {

/// What a call to the database or the blob store costs, as the handler
/// knows it.
enum class cost {
  point_read,  ///< one database row by its key (find_document, find_user)
  blob_read,   ///< opening a blob, or a piece of one
  blocking,    ///< anything else: writes, scans, transactions, password hashing
};

/// Whether work of cost `c` may run on the I/O thread with these backends:
/// a capability each backend declares (store::database::point_reads_inline,
/// blob::blob_store::reads_inline); a network backend never does. `S` is
/// `services`, or the `ops_context` of the operations endpoints: what holds
/// `db`, `blobs` and `blocking`.
template <class S>
bool runs_inline(const S& s, cost c) noexcept {
  switch (c) {
    case cost::point_read: return s.db.point_reads_inline();
    case cost::blob_read: return s.blobs.reads_inline();
    case cost::blocking: return false;
  }
  return false;
}

/// The one door from a handler to the database and the blob store: `f()`
/// runs inline when runs_inline says so, on the blocking pool otherwise.
/// `f` captures by reference only; blocking_pool::run enforces it.
template <class S, class F>
boost::asio::awaitable<std::invoke_result_t<F>> backend_call(S& s, cost c, F f) {
  if (runs_inline(s, c)) co_return f();
  co_return co_await s.blocking.run(f);
}

}  // namespace docflow::api
