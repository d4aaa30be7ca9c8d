#pragma once

#include <vector>

namespace docflow::store::sqlite {

/// One schema migration, from store/sqlite/migrations/NNNN_name.sql.
struct migration {
  int version;
  const char* name;
  const char* sql;
};

/// Every migration compiled into the binary, in version order.
const std::vector<migration>& migrations();

}  // namespace docflow::store::sqlite
