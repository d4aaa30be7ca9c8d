# Writes a C++ source holding every migration file as {version, name, sql}.
# The version is the file name's numeric prefix (0001_init.sql -> 1).
# ENGINE names the store (sqlite, postgres): the generated source defines
# docflow::store::<ENGINE>::migrations(), declared in store/<ENGINE>/migrations.hpp.
separate_arguments(FILES)
if(NOT ENGINE)
  set(ENGINE sqlite)
endif()
set(body "// Generated from store/${ENGINE}/migrations/*.sql. Do not edit.\n#include \"store/${ENGINE}/migrations.hpp\"\n\nnamespace docflow::store::${ENGINE} {\nconst std::vector<migration>& migrations() {\n  static const std::vector<migration> all{\n")
foreach(f IN LISTS FILES)
  get_filename_component(name ${f} NAME)
  string(REGEX MATCH "^[0-9]+" version ${name})
  math(EXPR version "${version}")
  file(READ ${f} sql)
  string(APPEND body "    {${version}, \"${name}\", R\"docflow_sql(${sql})docflow_sql\"},\n")
endforeach()
string(APPEND body "  };\n  return all;\n}\n}  // namespace docflow::store::${ENGINE}\n")
file(WRITE ${OUT} "${body}")
