#include "store/postgres/transfer_sink.hpp"

#include <map>
#include <stdexcept>
#include <utility>

#include "store/postgres/pq.hpp"

namespace docflow::store::postgres {

namespace {

// How a cell SQLite wrote becomes a value of the PostgreSQL column: times
// are exact integer milliseconds (no floating point on the way), flags
// 0/1 become booleans.
std::string value_of(transfer::kind k, std::size_t n) {
  const auto p = "$" + std::to_string(n);
  switch (k) {
    case transfer::kind::id: return p + "::uuid";
    case transfer::kind::text: return p + "::text";
    case transfer::kind::integer: return p + "::bigint";
    case transfer::kind::boolean: return "(" + p + "::integer <> 0)";
    case transfer::kind::time: return "('epoch'::timestamptz + " + p + "::bigint * interval '1 millisecond')";
    case transfer::kind::json: return p + "::jsonb";
    case transfer::kind::bytes: return p + "::bytea";
  }
  throw std::logic_error("unknown column kind");
}

std::string quoted(std::string_view name) { return '"' + std::string(name) + '"'; }

std::string insert_sql(const transfer::table& t) {
  std::string names;
  std::string values;
  for (std::size_t i = 0; i < t.columns.size(); ++i) {
    names += (i == 0 ? "" : ", ") + quoted(t.columns[i].name);
    values += (i == 0 ? "" : ", ") + value_of(t.columns[i].kind, i + 1);
  }
  return "INSERT INTO " + quoted(t.name) + " (" + names + ") VALUES (" + values + ") ON CONFLICT DO NOTHING";
}

std::vector<pq::param> params_of(const transfer::table& t, const transfer::row& r) {
  std::vector<pq::param> out;
  out.reserve(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (!r[i]) {
      out.push_back(pq::param::null());
    } else if (t.columns[i].kind == transfer::kind::bytes) {
      out.push_back(pq::to_param(pq::bytes{*r[i]}));
    } else {
      out.push_back(pq::param::of(*r[i]));
    }
  }
  return out;
}

// SQLite counts throttle attempts one row each, PostgreSQL one row per
// (scope, key) with the times in an array: the one table whose shape
// differs. The rows of a key are gathered into one; the batch's
// transaction makes the whole table go at once, so a key present was
// written whole.
std::size_t insert_throttle_attempts(pq::connection& c, const std::vector<transfer::row>& rows) {
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> by_key;
  for (const auto& r : rows) {
    by_key[{r.at(0).value_or(""), r.at(1).value_or("")}].push_back(r.at(2).value_or("0"));
  }
  std::size_t written = 0;
  for (const auto& [key, times] : by_key) {
    std::string array = "{";
    for (const auto& t : times) array += (array.size() == 1 ? "" : ",") + t;
    array += '}';
    const auto r = c.exec(
        "INSERT INTO throttle_attempts (scope, key, leaves_at) "
        "VALUES ($1, $2, ARRAY(SELECT 'epoch'::timestamptz + x * interval '1 millisecond' "
        "FROM unnest($3::bigint[]) AS x ORDER BY x)) ON CONFLICT DO NOTHING",
        key.first, key.second, array);
    if (r.affected() == 1) written += times.size();
  }
  return written;
}

class transfer_sink final : public transfer::sink {
public:
  transfer_sink(const std::string& url, const pq::session_settings& settings) : c_(url, settings) {}

  std::vector<std::string> keys(const transfer::table& t) override {
    const auto r = c_.exec("SELECT " + quoted(t.columns.at(0).name) + "::text FROM " + quoted(t.name));
    std::vector<std::string> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
    return out;
  }

  std::size_t count(const transfer::table& t) override {
    const auto r = c_.exec(t.name == "throttle_attempts"
                               ? std::string("SELECT coalesce(sum(cardinality(leaves_at)), 0)::bigint FROM "
                                             "throttle_attempts")
                               : "SELECT count(*) FROM " + quoted(t.name));
    return static_cast<std::size_t>(r.integer(0, 0));
  }

  std::vector<std::size_t> insert(std::span<const transfer::rows> batch) override {
    std::vector<std::size_t> written;
    written.reserve(batch.size());
    pq::transaction tx(c_);
    std::string events_of;  // the documents whose events were written: a uuid[] literal
    for (const auto& entry : batch) {
      const auto& t = *entry.of;
      if (t.name == "throttle_attempts") {
        written.push_back(insert_throttle_attempts(c_, entry.values));
        continue;
      }
      const auto sql = insert_sql(t);
      std::size_t n = 0;
      for (const auto& r : entry.values) {
        n += c_.run(sql, params_of(t, r)).affected();
        if (t.name == "document_events" && r.at(0)) {
          events_of += (events_of.empty() ? "{" : ",") + *r[0];
        }
      }
      written.push_back(n);
    }
    if (!events_of.empty()) {
      // PostgreSQL numbers a document's next event from this counter
      // (SQLite from max(seq)): it must follow the copied events, or the
      // next event would reuse a number a client's Last-Event-ID holds.
      c_.exec(
          "UPDATE documents d SET last_event_seq = e.last FROM "
          "(SELECT document_id, max(seq) AS last FROM document_events "
          "WHERE document_id = ANY($1::uuid[]) GROUP BY document_id) e "
          "WHERE d.id = e.document_id AND d.last_event_seq < e.last",
          events_of + "}");
    }
    tx.commit();
    return written;
  }

private:
  pq::connection c_;
};

}  // namespace

std::unique_ptr<transfer::sink> open_transfer_sink(const std::string& url, std::string password) {
  pq::session_settings settings;
  settings.password = std::move(password);
  // A result's text may be megabytes: no statement should be cut short
  // for taking longer than an API request's would.
  settings.statement_timeout = std::chrono::minutes{10};
  return std::make_unique<transfer_sink>(url, settings);
}

}  // namespace docflow::store::postgres
