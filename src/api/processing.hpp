#pragma once

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"

namespace docflow::api {
struct services;
}

namespace docflow::api::processing {

/// POST /documents/{id}/process: 202 (accepted, or already PROCESSING), 200
/// when COMPLETED; 429 with Retry-After when the queue is full.
boost::asio::awaitable<http::response> process(services& s, http::request& req);

/// POST /documents/{id}/cancel: 202 with the now FAILED (cancelled)
/// document; 409 unless it is PROCESSING.
boost::asio::awaitable<http::response> cancel(services& s, http::request& req);

/// GET /documents/{id}/result: 200 when COMPLETED; 409 result-not-ready or
/// processing-failed otherwise.
boost::asio::awaitable<http::response> result(services& s, http::request& req);

/// GET /documents/{id}/result/text: the full text, text/plain.
boost::asio::awaitable<http::response> result_text(services& s, http::request& req);

/// GET /documents/{id}/events: Server-Sent Events of status changes.
boost::asio::awaitable<http::response> events(services& s, http::request& req);

}  // namespace docflow::api::processing
