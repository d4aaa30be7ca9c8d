#pragma once

#include <vector>

namespace docflow::store::postgres {

/// One schema migration, from store/postgres/migrations/NNNN_name.sql. The
/// versions match the SQLite ones: version N means the same schema on both.
struct migration {
  int version;
  const char* name;
  const char* sql;
};

/// Every migration compiled into the binary, in version order.
const std::vector<migration>& migrations();

}  // namespace docflow::store::postgres
