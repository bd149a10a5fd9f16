/* sessionprobe.c: mailha.lab.sessionprobe in C, for the emulated VM.
 *
 * The Python prober costs ~0.5 ms of CPU per session on the host, 10-30x that under
 * qemu TCG: at 50 sessions/s it cannot keep the rate in a VM that also runs two
 * mailha, two Postfix and the benchmark. Same job, same output (see
 * mailha/lab/sessionprobe.py): a new TCP session to HOST:PORT every INTERVAL s,
 * read the first line, "220..." = ok, send QUIT, close; refused, reset, closed or no
 * line within TIMEOUT s = failed. One line per finished session on stdout:
 *
 *     S <started> <ended> <1|0> <error>       (CLOCK_MONOTONIC seconds)
 *
 * SIGTERM: start no more sessions, let those in flight finish, exit.
 * Build: cc -O2 -o sessionprobe sessionprobe.c
 * Run:   sessionprobe HOST PORT INTERVAL TIMEOUT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_IN_FLIGHT 256

struct session {
    int fd; /* -1: slot free */
    int connected;
    double started, deadline;
    char line[64];
    size_t len;
};

static volatile sig_atomic_t stopping;
static struct session sessions[MAX_IN_FLIGHT];
static int in_flight;

static void on_term(int sig) { (void)sig; stopping = 1; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *error_name(int err) {
    static char other[32];
    switch (err) {
    case ECONNREFUSED: return "ConnectionRefusedError";
    case ECONNRESET: return "ConnectionResetError";
    case ETIMEDOUT: return "TimeoutError";
    case EHOSTUNREACH: case ENETUNREACH: return "OSError-unreachable";
    default: snprintf(other, sizeof other, "OSError-%d", err); return other;
    }
}

static void finish(int epfd, struct session *s, int ok, const char *error) {
    if (ok) {
        ssize_t r = send(s->fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
    in_flight--;
    printf("S %.6f %.6f %d %s\n", s->started, now(), ok, ok ? "-" : error);
}

static void start_one(int epfd, const struct sockaddr_in *addr, double timeout) {
    int slot;
    for (slot = 0; slot < MAX_IN_FLIGHT && sessions[slot].fd >= 0; slot++)
        ;
    if (slot == MAX_IN_FLIGHT)
        return;
    struct session *s = &sessions[slot];
    double t = now();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        printf("S %.6f %.6f 0 %s\n", t, now(), error_name(errno));
        return;
    }
    s->fd = fd;
    s->connected = 0;
    s->started = t;
    s->deadline = t + timeout;
    s->len = 0;
    in_flight++;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
        int err = errno;
        s->fd = fd;
        struct epoll_event ev = {.events = 0, .data.u32 = (unsigned)slot};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        finish(epfd, s, 0, error_name(err));
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (unsigned)slot};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void on_event(int epfd, struct session *s, unsigned events) {
    if (!s->connected) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            finish(epfd, s, 0, error_name(err));
            return;
        }
        s->connected = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)(s - sessions)};
        epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            return;
    }
    ssize_t n = recv(s->fd, s->line + s->len, sizeof s->line - 1 - s->len, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        finish(epfd, s, 0, error_name(errno));
        return;
    }
    s->len += (size_t)n;
    s->line[s->len] = '\0';
    if (n == 0 || strchr(s->line, '\n') || s->len == sizeof s->line - 1) {
        int ok = strncmp(s->line, "220", 3) == 0;
        finish(epfd, s, ok, n == 0 && s->len == 0 ? "banner-b''" : "banner-not-220");
    }
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT INTERVAL TIMEOUT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "sessionprobe: not an IPv4 address: %s\n", argv[1]);
        return 2;
    }
    double interval = atof(argv[3]), timeout = atof(argv[4]);
    if (interval <= 0 || timeout <= 0) {
        fprintf(stderr, "sessionprobe: INTERVAL and TIMEOUT must be > 0\n");
        return 2;
    }
    for (int i = 0; i < MAX_IN_FLIGHT; i++)
        sessions[i].fd = -1;
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    double next_at = now(), flushed = now();
    struct epoll_event events[64];
    while (!stopping || in_flight > 0) {
        double t = now();
        if (!stopping && t >= next_at) {
            start_one(epfd, &addr, timeout);
            next_at += interval;
            if (next_at < t) /* fell behind: skip the missed slots, do not burst */
                next_at = t + interval;
        }
        double wake = stopping ? t + 0.05 : next_at;
        for (int i = 0; i < MAX_IN_FLIGHT; i++)
            if (sessions[i].fd >= 0 && sessions[i].deadline < wake)
                wake = sessions[i].deadline;
        if (flushed + 0.2 < wake)
            wake = flushed + 0.2;
        int ms = (int)((wake - now()) * 1000 + 0.999);
        int n = epoll_wait(epfd, events, 64, ms < 0 ? 0 : ms);
        for (int i = 0; i < n; i++) {
            struct session *s = &sessions[events[i].data.u32];
            if (s->fd >= 0)
                on_event(epfd, s, events[i].events);
        }
        t = now();
        for (int i = 0; i < MAX_IN_FLIGHT; i++)
            if (sessions[i].fd >= 0 && sessions[i].deadline <= t)
                finish(epfd, &sessions[i], 0, "TimeoutError");
        if (t - flushed >= 0.2) {
            fflush(stdout);
            flushed = t;
        }
    }
    fflush(stdout);
    return 0;
}
