/*
 * hearth-agent: PID 1 of every Hearth microVM.
 *
 * It prepares the guest (mounts, kernel modules, loopback, optional network),
 * then serves the host over a virtio-serial port with the framed protocol that
 * src/guest/protocol.ts documents. It is C rather than TypeScript because the
 * guest carries no Node.js runtime: a static binary of a few hundred KiB keeps
 * the initramfs small and the boot fast.
 *
 * Transports: virtio-serial (QEMU), vsock (Firecracker, hearth.vsock=PORT), or
 * connect-back over TCP (Flintlock hosts, whose VMs Hearth cannot reach): the
 * agent dials tcp://HOST:PORT, authenticates with a one-line hello carrying its
 * token, then speaks the same frames. Connect-back runs either as PID 1 (the
 * URL from hearth.connect=URL on the cmdline or /etc/hearth/agent.env, the
 * token from that file only) or as an ordinary process started by cloud-init:
 *   HEARTH_AGENT_TOKEN=... hearth-agent --connect tcp://HOST:PORT
 *
 * Frame: u8 type | u32 id | u32 length | payload   (integers little-endian)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <net/if.h>
#include <net/route.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL_VERSION 1
#define AGENT_VERSION "hearth-agent/1"
/* HELLO flags: what this agent applies beyond version 1's baseline (src/guest/protocol.ts). */
#define HELLO_FLAG_IDENTITY_NETWORK 1
/* IDENTITY extension kinds, each u32 kind + str body after the seed. */
#define IDENTITY_EXT_NETWORK 1
#define HEADER_SIZE 9
#define MAX_PAYLOAD (1u << 20)
#define READ_CHUNK 65536
/* Guest-side backstop after the host's deadline; the host kills the VM first. */
#define TIMEOUT_GRACE_MS 5000
/* Connect-back: the hello line, its answer, and how patiently to dial. */
#define CONNECT_MAGIC "HEARTH-CONNECT"
#define CONNECT_VERSION 1
#define AGENT_ENV_PATH "/etc/hearth/agent.env"
#define MAX_TOKEN 256
#define CONNECT_TIMEOUT_MS 10000
#define ANSWER_TIMEOUT_MS 30000
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000

enum frame_type {
  F_PING = 1,
  F_HELLO = 2,
  F_IDENTITY = 3,
  F_IDENTITY_OK = 4,
  F_EXEC = 5,
  F_STDOUT = 6,
  F_STDERR = 7,
  F_EXIT = 8,
  F_ERROR = 9,
};

extern char **environ;

static int port_fd = -1;
/* Listening AF_VSOCK socket when the host reaches the agent over vsock (Firecracker); -1 on virtio-serial. */
static int vsock_fd = -1;
/* The port is a stream socket (vsock or connect-back TCP): a peer that goes away closes it. */
static int port_is_socket;
/* Connect-back: once the host ends an authenticated session, the agent's work is done. */
static int connect_mode;
/* Connect-back secret; never logged, never left in the environment. */
static char token[MAX_TOKEN + 1];
static int sig_fd = -1;
/* Set first thing in main: PID 1 owns the machine (mounts, identity, power-off); anything else only serves. */
static int is_pid1;
static unsigned char rbuf[HEADER_SIZE + MAX_PAYLOAD];
static size_t rlen;

static void logmsg(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("hearth-agent: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void die(const char *what) {
  logmsg("fatal: %s: %s", what, strerror(errno));
  /* Only an init powers the machine off; an agent started by cloud-init just exits. */
  if (!is_pid1) exit(1);
  sync();
  reboot(RB_POWER_OFF);
  _exit(1);
}

static uint64_t now_us(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v & 0xff; p[1] = (v >> 8) & 0xff; p[2] = (v >> 16) & 0xff; p[3] = v >> 24;
}

static void put_u64(unsigned char *p, uint64_t v) {
  put_u32(p, (uint32_t)v);
  put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Writes everything; while the host side is disconnected the port refuses
 * writes, so wait for it to come back rather than drop output. */
static void port_write_all(const unsigned char *buf, size_t len) {
  while (len > 0) {
    /* A vsock host that went away (or a snapshot restore that reset the transport) takes
     * the rest of the frame with it; the next connection starts afresh with a HELLO. */
    if (port_fd < 0) return;
    ssize_t n = port_is_socket ? send(port_fd, buf, len, MSG_NOSIGNAL) : write(port_fd, buf, len);
    if (n > 0) { buf += n; len -= (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (port_is_socket && n < 0 && errno != EAGAIN) { close(port_fd); port_fd = -1; return; }
    usleep(10000);
  }
}

static void send_frame(uint8_t type, uint32_t id, const void *a, size_t alen, const void *b, size_t blen) {
  static unsigned char out[HEADER_SIZE + 16 + READ_CHUNK];
  size_t len = alen + blen;
  out[0] = type;
  put_u32(out + 1, id);
  put_u32(out + 5, (uint32_t)len);
  if (HEADER_SIZE + len <= sizeof out) {
    if (alen) memcpy(out + HEADER_SIZE, a, alen);
    if (blen) memcpy(out + HEADER_SIZE + alen, b, blen);
    port_write_all(out, HEADER_SIZE + len);
  } else {
    port_write_all(out, HEADER_SIZE);
    port_write_all(a, alen);
    port_write_all(b, blen);
  }
}

static void send_hello(void) {
  unsigned char p[4];
  p[0] = PROTOCOL_VERSION & 0xff; p[1] = PROTOCOL_VERSION >> 8;
  p[2] = HELLO_FLAG_IDENTITY_NETWORK & 0xff; p[3] = HELLO_FLAG_IDENTITY_NETWORK >> 8;
  send_frame(F_HELLO, 0, p, 4, AGENT_VERSION, strlen(AGENT_VERSION));
}

static void send_error(uint32_t id, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  send_frame(F_ERROR, id, msg, strlen(msg), NULL, 0);
}

/* A cursor over a payload of u32 integers and u32-length-prefixed byte strings. */
struct cursor { const unsigned char *p; size_t left; int bad; };

static uint32_t take_u32(struct cursor *c) {
  if (c->left < 4) { c->bad = 1; return 0; }
  uint32_t v = get_u32(c->p);
  c->p += 4; c->left -= 4;
  return v;
}

/* Returns a freshly allocated NUL-terminated copy (strings never contain NUL on the host side). */
static char *take_str(struct cursor *c, size_t *len_out) {
  uint32_t n = take_u32(c);
  if (c->bad || c->left < n) { c->bad = 1; return NULL; }
  char *s = malloc(n + 1);
  if (!s) die("malloc");
  memcpy(s, c->p, n);
  s[n] = 0;
  c->p += n; c->left -= n;
  if (len_out) *len_out = n;
  return s;
}

static void write_file(const char *path, const char *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) { logmsg("open %s: %s", path, strerror(errno)); return; }
  if (write(fd, data, len) != (ssize_t)len) logmsg("write %s: %s", path, strerror(errno));
  close(fd);
}

static int configure_eth0(const char *address_cidr, const char *gateway, const char *dns, int replace, char *err, size_t errlen);

/* The NETWORK extension's body: str address/prefix, str gateway, str dns. 0 when applied. */
static int apply_identity_network(const unsigned char *body, size_t len, char *err, size_t errlen) {
  struct cursor c = { body, len, 0 };
  char *address = take_str(&c, NULL), *gateway = take_str(&c, NULL), *dns = take_str(&c, NULL);
  int rc = -1;
  if (c.bad) snprintf(err, errlen, "malformed IDENTITY network extension");
  else rc = configure_eth0(address, gateway, dns, 1, err, errlen);
  free(address); free(gateway); free(dns);
  return rc;
}

/* A restored snapshot clone must not repeat its siblings' random output, hostname,
 * machine-id or stale clock: the host sends fresh values before any command runs. */
static void apply_identity(uint32_t id, const unsigned char *payload, size_t len) {
  struct cursor c = { payload, len, 0 };
  uint32_t lo = take_u32(&c), hi = take_u32(&c);
  char *hostname = take_str(&c, NULL);
  char *machine_id = take_str(&c, NULL);
  size_t seed_len = 0;
  char *seed = take_str(&c, &seed_len);
  char *ext = NULL;
  if (c.bad) { send_error(id, "malformed IDENTITY frame"); goto out; }

  uint64_t unix_us = ((uint64_t)hi << 32) | lo;
  struct timespec ts = { (time_t)(unix_us / 1000000u), (long)(unix_us % 1000000u) * 1000 };
  if (clock_settime(CLOCK_REALTIME, &ts) < 0) logmsg("clock_settime: %s", strerror(errno));

  if (sethostname(hostname, strlen(hostname)) < 0) logmsg("sethostname: %s", strerror(errno));
  char line[300];
  int n = snprintf(line, sizeof line, "%s\n", hostname);
  write_file("/etc/hostname", line, (size_t)n);
  n = snprintf(line, sizeof line, "%s\n", machine_id);
  write_file("/etc/machine-id", line, (size_t)n);

  int rfd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
  if (rfd < 0) { send_error(id, "open /dev/urandom: %s", strerror(errno)); goto out; }
  struct rand_pool_info *info = malloc(sizeof *info + seed_len + 4);
  if (!info) die("malloc");
  info->entropy_count = (int)(seed_len * 8);
  info->buf_size = (int)seed_len;
  memcpy(info->buf, seed, seed_len);
  if (ioctl(rfd, RNDADDENTROPY, info) < 0) logmsg("RNDADDENTROPY: %s", strerror(errno));
  /* Mixing alone only takes effect at the next scheduled reseed; force it now. */
  if (ioctl(rfd, RNDRESEEDCRNG) < 0) logmsg("RNDRESEEDCRNG: %s", strerror(errno));
  free(info);
  close(rfd);

  /* Extensions after the seed: apply the kinds this agent knows, skip the rest by their length. */
  while (c.left > 0) {
    uint32_t kind = take_u32(&c);
    size_t ext_len = 0;
    ext = take_str(&c, &ext_len);
    if (c.bad) { send_error(id, "malformed IDENTITY extension"); goto out; }
    if (kind == IDENTITY_EXT_NETWORK) {
      char err[256];
      if (apply_identity_network((const unsigned char *)ext, ext_len, err, sizeof err) < 0) { send_error(id, "%s", err); goto out; }
    }
    free(ext);
    ext = NULL;
  }
  send_frame(F_IDENTITY_OK, id, NULL, 0, NULL, 0);
out:
  free(hostname); free(machine_id); free(seed); free(ext);
}

static void reap_orphans(pid_t child, int *child_status, int *child_done) {
  struct signalfd_siginfo si;
  while (read(sig_fd, &si, sizeof si) == sizeof si) {}
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p <= 0) break;
    if (p == child) { *child_status = st; *child_done = 1; }
  }
}

static void set_nonblocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Returns 1 when the pipe reached EOF. */
static int forward_pipe(int fd, uint8_t type, uint32_t id, uint64_t start_us) {
  static unsigned char buf[READ_CHUNK];
  unsigned char ts[8];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      put_u64(ts, now_us(CLOCK_MONOTONIC) - start_us);
      send_frame(type, id, ts, 8, buf, (size_t)n);
      continue;
    }
    if (n == 0) return 1;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? 0 : 1;
  }
}

static int frame_ready(void);
static void handle_frame_during_exec(uint32_t exec_id);
static int read_port(void);

static void run_exec(uint32_t id, const unsigned char *payload, size_t len) {
  struct cursor c = { payload, len, 0 };
  uint32_t timeout_ms = take_u32(&c);
  uint32_t argc = take_u32(&c);
  if (c.bad || argc == 0 || argc > 65536) { send_error(id, "malformed EXEC frame: bad argv"); return; }
  char **argv = calloc(argc + 1, sizeof *argv);
  for (uint32_t i = 0; i < argc && !c.bad; i++) argv[i] = take_str(&c, NULL);
  uint32_t envc = take_u32(&c);
  char **envp = calloc((size_t)envc + 1, sizeof *envp);
  if (!argv || !envp) die("calloc");
  for (uint32_t i = 0; i < envc && !c.bad; i++) envp[i] = take_str(&c, NULL);
  char *cwd = take_str(&c, NULL);
  if (c.bad) { send_error(id, "malformed EXEC frame"); goto out; }

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) { send_error(id, "pipe: %s", strerror(errno)); goto out; }
  uint64_t start = now_us(CLOCK_MONOTONIC);
  pid_t pid = fork();
  if (pid < 0) { send_error(id, "fork: %s", strerror(errno)); goto out; }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    if (cwd[0] && chdir(cwd) < 0) {
      dprintf(2, "hearth: cannot enter working directory %s: %s\n", cwd, strerror(errno));
      _exit(1);
    }
    environ = envp;
    execvp(argv[0], argv);
    int e = errno;
    dprintf(2, "hearth: cannot run %s: %s\n", argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  close(out[1]);
  close(err[1]);
  set_nonblocking(out[0]);
  set_nonblocking(err[0]);

  int out_open = 1, err_open = 1, done = 0, status = 0, killed = 0;
  uint64_t backstop = timeout_ms ? start + ((uint64_t)timeout_ms + TIMEOUT_GRACE_MS) * 1000u : 0;
  while (!done) {
    struct pollfd fds[4];
    int nfds = 0, i_out = -1, i_err = -1, i_port = -1;
    fds[nfds] = (struct pollfd){ sig_fd, POLLIN, 0 }; nfds++;
    if (out_open) { i_out = nfds; fds[nfds++] = (struct pollfd){ out[0], POLLIN, 0 }; }
    if (err_open) { i_err = nfds; fds[nfds++] = (struct pollfd){ err[0], POLLIN, 0 }; }
    i_port = nfds; fds[nfds++] = (struct pollfd){ port_fd, POLLIN, 0 };
    if (poll(fds, (nfds_t)nfds, 200) < 0 && errno != EINTR) die("poll");
    if (i_out >= 0 && fds[i_out].revents) out_open = !forward_pipe(out[0], F_STDOUT, id, start);
    if (i_err >= 0 && fds[i_err].revents) err_open = !forward_pipe(err[0], F_STDERR, id, start);
    if (fds[i_port].revents & POLLIN) {
      if (read_port()) while (frame_ready()) handle_frame_during_exec(id);
    } else if (fds[i_port].revents & POLLHUP) {
      usleep(10000); /* host disconnected: the port polls as hung up until it returns */
    }
    if (fds[0].revents) reap_orphans(pid, &status, &done);
    if (backstop && !killed && now_us(CLOCK_MONOTONIC) > backstop) { kill(-pid, SIGKILL); killed = 1; }
  }
  /* The command has exited; take what it left in the pipes but do not wait for
   * background processes that inherited them (a step may start a daemon). */
  if (out_open) forward_pipe(out[0], F_STDOUT, id, start);
  if (err_open) forward_pipe(err[0], F_STDERR, id, start);
  close(out[0]);
  close(err[0]);

  unsigned char ex[16];
  int32_t code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  int32_t sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  put_u32(ex, (uint32_t)code);
  put_u32(ex + 4, (uint32_t)sig);
  put_u64(ex + 8, now_us(CLOCK_MONOTONIC) - start);
  send_frame(F_EXIT, id, ex, sizeof ex, NULL, 0);
out:
  for (uint32_t i = 0; i < argc; i++) free(argv[i]);
  for (uint32_t i = 0; i < envc; i++) free(envp[i]);
  free(argv); free(envp); free(cwd);
}

/* Reads what the port has; returns 0 when nothing arrived (host gone or no data). */
static int read_port(void) {
  if (rlen == sizeof rbuf) return 1;
  if (port_fd < 0) return 0;
  ssize_t n = read(port_fd, rbuf + rlen, sizeof rbuf - rlen);
  if (n > 0) { rlen += (size_t)n; return 1; }
  if (port_is_socket && (n == 0 || errno != EINTR)) { close(port_fd); port_fd = -1; }
  return 0;
}

static int vsock_listen(unsigned port) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("vsock socket");
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("vsock bind");
  if (listen(fd, 4) < 0) die("vsock listen");
  return fd;
}

/* One host connection at a time; a new one replaces a lost one. */
static int accept_host(void) {
  for (;;) {
    int fd = accept4(vsock_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno != EINTR) usleep(10000);
  }
}

static int frame_ready(void) {
  if (rlen < HEADER_SIZE) return 0;
  uint32_t len = get_u32(rbuf + 5);
  if (len > MAX_PAYLOAD) {
    /* Unrecoverable framing error: drop everything and tell the host. */
    rlen = 0;
    send_error(0, "frame of %u bytes exceeds the %u byte limit", len, MAX_PAYLOAD);
    return 0;
  }
  return rlen >= HEADER_SIZE + len;
}

static void consume_frame(void) {
  size_t total = HEADER_SIZE + get_u32(rbuf + 5);
  memmove(rbuf, rbuf + total, rlen - total);
  rlen -= total;
}

static void handle_frame_during_exec(uint32_t exec_id) {
  uint8_t type = rbuf[0];
  uint32_t id = get_u32(rbuf + 1);
  if (type == F_PING) send_hello();
  else send_error(id, "busy running command %u; frame type %u refused", exec_id, type);
  consume_frame();
}

static void handle_frame(void) {
  uint8_t type = rbuf[0];
  uint32_t id = get_u32(rbuf + 1);
  uint32_t len = get_u32(rbuf + 5);
  /* EXEC and IDENTITY copy their payload first: run_exec reads more frames. */
  unsigned char *copy = NULL;
  if (type == F_EXEC || type == F_IDENTITY) {
    copy = malloc(len ? len : 1);
    if (!copy) die("malloc");
    memcpy(copy, rbuf + HEADER_SIZE, len);
  }
  consume_frame();
  switch (type) {
  case F_PING: send_hello(); break;
  case F_IDENTITY:
    /* Clock, hostname and machine-id belong to the guest's init; an agent started by cloud-init leaves them alone. */
    if (is_pid1) apply_identity(id, copy, len);
    else send_error(id, "IDENTITY is only applied by the agent running as PID 1");
    break;
  case F_EXEC: run_exec(id, copy, len); break;
  default: send_error(id, "unknown frame type %u", type);
  }
  free(copy);
}

static int cmdline_has(const char *cmdline, const char *word) {
  size_t n = strlen(word);
  for (const char *p = cmdline; (p = strstr(p, word)) != NULL; p += n) {
    if ((p == cmdline || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0)) return 1;
  }
  return 0;
}

static void cmdline_value(const char *cmdline, const char *key, char *out, size_t outlen) {
  size_t n = strlen(key);
  out[0] = 0;
  for (const char *p = cmdline; (p = strstr(p, key)) != NULL; p += n) {
    if ((p == cmdline || p[-1] == ' ') && p[n] == '=') {
      size_t i = 0;
      for (p += n + 1; *p && *p != ' ' && *p != '\n' && i + 1 < outlen; p++) out[i++] = *p;
      out[i] = 0;
      return;
    }
  }
}

static void load_modules(void) {
  FILE *f = fopen("/etc/hearth/modules", "re");
  if (!f) return;
  char path[512];
  while (fgets(path, sizeof path, f)) {
    path[strcspn(path, "\n")] = 0;
    if (!path[0]) continue;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { logmsg("module %s: %s", path, strerror(errno)); continue; }
    if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST) logmsg("load %s: %s", path, strerror(errno));
    close(fd);
  }
  fclose(f);
}

static void interface_up(const char *name) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) logmsg("up %s: %s", name, strerror(errno));
  }
  close(s);
}

static void set_sockaddr(struct sockaddr *sa, const char *address) {
  struct sockaddr_in *in = (struct sockaddr_in *)sa;
  memset(in, 0, sizeof *in);
  in->sin_family = AF_INET;
  inet_pton(AF_INET, address, &in->sin_addr);
}

static int valid_ipv4(const char *text) {
  struct in_addr a;
  return text && inet_pton(AF_INET, text, &a) == 1;
}

/*
 * Static set-up of eth0 by ioctl (no DHCP round trip, no `ip` binary, which a
 * Debian minbase root lacks): address/prefix, default route, /etc/resolv.conf.
 * With `replace` (a restored clone re-addressed by IDENTITY), the default
 * routes are deleted first and the old address is replaced in place. Returns
 * 0, or -1 with the reason in err.
 */
static int configure_eth0(const char *address_cidr, const char *gateway, const char *dns, int replace, char *err, size_t errlen) {
  char address[32], prefix_text[8] = "24";
  snprintf(address, sizeof address, "%s", address_cidr);
  char *slash = strchr(address, '/');
  if (slash) { snprintf(prefix_text, sizeof prefix_text, "%s", slash + 1); *slash = 0; }
  char *end = NULL;
  unsigned long prefix = strtoul(prefix_text, &end, 10);
  if (!valid_ipv4(address) || !valid_ipv4(gateway) || !valid_ipv4(dns) || !end || *end || prefix > 32) {
    snprintf(err, errlen, "eth0: bad address %s, gateway %s or dns %s", address_cidr, gateway, dns);
    return -1;
  }
  uint32_t mask = prefix == 0 ? 0 : htonl(0xffffffffu << (32 - prefix));
  char netmask[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &mask, netmask, sizeof netmask);

  for (int i = 0; i < 500 && access("/sys/class/net/eth0", F_OK) != 0; i++) usleep(10000);
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) { snprintf(err, errlen, "eth0: socket: %s", strerror(errno)); return -1; }
  int rc = 0;
  struct rtentry route;
  if (replace) {
    /* Every default route goes: the old one points at the snapshot's gateway, no longer on this link. */
    for (int i = 0; i < 16; i++) {
      memset(&route, 0, sizeof route);
      set_sockaddr(&route.rt_dst, "0.0.0.0");
      set_sockaddr(&route.rt_genmask, "0.0.0.0");
      route.rt_flags = RTF_UP;
      if (ioctl(s, SIOCDELRT, &route) < 0) break;
    }
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "eth0", IFNAMSIZ - 1);
  /* SIOCSIFADDR replaces eth0's primary address (and its connected route) in place. */
  set_sockaddr(&ifr.ifr_addr, address);
  if (ioctl(s, SIOCSIFADDR, &ifr) < 0) { snprintf(err, errlen, "eth0 address %s: %s", address, strerror(errno)); rc = -1; }
  set_sockaddr(&ifr.ifr_netmask, netmask);
  if (rc == 0 && ioctl(s, SIOCSIFNETMASK, &ifr) < 0) { snprintf(err, errlen, "eth0 netmask %s: %s", netmask, strerror(errno)); rc = -1; }
  close(s);
  if (rc < 0) { logmsg("%s", err); return -1; }
  interface_up("eth0");
  memset(&route, 0, sizeof route);
  set_sockaddr(&route.rt_dst, "0.0.0.0");
  set_sockaddr(&route.rt_genmask, "0.0.0.0");
  set_sockaddr(&route.rt_gateway, gateway);
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (ioctl(s, SIOCADDRT, &route) < 0 && errno != EEXIST) { snprintf(err, errlen, "default route via %s: %s", gateway, strerror(errno)); rc = -1; }
  close(s);
  char resolv[64];
  int n = snprintf(resolv, sizeof resolv, "nameserver %s\n", dns);
  write_file("/etc/resolv.conf", resolv, (size_t)n);
  if (rc < 0) logmsg("%s", err);
  return rc;
}

/*
 * At boot: defaults are QEMU user-mode networking's fixed addresses; a TAP
 * network passes its own: hearth.ip=A.B.C.D/PREFIX hearth.gw= hearth.dns=.
 */
static void network_up(const char *cmdline) {
  char address[32], gateway[32], dns[32], err[256];
  cmdline_value(cmdline, "hearth.ip", address, sizeof address);
  cmdline_value(cmdline, "hearth.gw", gateway, sizeof gateway);
  cmdline_value(cmdline, "hearth.dns", dns, sizeof dns);
  if (!address[0]) snprintf(address, sizeof address, "10.0.2.15/24");
  if (!gateway[0]) snprintf(gateway, sizeof gateway, "10.0.2.2");
  if (!dns[0]) snprintf(dns, sizeof dns, "10.0.2.3");
  if (configure_eth0(address, gateway, dns, 0, err, sizeof err) < 0) logmsg("network: %s", err);
}

static int open_agent_port(const char *name) {
  char path[300], found[256];
  for (int tries = 0; tries < 2000; tries++) {
    DIR *d = opendir("/sys/class/virtio-ports");
    found[0] = 0;
    if (d) {
      struct dirent *e;
      while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        char buf[128] = {0};
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) buf[strcspn(buf, "\n")] = 0;
        if (strcmp(buf, name) == 0) { snprintf(found, sizeof found, "%s", e->d_name); break; }
      }
      closedir(d);
    }
    if (found[0]) {
      snprintf(path, sizeof path, "/dev/%s", found);
      int fd = open(path, O_RDWR | O_CLOEXEC);
      if (fd >= 0) return fd;
    }
    usleep(5000);
  }
  errno = ENODEV;
  die("virtio-serial port not found");
  return -1;
}

/* The ext4 volume label sits at byte 0x78 of the superblock, which starts at 1024. */
static int ext4_label_is(const char *dev, const char *label) {
  char buf[17] = {0};
  int fd = open(dev, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = pread(fd, buf, 16, 1024 + 0x78);
  close(fd);
  return n == 16 && strcmp(buf, label) == 0;
}

/* Disks are found by label, not by name: virtio-mmio probe order is not the command-line order. */
static int find_disk(const char *label, char *out, size_t outlen) {
  for (int tries = 0; tries < 500; tries++) {
    for (char c = 'a'; c <= 'h'; c++) {
      char dev[16];
      snprintf(dev, sizeof dev, "/dev/vd%c", c);
      if (ext4_label_is(dev, label)) { snprintf(out, outlen, "%s", dev); return 1; }
    }
    usleep(10000);
  }
  return 0;
}

static void mount_fs(const char *src, const char *target, const char *type, unsigned long flags, const char *data);

/* rootfs images: mount the disk labelled hearth-root and make it / (the initramfs stays
 * underneath, unused). The agent keeps running as PID 1 in the new root. */
static void switch_to_disk_root(void) {
  char dev[16];
  if (!find_disk("hearth-root", dev, sizeof dev)) { errno = ENODEV; die("disk labelled hearth-root not found"); }
  mkdir("/newroot", 0755);
  if (mount(dev, "/newroot", "ext4", 0, NULL) < 0) die("mount root disk");
  const char *moved[] = { "/proc", "/sys", "/dev", "/run", "/tmp" };
  for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
    char target[64];
    snprintf(target, sizeof target, "/newroot%s", moved[i]);
    mkdir(target, 0755);
    if (mount(moved[i], target, NULL, MS_MOVE, NULL) < 0) logmsg("move %s: %s", moved[i], strerror(errno));
  }
  if (chdir("/newroot") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0) die("switch to the root disk");
}

/* The host's copy of a working tree, when given, is mounted read-only for checkout steps to copy from. */
static void mount_source_disk(void) {
  char dev[16];
  if (!find_disk("hearth-src", dev, sizeof dev)) { logmsg("disk labelled hearth-src not found"); return; }
  mkdir("/mnt", 0755);
  mount_fs(dev, "/mnt/hearth-src", "ext4", MS_RDONLY, NULL);
}

static void mount_fs(const char *src, const char *target, const char *type, unsigned long flags, const char *data) {
  mkdir(target, 0755);
  if (mount(src, target, type, flags, data) < 0 && errno != EBUSY) logmsg("mount %s: %s", target, strerror(errno));
}

/* ---- connect-back (Flintlock hosts) ---------------------------------------- */

static void sleep_ms(unsigned ms) {
  struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* tcp://IPV4:PORT or tcp://[IPV6]:PORT (a path after the port is ignored). Addresses
 * only: name resolution would need NSS libraries the static guest does not have. */
static int parse_connect_url(const char *url, struct sockaddr_storage *ss, socklen_t *len) {
  char host[64];
  const char *colon;
  if (strncmp(url, "tcp://", 6) != 0) return -1;
  const char *h = url + 6;
  if (*h == '[') {
    const char *end = strchr(h, ']');
    if (!end || end[1] != ':' || (size_t)(end - h - 1) >= sizeof host) return -1;
    memcpy(host, h + 1, (size_t)(end - h - 1));
    host[end - h - 1] = 0;
    colon = end + 1;
  } else {
    colon = strchr(h, ':');
    if (!colon || (size_t)(colon - h) >= sizeof host) return -1;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = 0;
  }
  char *end;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (end == colon + 1 || (*end != 0 && *end != '/') || port == 0 || port > 65535) return -1;
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    *len = sizeof *in4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    *len = sizeof *in6;
    return 0;
  }
  return -1;
}

/* Printable ASCII without spaces, so it fits the hello line unambiguously. */
static int token_valid(const char *t) {
  size_t n = strlen(t);
  if (n == 0 || n > MAX_TOKEN) return 0;
  for (size_t i = 0; i < n; i++) if (t[i] < 0x21 || t[i] > 0x7e) return 0;
  return 1;
}

/*
 * The value of KEY in an env file as src/vm/flintlock/cloud-init.ts writes it
 * (KEY='value', a quote inside as '\''), read with sh's rules for bare words,
 * single quotes, double quotes (no expansion) and backslashes; the last
 * assignment wins, as in sh. Returns 1 when found.
 */
static int env_file_value(const char *path, const char *key, char *out, size_t outlen) {
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  char line[1024];
  size_t klen = strlen(key);
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (strncmp(p, "export ", 7) == 0) p += 7;
    if (strncmp(p, key, klen) != 0 || p[klen] != '=') continue;
    p += klen + 1;
    size_t i = 0;
    int ok = 1;
    while (*p && *p != ' ' && *p != '\t' && ok) {
      char quote = (*p == '\'' || *p == '"') ? *p++ : 0;
      if (quote) {
        while (*p && *p != quote && i + 1 < outlen) out[i++] = *p++;
        if (*p != quote) ok = 0;
        else p++;
      } else if (*p == '\\' && p[1]) {
        if (i + 1 < outlen) out[i++] = p[1];
        else ok = 0;
        p += 2;
      } else if (i + 1 < outlen) {
        out[i++] = *p++;
      } else {
        ok = 0;
      }
    }
    out[i] = 0;
    found = ok;
  }
  explicit_bzero(line, sizeof line);
  fclose(f);
  return found;
}

/* Takes HEARTH_AGENT_TOKEN out of the environment: children must not inherit it, and
 * /proc/PID/environ shows the original block, so the value is scrubbed there too. */
static int take_env_token(void) {
  char *t = getenv("HEARTH_AGENT_TOKEN");
  if (!t) return 0;
  size_t n = strlen(t);
  int ok = n <= MAX_TOKEN;
  if (ok) memcpy(token, t, n + 1);
  explicit_bzero(t, n);
  unsetenv("HEARTH_AGENT_TOKEN");
  return ok;
}

/*
 * One attempt: connect, send the hello line, read the host's one-line answer.
 * Returns the authenticated socket, -1 to try again later, -2 when the host
 * refused the token.
 */
static int dial_once(const struct sockaddr *sa, socklen_t salen, const char *url) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) { logmsg("socket: %s", strerror(errno)); return -1; }
  int err = 0;
  if (connect(fd, sa, salen) < 0) {
    if (errno != EINPROGRESS) err = errno;
    else {
      struct pollfd p = { fd, POLLOUT, 0 };
      int r = poll(&p, 1, CONNECT_TIMEOUT_MS);
      socklen_t elen = sizeof err;
      if (r == 0) err = ETIMEDOUT;
      else if (r < 0) err = errno;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) err = errno;
    }
  }
  if (err) { logmsg("connect to %s: %s", url, strerror(err)); close(fd); return -1; }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);

  char hello[sizeof CONNECT_MAGIC + 16 + MAX_TOKEN];
  int n = snprintf(hello, sizeof hello, "%s %d %s\n", CONNECT_MAGIC, CONNECT_VERSION, token);
  ssize_t w = send(fd, hello, (size_t)n, MSG_NOSIGNAL);
  int werr = errno;
  explicit_bzero(hello, sizeof hello);
  if (w != n) { logmsg("sending the hello to %s: %s", url, w < 0 ? strerror(werr) : "short write"); close(fd); return -1; }

  /* Byte by byte: whatever follows the answer line is already the host's first frame. */
  char answer[64];
  size_t len = 0;
  uint64_t deadline = now_us(CLOCK_MONOTONIC) + (uint64_t)ANSWER_TIMEOUT_MS * 1000u;
  for (;;) {
    uint64_t now = now_us(CLOCK_MONOTONIC);
    if (now >= deadline) { logmsg("%s did not answer the hello within %d ms", url, ANSWER_TIMEOUT_MS); close(fd); return -1; }
    struct pollfd p = { fd, POLLIN, 0 };
    if (poll(&p, 1, (int)((deadline - now) / 1000u) + 1) <= 0) continue;
    ssize_t k = read(fd, answer + len, 1);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) { logmsg("%s closed the connection before answering the hello%s%s", url, k < 0 ? ": " : "", k < 0 ? strerror(errno) : ""); close(fd); return -1; }
    if (answer[len] == '\n') break;
    if (answer[len] < 0x20 || answer[len] > 0x7e || ++len == sizeof answer - 1) { logmsg("%s answered the hello with something other than a line", url); close(fd); return -1; }
  }
  answer[len] = 0;
  if (strcmp(answer, "OK") == 0) return fd;
  logmsg("%s refused this agent (%s): its token is not expected there (a stale or wrong token, or the VM was given up on)", url, answer);
  close(fd);
  return -2;
}

/* Dials until the host accepts, backing off from BACKOFF_MIN_MS to BACKOFF_MAX_MS between attempts. */
static int connect_host(const struct sockaddr_storage *ss, socklen_t len, const char *url) {
  unsigned backoff = BACKOFF_MIN_MS;
  for (unsigned attempt = 1;; attempt++) {
    int fd = dial_once((const struct sockaddr *)ss, len, url);
    if (fd >= 0) {
      logmsg("connected to %s after %u attempt%s", url, attempt, attempt == 1 ? "" : "s");
      return fd;
    }
    /* A little jitter, so many guests that lost the host do not come back in step. */
    unsigned wait = backoff + (unsigned)(now_us(CLOCK_MONOTONIC) % (backoff / 4 + 1));
    logmsg("retrying in %u ms", wait);
    sleep_ms(wait);
    backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
  }
}

/* The host closed an authenticated session: it is done with this VM, so is the agent. */
static void end_session(void) {
  logmsg("the host ended the session");
  if (!is_pid1) exit(0);
  sync();
  reboot(RB_POWER_OFF);
  _exit(0);
}

/* Connect-back setup: URL and token checked, then dial. Exits 2 on a bad configuration. */
static void start_connect(const char *url) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  if (!url || !url[0]) { logmsg("no URL to connect to: give --connect tcp://HOST:PORT, hearth.connect= or HEARTH_AGENT_URL in %s", AGENT_ENV_PATH); goto bad; }
  if (parse_connect_url(url, &ss, &len) < 0) { logmsg("%s is not tcp://IPV4:PORT or tcp://[IPV6]:PORT", url); goto bad; }
  if (!token[0]) { logmsg("no token: set HEARTH_AGENT_TOKEN or write it to %s", AGENT_ENV_PATH); goto bad; }
  if (!token_valid(token)) { logmsg("the token is longer than %d bytes or holds spaces or control characters", MAX_TOKEN); goto bad; }
  connect_mode = 1;
  port_is_socket = 1;
  port_fd = connect_host(&ss, len, url);
  /* Good for this one session only: nothing needs it any more. */
  explicit_bzero(token, sizeof token);
  return;
bad:
  if (is_pid1) { errno = EINVAL; die("connect-back configuration"); }
  exit(2);
}

static void serve(void) __attribute__((noreturn));
static void serve(void) {
  send_hello();
  for (;;) {
    if (port_fd < 0) {
      if (connect_mode) end_session();
      rlen = 0;
      port_fd = accept_host();
      send_hello();
    }
    struct pollfd fds[2] = { { port_fd, POLLIN, 0 }, { sig_fd, POLLIN, 0 } };
    if (poll(fds, 2, -1) < 0 && errno != EINTR) die("poll");
    if (fds[1].revents) { int st, done = 0; reap_orphans(-1, &st, &done); }
    if (fds[0].revents & POLLIN) {
      if (read_port()) while (frame_ready()) handle_frame();
    } else if (fds[0].revents & (POLLHUP | POLLERR)) {
      if (port_is_socket) { close(port_fd); port_fd = -1; }
      else usleep(10000);
    }
  }
}

static void watch_children(void) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sig_fd < 0) die("signalfd");
}

int main(int argc, char **argv) {
  /* As PID 1 the kernel may pass words of its cmdline as arguments; only --connect means anything. */
  const char *connect_url = NULL;
  if (argc == 3 && strcmp(argv[1], "--connect") == 0) connect_url = argv[2];
  is_pid1 = getpid() == 1;
  if (!is_pid1) {
    if (!connect_url) {
      fprintf(stderr, "hearth-agent runs as PID 1 inside a Hearth microVM; it is not meant to be started by hand\n"
                      "(in a VM that Hearth cannot reach, start it as: HEARTH_AGENT_TOKEN=... hearth-agent --connect tcp://HOST:PORT)\n");
      return 2;
    }
    /* An ordinary process (started by cloud-init): no mounts, no modules, no network set-up. */
    watch_children();
    if (!take_env_token()) env_file_value(AGENT_ENV_PATH, "HEARTH_AGENT_TOKEN", token, sizeof token);
    start_connect(connect_url);
    serve();
  }
  mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
  mount_fs("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount_fs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");

  watch_children();

  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  setenv("HOME", "/root", 1);

  char cmdline[4096] = {0};
  int cfd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (cfd >= 0) { ssize_t n = read(cfd, cmdline, sizeof cmdline - 1); (void)n; close(cfd); }

  load_modules();
  if (cmdline_has(cmdline, "hearth.root=disk")) switch_to_disk_root();
  if (cmdline_has(cmdline, "hearth.src=disk")) mount_source_disk();
  interface_up("lo");
  if (cmdline_has(cmdline, "hearth.net=1")) network_up(cmdline);

  char port_name[64], vsock_port[16], url[300];
  cmdline_value(cmdline, "hearth.port", port_name, sizeof port_name);
  cmdline_value(cmdline, "hearth.vsock", vsock_port, sizeof vsock_port);
  cmdline_value(cmdline, "hearth.connect", url, sizeof url);
  if (vsock_port[0]) {
    vsock_fd = vsock_listen((unsigned)strtoul(vsock_port, NULL, 10));
    port_is_socket = 1;
    port_fd = accept_host();
  } else if (connect_url || url[0] || access(AGENT_ENV_PATH, F_OK) == 0) {
    /* The kernel hands unknown key=value words of its cmdline to PID 1 as environment:
     * a token there was on the cmdline, which the host shows to anyone. */
    if (take_env_token()) { token[0] = 0; logmsg("ignoring HEARTH_AGENT_TOKEN from the kernel command line; it belongs in %s", AGENT_ENV_PATH); }
    env_file_value(AGENT_ENV_PATH, "HEARTH_AGENT_TOKEN", token, sizeof token);
    if (connect_url) snprintf(url, sizeof url, "%s", connect_url);
    else if (!url[0]) env_file_value(AGENT_ENV_PATH, "HEARTH_AGENT_URL", url, sizeof url);
    start_connect(url);
  } else {
    port_fd = open_agent_port(port_name[0] ? port_name : "hearth.agent");
  }
  serve();
}
