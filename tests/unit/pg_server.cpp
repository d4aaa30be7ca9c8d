#include "pg_server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/ids.hpp"
#include "store/postgres/pq.hpp"

#ifndef DOCFLOW_PG_BIN_DEFAULT
#define DOCFLOW_PG_BIN_DEFAULT "/usr/lib/postgresql/15/bin"
#endif

namespace docflow::test {

namespace fs = std::filesystem;

namespace {

// initdb and postgres refuse to run as root: as root, they run as the
// `postgres` user (Debian's postgresql-common creates it).
struct run_as {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

run_as server_user() {
  run_as r;
  if (::geteuid() != 0) return r;
  const passwd* pw = ::getpwnam("postgres");
  if (!pw) throw std::runtime_error("running as root, and there is no 'postgres' user to run PostgreSQL as");
  r.switch_user = true;
  r.uid = pw->pw_uid;
  r.gid = pw->pw_gid;
  return r;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs argv to completion with its output in `log`; throws unless it exits 0.
void run(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(argv[0] + " failed:\n" + read_file(log));
  }
}

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (s >= 0) ::close(s);
    throw std::runtime_error("no free port");
  }
  ::close(s);
  return ntohs(a.sin_port);
}

// The directories of servers whose test binary died without cleaning up
// (killed, or cut off by a closed pipe): their server died with it.
void remove_leftovers() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::temp_directory_path(), ec)) {
    if (!entry.path().filename().string().starts_with("docflow-pg-")) continue;
    std::ifstream in(entry.path() / "owner.pid");
    pid_t owner = 0;
    if (!(in >> owner) || owner <= 0) continue;  // starting, or not ours to judge
    if (::kill(owner, 0) != 0 && errno == ESRCH) fs::remove_all(entry.path(), ec);
  }
}

}  // namespace

fs::path pg_server::bin_dir() {
  if (const char* env = std::getenv("DOCFLOW_PG_BIN"); env && *env) return env;
  return DOCFLOW_PG_BIN_DEFAULT;
}

pg_server::pg_server(bool durable) : durable_(durable) {
  const auto bin = bin_dir();
  for (const char* tool : {"initdb", "postgres"}) {
    if (::access((bin / tool).c_str(), X_OK) != 0) {
      throw std::runtime_error(
          "PostgreSQL 15 is not installed: no " + (bin / tool).string() +
          " (scripts/install-deps installs postgresql-15; DOCFLOW_PG_BIN names another place)");
    }
  }
  const auto user = server_user();
  remove_leftovers();
  dir_ = fs::temp_directory_path() / ("docflow-pg-" + core::random_hex(6));
  fs::create_directory(dir_);
  std::ofstream(dir_ / "owner.pid") << ::getpid() << '\n';
  fs::permissions(dir_, fs::perms::owner_all);
  if (user.switch_user && ::chown(dir_.c_str(), user.uid, user.gid) != 0) {
    fs::remove_all(dir_);
    throw std::runtime_error("cannot give " + dir_.string() + " to the postgres user");
  }
  try {
    std::vector<std::string> argv;
    if (user.switch_user) argv = {"/usr/sbin/runuser", "-u", "postgres", "--"};
    for (const auto& a :
         {(bin / "initdb").string(), std::string("-D"), (dir_ / "data").string(), std::string("-U"),
          std::string("postgres"), std::string("-A"), std::string("trust"), std::string("-E"),
          std::string("UTF8"), std::string("--locale=C"), std::string("--no-instructions")}) {
      argv.push_back(a);
    }
    if (!durable_) argv.push_back("--no-sync");
    run(argv, dir_ / "initdb.log");
    start();
  } catch (...) {
    stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
    throw;
  }
}

pg_server::~pg_server() {
  stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string pg_server::url(std::string_view database) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + std::string(database);
}

void pg_server::start() {
  if (pid_ > 0) return;
  const auto user = server_user();
  const bool fixed_port = port_ != 0;  // a restart keeps its port: clients know it
  for (int tries = 0;; ++tries) {
    if (!fixed_port) port_ = free_port();
    const auto log = dir_ / "server.log";
    std::vector<std::string> argv{(bin_dir() / "postgres").string(),
                                  "-D",
                                  (dir_ / "data").string(),
                                  "-p",
                                  std::to_string(port_),
                                  "-c",
                                  "listen_addresses=127.0.0.1",
                                  "-c",
                                  "unix_socket_directories=" + dir_.string(),
                                  "-c",
                                  "max_connections=200",
                                  "-c",
                                  std::string("fsync=") + (durable_ ? "on" : "off"),
                                  "-c",
                                  std::string("synchronous_commit=") + (durable_ ? "on" : "off"),
                                  "-c",
                                  std::string("full_page_writes=") + (durable_ ? "on" : "off")};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      // The server must not outlive a test binary that crashed or was
      // killed: it gets SIGQUIT (immediate shutdown) when we die. The
      // setting is cleared by a change of user, so it comes after.
      if (user.switch_user &&
          (::setgroups(0, nullptr) != 0 || ::setgid(user.gid) != 0 || ::setuid(user.uid) != 0)) {
        ::_exit(126);
      }
      ::prctl(PR_SET_PDEATHSIG, SIGQUIT);
      if (::getppid() != parent) ::_exit(0);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    pid_ = pid;
    try {
      wait_until_ready();
      return;
    } catch (const std::exception&) {
      const bool gone = pid_ < 0;
      stop();
      // Someone else took the port between our look and the server's bind.
      if (!gone || fixed_port || tries >= 2) throw;
    }
  }
}

void pg_server::wait_until_ready() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  store::postgres::pq::session_settings settings;
  settings.connect_timeout = std::chrono::seconds(2);
  for (;;) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("postgres exited at start:\n" + read_file(dir_ / "server.log"));
    }
    try {
      store::postgres::pq::connection c(url(), settings);
      return;
    } catch (const std::exception&) {
      // Not accepting connections yet.
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("postgres did not come up within 30 s:\n" + read_file(dir_ / "server.log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void pg_server::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGINT);  // fast shutdown
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

std::string pg_server::create_database() {
  static std::atomic<int> counter{0};
  const std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  store::postgres::pq::connection admin(url(), {});
  admin.script("CREATE DATABASE " + name + " TEMPLATE template0");
  return url(name);
}

pg_server& shared_pg_server() {
  static pg_server server;
  return server;
}

}  // namespace docflow::test
