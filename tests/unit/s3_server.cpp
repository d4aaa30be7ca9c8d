#include "s3_server.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

#if !defined(DOCFLOW_SOURCE_DIR) || !defined(DOCFLOW_S3_PYTHON)
#error "tests/CMakeLists.txt names the source tree (for s3.py) and the Python that runs it"
#endif

namespace docflow::test {

namespace fs = std::filesystem;

namespace {

std::string string_field(const boost::json::value& v, const char* key) {
  const auto* field = v.as_object().if_contains(key);
  if (!field || !field->is_string()) throw std::runtime_error(std::string("no \"") + key + "\"");
  return std::string(field->as_string());
}

}  // namespace

s3_server::s3_server() {
  std::string log_template = (fs::temp_directory_path() / "docflow-s3serve-XXXXXX.log").string();
  const int log_fd = ::mkostemps(log_template.data(), 4, O_CLOEXEC);
  if (log_fd < 0) throw std::runtime_error("cannot create a log file for s3.py serve");
  log_ = log_template;
  // One socket for the child's stdin and stdout: writing to a child that
  // died is an error (MSG_NOSIGNAL) rather than a SIGPIPE that ends the run.
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    ::close(log_fd);
    throw std::runtime_error("socketpair failed");
  }
  std::vector<std::string> argv{DOCFLOW_S3_PYTHON, DOCFLOW_SOURCE_DIR "/tests/integration/s3.py", "serve"};
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // s3.py closes the server on SIGTERM; its daemons die with it. So a
    // test binary that crashed or was killed leaves no Ceph running.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(0);
    ::dup2(fds[1], 0);
    ::dup2(fds[1], 1);
    ::dup2(log_fd, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  ::close(log_fd);
  if (pid_ < 0) {
    ::close(fds[0]);
    fs::remove(log_);
    throw std::runtime_error("fork failed");
  }
  channel_ = fds[0];
  try {
    const auto line = read_line();
    try {
      const auto info = boost::json::parse(line);
      endpoint_ = string_field(info, "endpoint");
      access_key_ = string_field(info, "access_key");
      secret_key_ = string_field(info, "secret_key");
      region_ = string_field(info, "region");
    } catch (const std::exception& e) {
      throw std::runtime_error(failure("s3.py serve said '" + line + "' (" + e.what() + ")"));
    }
  } catch (...) {
    close();
    throw;
  }
}

s3_server::~s3_server() { close(); }

void s3_server::close() noexcept {
  if (channel_ >= 0) {
    ::shutdown(channel_, SHUT_WR);  // EOF on its stdin: it closes the server and exits
    ::close(channel_);
    channel_ = -1;
  }
  if (pid_ > 0) {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  std::error_code ec;
  fs::remove(log_, ec);
}

std::string s3_server::failure(std::string_view what) {
  std::ifstream log(log_);
  return "S3 test server (" DOCFLOW_SOURCE_DIR "/tests/integration/s3.py serve): " + std::string(what) +
         "\n" + std::string(std::istreambuf_iterator<char>(log), {});
}

std::string s3_server::read_line() {
  for (;;) {
    if (const auto end = pending_.find('\n'); end != std::string::npos) {
      auto line = pending_.substr(0, end);
      pending_.erase(0, end + 1);
      return line;
    }
    char buffer[4096];
    const ssize_t n = ::read(channel_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // It exited: wait for it, so that its stderr is complete.
      int status = 0;
      while (pid_ > 0 && ::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
      throw std::runtime_error(failure("it exited"));
    }
    pending_.append(buffer, static_cast<std::size_t>(n));
  }
}

std::string s3_server::command(std::string_view line) {
  const std::string message = std::string(line) + "\n";
  if (::send(channel_, message.data(), message.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(message.size())) {
    throw std::runtime_error(failure("cannot send '" + std::string(line) + "'"));
  }
  auto answer = read_line();
  if (answer.starts_with("error:")) throw std::runtime_error(failure(std::string(line) + ": " + answer));
  return answer;
}

blob::s3::client_config s3_server::client_config(const std::string& bucket) const {
  blob::s3::client_config c;
  c.endpoint = endpoint_;
  c.region = region_;
  c.bucket = bucket;
  c.path_style = true;
  c.creds = {access_key_, secret_key_, ""};
  return c;
}

std::string s3_server::create_bucket() { return command("bucket"); }

void s3_server::kill_gateway() { command("kill-gateway"); }

void s3_server::start_gateway() { command("start-gateway"); }

s3_server& shared_s3_server() {
  static s3_server server;
  return server;
}

}  // namespace docflow::test
