#pragma once

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"

namespace docflow::api {
struct services;
}

/// Resumable uploads: tus 1.0 (core, creation, creation-with-upload,
/// termination, checksum, expiration) under /uploads. The upload that
/// receives its last byte becomes a Document exactly as POST /documents
/// would make it. Its state lives in the database and the blob store, so
/// any serve process may take any request of it.
namespace docflow::api::uploads {

/// The fields every answer under /uploads carries (tus's Tus-Resumable).
std::vector<std::pair<std::string, std::string>> response_fields();

/// OPTIONS /uploads: what this server implements (no token needed).
boost::asio::awaitable<http::response> options(services& s, http::request& req);

/// POST /uploads: creates an upload (201, Location), optionally with its first bytes.
boost::asio::awaitable<http::response> create(services& s, http::request& req);

/// HEAD /uploads/{id}: the offset; GET /uploads/{id}: the outcome (the
/// Document once made).
boost::asio::awaitable<http::response> status(services& s, http::request& req);

/// PATCH /uploads/{id}: appends bytes at Upload-Offset.
boost::asio::awaitable<http::response> append(services& s, http::request& req);

/// DELETE /uploads/{id}: terminates the upload, its bytes with it.
boost::asio::awaitable<http::response> terminate(services& s, http::request& req);

}  // namespace docflow::api::uploads
