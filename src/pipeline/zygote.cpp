#include "pipeline/zygote.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string_view>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_to.hpp>

#include "pipeline/extract.hpp"
#include "pipeline/lockdown.hpp"

namespace docflow::pipeline {

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void unique_fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

namespace {

[[noreturn]] void crashed(std::string message) {
  throw stage_error(core::failure{core::errc::extractor_crashed, std::move(message), true});
}

// ---------------------------------------------------------------------------
// Messages: one per datagram of a SOCK_SEQPACKET pair, with up to two
// descriptors. The parent sends a request and the child's stdin and stdout;
// the zygote answers "started" with the child's pid file descriptor (or
// "failed"), then "exit <wait status>" once it has reaped the child.

constexpr std::size_t max_message = 64 * 1024;

bool send_message(int socket, std::string_view data, std::initializer_list<int> fds = {}) {
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  if (fds.size() > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    auto* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.begin(), fds.size() * sizeof(int));
  }
  for (;;) {
    const auto n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n) == data.size();
    if (errno != EINTR) return false;
  }
}

// One message and the descriptors it carried (close-on-exec); nullopt at
// end of stream or on error.
std::optional<std::string> receive_message(int socket, std::vector<unique_fd>& fds) {
  std::string data(max_message, '\0');
  iovec iov{data.data(), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = 0;
  while ((n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  for (auto* c = CMSG_FIRSTHDR(&msg); n >= 0 && c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const auto count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (n <= 0 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return std::nullopt;
  data.resize(static_cast<std::size_t>(n));
  return data;
}

std::string encode_request(const child_request& r) {
  boost::json::array limits;
  for (const auto& l : r.limits) {
    limits.push_back(boost::json::array{l.resource, l.value.rlim_cur, l.value.rlim_max});
  }
  boost::json::array pages;
  for (const int p : r.ocr.pages) pages.push_back(p);
  return boost::json::serialize(boost::json::object{{"task", task_argument(r.task)},
                                                    {"strict", r.strict},
                                                    {"max_text_bytes", r.max_text_bytes},
                                                    {"languages", r.ocr.languages},
                                                    {"dpi", r.ocr.dpi},
                                                    {"pages", std::move(pages)},
                                                    {"blank_checks", r.ocr.blank_checks},
                                                    {"limits", std::move(limits)},
                                                    {"parent", r.parent}});
}

// The parent wrote it: anything malformed is a bug, thrown as one.
child_request decode_request(std::string_view json) {
  const auto o = boost::json::parse(json).as_object();
  child_request r;
  r.task = parse_task_argument(o.at("task").as_string()).value();
  r.strict = o.at("strict").as_bool();
  r.max_text_bytes = boost::json::value_to<std::uint64_t>(o.at("max_text_bytes"));
  r.ocr.languages = std::string(o.at("languages").as_string());
  r.ocr.dpi = boost::json::value_to<unsigned>(o.at("dpi"));
  for (const auto& p : o.at("pages").as_array()) r.ocr.pages.push_back(boost::json::value_to<int>(p));
  r.ocr.blank_checks = boost::json::value_to<unsigned>(o.at("blank_checks"));
  for (const auto& l : o.at("limits").as_array()) {
    const auto& v = l.as_array();
    r.limits.push_back({boost::json::value_to<int>(v.at(0)),
                        {boost::json::value_to<rlim_t>(v.at(1)), boost::json::value_to<rlim_t>(v.at(2))}});
  }
  r.parent = boost::json::value_to<pid_t>(o.at("parent"));
  return r;
}

// ---------------------------------------------------------------------------
// The zygote, from the inside

// The forked child: the same start an exec'd child had (its own process
// group, killed with its zygote, the document on stdin, the answer on
// stdout, nothing else open, its limits), then child_main.
[[noreturn]] void become_child(pid_t zygote, int input, int output, int null_fd, const child_request& r) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != zygote) ::_exit(126);
  ::setpgid(0, 0);
  if (::dup2(input, 0) < 0 || ::dup2(output, 1) < 0 || ::dup2(null_fd, 2) < 0) ::_exit(126);
  close_inherited_descriptors();
  for (const auto& l : r.limits) {
    // Never run an untrusted parse without its limits.
    if (::setrlimit(l.resource, &l.value) != 0) ::_exit(126);
  }
  ::_exit(child_main(r));
}

// Waits for the child to end, kills whatever it left in its process group
// (possible only where seccomp is missing), then reaps it.
int reap(pid_t child) {
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
  }
  ::kill(-child, SIGKILL);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

int zygote_main() {
  close_inherited_descriptors();
  // What every child would load from disk, loaded once: the fork shares it.
  prepare_extractors();
  const pid_t self = ::getpid();
  for (;;) {
    std::vector<unique_fd> fds;
    const auto message = receive_message(0, fds);
    if (!message) return 0;  // the parent is gone, or done with us
    if (fds.size() != 2) return 1;
    const auto request = decode_request(*message);
    const pid_t child = ::fork();
    if (child == 0) become_child(self, fds[0].get(), fds[1].get(), 2, request);
    fds.clear();  // the child's ends of its pipes are the child's alone now
    if (child < 0) {
      if (!send_message(0, "failed")) return 1;
      continue;
    }
    // The parent kills by this, never by a pid that may have been reused.
    const unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
    const bool told = pidfd.get() >= 0 && send_message(0, "started", {pidfd.get()});
    if (!told) ::kill(child, SIGKILL);
    const int status = reap(child);
    if (!told || !send_message(0, "exit " + std::to_string(status))) return 1;
  }
}

// ---------------------------------------------------------------------------
// The zygote, from the outside

namespace {

// Between fork and exec only async-signal-safe calls: the parent may have
// other threads holding malloc's locks. Everything is prepared beforehand.
[[noreturn]] void exec_zygote(pid_t parent, int socket, int null_fd, char* const* argv, char* const* envp) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(126);
  ::setpgid(0, 0);
  // Ignored signals and the signal mask survive exec; the server's choices
  // (SIGPIPE ignored, signals blocked in pool threads) must not reach the
  // children, which rely on SIGXCPU and SIGPIPE to stop.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &default_action, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::dup2(socket, 0) < 0 || ::dup2(null_fd, 1) < 0 || ::dup2(null_fd, 2) < 0) ::_exit(126);
  close_inherited_descriptors();
  const rlimit no_core{0, 0};  // nor may a child's crash drop a document in a core file
  ::setrlimit(RLIMIT_CORE, &no_core);
  ::execve(argv[0], argv, envp);
  ::_exit(127);
}

class zygote {
public:
  zygote(std::filesystem::path exe, std::vector<std::string> env)
      : exe_(std::move(exe)), env_(std::move(env)) {
    std::vector<std::string> args{exe_.string(), "extract", "--zygote"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : env_) envp.push_back(e.data());
    envp.push_back(nullptr);
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
      crashed("the extractor could not be started");
    }
    socket_ = unique_fd(pair[0]);
    const unique_fd theirs(pair[1]);
    const unique_fd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (null_fd.get() < 0) crashed("the extractor could not be started");
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) crashed("the extractor could not be started");
    if (pid_ == 0) exec_zygote(parent, theirs.get(), null_fd.get(), argv.data(), envp.data());
  }
  zygote(const zygote&) = delete;
  zygote& operator=(const zygote&) = delete;
  ~zygote() {
    socket_.reset();                   // it ends by itself at end of stream; this makes sure
    if (::getpid() != owner_) return;  // a forked copy of the pool: the zygote is its creator's
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }

  // A process forked from the one that started the zygote shares its
  // socket, not the zygote: it starts its own.
  bool serves(const std::filesystem::path& exe, const std::vector<std::string>& env) const {
    return ::getpid() == owner_ && exe == exe_ && env == env_;
  }
  int socket() const { return socket_.get(); }

  // Its children share its address layout and stack canary, which a child
  // that leaks them (in its answer's text, say) hands to the next document's
  // exploit; a fresh zygote every so many children bounds that.
  bool worn_out() { return ++children_ >= max_children; }

private:
  static constexpr unsigned max_children = 100;
  unsigned children_ = 0;
  std::filesystem::path exe_;
  std::vector<std::string> env_;
  unique_fd socket_;
  pid_t pid_ = -1;
  pid_t owner_ = ::getpid();
};

// The idle zygotes: a caller takes one, or starts one when none fits, and
// gives it back when its child has been reaped. So there are as many as
// callers have ever run children at once, and no more than max_idle wait.
class zygote_pool {
public:
  std::unique_ptr<zygote> take(const std::filesystem::path& exe, const std::vector<std::string>& env) {
    {
      const std::lock_guard lock(mutex_);
      while (!idle_.empty()) {
        auto z = std::move(idle_.back());
        idle_.pop_back();
        if (z->serves(exe, env)) return z;
      }
    }
    return std::make_unique<zygote>(exe, env);
  }
  void give_back(std::unique_ptr<zygote> z) {
    if (z->worn_out()) return;
    const std::lock_guard lock(mutex_);
    if (idle_.size() < max_idle) idle_.push_back(std::move(z));
  }

private:
  static constexpr std::size_t max_idle = 64;
  std::mutex mutex_;
  std::vector<std::unique_ptr<zygote>> idle_;
};

zygote_pool& pool() {
  // Never destroyed: a worker may still be giving a zygote back as the
  // process exits; the zygotes die with it (their parent-death signal).
  static auto* p = new zygote_pool;
  return *p;
}

// Waits for the socket to be readable until `deadline`; false when it passes.
bool readable_by(int socket, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= decltype(left)::zero()) return false;
    pollfd p{socket, POLLIN, 0};
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(ms, 60'000)));
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) return false;
  }
}

}  // namespace

struct started_child::impl {
  std::unique_ptr<zygote> owner;
  unique_fd pidfd;
  std::optional<int> status;
};

started_child::started_child(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
started_child::started_child(started_child&&) noexcept = default;

started_child::~started_child() {
  if (!impl_ || !impl_->owner) return;
  if (!impl_->status) {
    kill();
    try {
      // A killed child is reaped at once; a zygote that does not say so is
      // not trusted with another child.
      if (!wait_until(std::chrono::steady_clock::now() + std::chrono::seconds(5))) impl_->owner.reset();
    } catch (...) {
      impl_->owner.reset();
    }
  }
  if (impl_->owner) pool().give_back(std::move(impl_->owner));
}

void started_child::kill() { ::syscall(SYS_pidfd_send_signal, impl_->pidfd.get(), SIGKILL, nullptr, 0); }

std::optional<int> started_child::wait_until(std::chrono::steady_clock::time_point deadline) {
  if (impl_->status) return impl_->status;
  const int socket = impl_->owner->socket();
  if (!readable_by(socket, deadline)) return std::nullopt;
  std::vector<unique_fd> fds;
  const auto message = receive_message(socket, fds);
  int status = 0;
  if (!message || !message->starts_with("exit ") ||
      std::sscanf(message->c_str() + 5, "%d", &status) != 1) {  // NOLINT(cert-err34-c): the zygote wrote it
    impl_->owner.reset();
    crashed("the extractor's zygote failed");
  }
  impl_->status = status;
  return status;
}

started_child start_child(const std::filesystem::path& self_exe, const std::vector<std::string>& env,
                          const child_request& request, int input, int output) {
  const auto message = encode_request(request);
  // An idle zygote may have died (killed, or its parent thread gone): one
  // more try, with a fresh one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto z = pool().take(self_exe, env);
    if (!send_message(z->socket(), message, {input, output})) continue;
    std::vector<unique_fd> fds;
    const auto answer = receive_message(z->socket(), fds);
    if (!answer) continue;
    if (*answer != "started" || fds.size() != 1) crashed("the extractor could not be started");
    auto i = std::make_unique<started_child::impl>();
    i->owner = std::move(z);
    i->pidfd = std::move(fds[0]);
    return started_child(std::move(i));
  }
  crashed("the extractor could not be started");
}

}  // namespace docflow::pipeline
