#include "pipeline/zygote.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string_view>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
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
// the zygote answers "started" (or "failed"), then "exit <wait status>" once
// it has reaped the child. Meanwhile the parent may send "kill". The
// zygote, the child's parent, kills it: no pid that may have been reused is
// ever signalled, and no pidfd is needed.

// A request with DOCFLOW_OCR_MAX_PAGES' largest page list (10,000 pages)
// is under 60 KiB; the socket's buffers are raised to hold this.
constexpr std::size_t max_message = 256 * 1024;

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

// The zygote's answers ("started", "exit <status>") are a few bytes: the
// server reads them, per child, into a buffer this size.
constexpr std::size_t max_answer = 64;

// One message of at most `max` bytes and the descriptors it carried
// (close-on-exec); nullopt at end of stream, on error, or when longer.
std::optional<std::string> receive_message(int socket, std::vector<unique_fd>& fds, std::size_t max) {
  std::string data(max, '\0');
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
  sigset_t none;  // the zygote blocks SIGCHLD; a child starts with nothing blocked
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::dup2(input, 0) < 0 || ::dup2(output, 1) < 0 || ::dup2(null_fd, 2) < 0) ::_exit(126);
  close_inherited_descriptors();
  for (const auto& l : r.limits) {
    // Never run an untrusted parse without its limits.
    if (::setrlimit(l.resource, &l.value) != 0) ::_exit(126);
  }
  ::_exit(child_main(r));
}

void kill_child(pid_t child) {
  ::kill(child, SIGKILL);
  ::kill(-child, SIGKILL);  // and what it started, once it leads its group
}

bool has_ended(pid_t child) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid != 0;
}

// Watches the child until it ends, killing it when the parent asks; kills
// whatever it left in its process group (possible only where seccomp is
// missing), then reaps it. Its wait status, or nullopt when the parent went
// away meanwhile (then the child is killed) or the child could not be
// reaped. SIGCHLD is blocked and read from `sigchld` (a signalfd).
std::optional<int> supervise(pid_t child, int sigchld) {
  bool parent_gone = false;
  while (!has_ended(child)) {
    pollfd p[2] = {{0, POLLIN, 0}, {sigchld, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return std::nullopt;
    if ((p[1].revents & POLLIN) != 0) {
      signalfd_siginfo drained{};
      while (::read(sigchld, &drained, sizeof drained) > 0) {
      }
    }
    if (p[0].revents != 0) {
      std::vector<unique_fd> ignored;
      const auto message = receive_message(0, ignored, max_message);
      if (!message) parent_gone = true;
      // "kill" is the one message that may come while a child runs.
      kill_child(child);
    }
  }
  ::kill(-child, SIGKILL);
  int status = 0;
  pid_t reaped = -1;
  while ((reaped = ::waitpid(child, &status, 0)) < 0 && errno == EINTR) {
  }
  if (reaped != child || parent_gone) return std::nullopt;
  return status;
}

}  // namespace

int zygote_main() {
  close_inherited_descriptors();
#if !defined(__SANITIZE_ADDRESS__)
  // Nor may a child that lost its sandbox (best effort, on a kernel without
  // seccomp) ptrace the zygote and, through it, the next documents.
  // LeakSanitizer's check needs the process dumpable.
  ::prctl(PR_SET_DUMPABLE, 0);
#endif
  // Its children's ends are read here, not by a handler.
  sigset_t child_ended;
  ::sigemptyset(&child_ended);
  ::sigaddset(&child_ended, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &child_ended, nullptr);
  const unique_fd sigchld(::signalfd(-1, &child_ended, SFD_NONBLOCK | SFD_CLOEXEC));
  if (sigchld.get() < 0) return 1;
  // What every child would load from disk, loaded once: the fork shares it.
  prepare_extractors();
  const pid_t self = ::getpid();
  for (;;) {
    std::vector<unique_fd> fds;
    const auto message = receive_message(0, fds, max_message);
    if (!message) return 0;            // the parent is gone, or done with us
    if (*message == "kill") continue;  // for a child that has ended meanwhile
    if (fds.size() != 2) return 1;
    const auto request = decode_request(*message);
    const pid_t child = ::fork();
    if (child == 0) become_child(self, fds[0].get(), fds[1].get(), 2, request);
    fds.clear();  // the child's ends of its pipes are the child's alone now
    if (child < 0) {
      if (!send_message(0, "failed")) return 1;
      continue;
    }
    if (!send_message(0, "started")) kill_child(child);
    const auto status = supervise(child, sigchld.get());
    if (!status || !send_message(0, "exit " + std::to_string(*status))) return 1;
  }
}

// ---------------------------------------------------------------------------
// The zygote, from the outside

namespace {

// Between fork and exec only async-signal-safe calls: the parent may have
// other threads holding malloc's locks. Everything is prepared beforehand.
// No parent-death signal: it would come when the thread that started the
// zygote ends, while another may be using it. The zygote ends when its
// socket closes instead, which the kernel does when the server dies.
[[noreturn]] void exec_zygote(int socket, int null_fd, char* const* argv, char* const* envp) {
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
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    envp.reserve(env_.size() + 1);
    for (auto& e : env_) envp.push_back(e.data());
    envp.push_back(nullptr);
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
      crashed("the extractor could not be started");
    }
    for (const int fd : pair) {
      const int size = static_cast<int>(2 * max_message);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    socket_ = unique_fd(pair[0]);
    const unique_fd theirs(pair[1]);
    const unique_fd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (null_fd.get() < 0) crashed("the extractor could not be started");
    pid_ = ::fork();
    if (pid_ < 0) crashed("the extractor could not be started");
    if (pid_ == 0) exec_zygote(theirs.get(), null_fd.get(), argv.data(), envp.data());
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
  // An idle zygote has nothing to say: a readable or closed socket means it
  // died (or is out of step), and it is not used again.
  bool alive() const {
    pollfd p{socket_.get(), POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 0;
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
    std::vector<std::unique_ptr<zygote>> unfit;  // stopped after the lock is released
    for (;;) {
      std::unique_ptr<zygote> z;
      {
        const std::lock_guard lock(mutex_);
        if (idle_.empty()) break;
        z = std::move(idle_.back());
        idle_.pop_back();
      }
      if (z->serves(exe, env) && z->alive()) return z;
      unfit.push_back(std::move(z));
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
  // process exits; the zygotes end with it (their sockets close).
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
  std::optional<int> status;
};

namespace {
// A child that crashed may have been probing what its siblings share (the
// canary, the layout): its zygote forks no more.
bool crashed_by_signal(int status) {
  if (!WIFSIGNALED(status)) return false;
  const int sig = WTERMSIG(status);
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT || sig == SIGILL || sig == SIGFPE;
}
}  // namespace

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
  if (impl_->owner && impl_->status && !crashed_by_signal(*impl_->status))
    pool().give_back(std::move(impl_->owner));
}

void started_child::kill() {
  if (impl_->owner && !impl_->status && !send_message(impl_->owner->socket(), "kill")) impl_->owner.reset();
}

std::optional<int> started_child::wait_until(std::chrono::steady_clock::time_point deadline) {
  if (impl_->status) return impl_->status;
  const int socket = impl_->owner->socket();
  if (!readable_by(socket, deadline)) return std::nullopt;
  std::vector<unique_fd> fds;
  const auto message = receive_message(socket, fds, max_answer);
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
  if (message.size() > max_message) crashed("the extractor's request is too large");
  auto z = pool().take(self_exe, env);
  // An idle zygote may have died between the pool's look and the request
  // (no child was started then): once more, with a fresh one.
  if (!send_message(z->socket(), message, {input, output})) {
    z = std::make_unique<zygote>(self_exe, env);
    if (!send_message(z->socket(), message, {input, output})) crashed("the extractor could not be started");
  }
  // A fork takes milliseconds; a zygote that does not answer in 10 s is
  // stuck (stopped, frozen), and dropping it kills whatever it started.
  std::vector<unique_fd> fds;
  const bool answered = readable_by(z->socket(), std::chrono::steady_clock::now() + std::chrono::seconds(10));
  const auto answer = answered ? receive_message(z->socket(), fds, max_answer) : std::nullopt;
  if (answer != "started") crashed("the extractor could not be started");
  auto i = std::make_unique<started_child::impl>();
  i->owner = std::move(z);
  return started_child(std::move(i));
}

}  // namespace docflow::pipeline
