/* Closed-loop ping-pong load generator for uppercase echo servers.
 *
 *   loadgen --port P [--conns N] [--size M] [--duration S] [--warmup S]
 *           [--connect-timeout S] [--server-pid PID]
 *
 * Opens N TCP connections to 127.0.0.1:P (only loopback: there is no host
 * option), one after the other, and proves each is served with a small
 * handshake round trip before opening the next (so a server with a tiny
 * listen() backlog is not flooded with SYNs).  Then every connection runs
 * closed-loop ping-pong on one epoll loop, non-blocking: send a message of M
 * bytes, wait for all M echo bytes, check them byte for byte against the
 * message uppercased (a-z -> A-Z, every other byte unchanged), send the next.
 * Messages are slices of a pattern holding all 256 byte values, at a
 * different offset for every message, so a server that echoes a stale buffer
 * or skips the transform is caught.
 *
 * Warm-up: for --warmup seconds (and until every connection has completed a
 * round trip) nothing is counted.  Then round trips completing within the
 * next --duration seconds are counted and their latencies (first byte sent
 * to last byte received, CLOCK_MONOTONIC) kept and sorted for p50/p99.
 * The program stops by itself after that; the whole run is bounded by
 * connect-timeout + warmup + duration (+ 10 s for a warm-up that never
 * completes).
 *
 * CPU: the generator's own user+system time over the measured window, and,
 * given --server-pid, the server process's (all its threads, from
 * /proc/PID/stat), each as a fraction of one core; and the server's minor
 * page faults per round trip (about 1 when its allocator maps and unmaps a
 * buffer for every read).
 *
 * Output: one JSON object on stdout.  "errors" counts wrong echo bytes,
 * extra bytes, connections closed or reset by the server and connections
 * that could not be set up; any error invalidates the run (exit status 1).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_LEN 4093 /* prime, so offsets cycle through every alignment */
#define MAX_SAMPLES (32u * 1024u * 1024u)

struct conn {
    int fd;
    int alive;
    size_t off;        /* where this message starts in the pattern */
    size_t sent;       /* bytes of the message sent */
    size_t received;   /* echo bytes received */
    int want_out;      /* registered for EPOLLOUT */
    uint64_t t_start;  /* ns, first byte sent */
    uint64_t done;     /* round trips completed (including warm-up) */
};

static unsigned char *pattern, *upper_pattern;
static size_t msg_size = 1024;
static uint64_t *samples;
static size_t nsamples, samples_cap;
static uint64_t counted;
static long errors;
static char first_error[256];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 1, 2)))
static void error_note(const char *fmt, ...) {
    errors++;
    if (!first_error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(first_error, sizeof first_error, fmt, ap);
        va_end(ap);
    }
}

static void add_sample(uint64_t v) {
    if (nsamples == samples_cap) {
        if (samples_cap >= MAX_SAMPLES)
            return; /* enough for percentiles; still counted */
        samples_cap = samples_cap ? samples_cap * 2 : 65536;
        samples = realloc(samples, samples_cap * sizeof *samples);
        if (!samples) { perror("realloc"); exit(2); }
    }
    samples[nsamples++] = v;
}

/* utime + stime of a process, in seconds, and its minor page faults; -1 if unknown. */
static double proc_cpu(long pid, double *minflt) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1.0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1.0;
    unsigned long long mf = 0, ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu %*u %*u %*u %llu %llu", &mf, &ut, &st) != 3)
        return -1.0;
    *minflt = (double)mf;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p) {
    if (!nsamples) return 0.0;
    size_t i = (size_t)(p * (double)(nsamples - 1) + 0.5);
    return (double)samples[i] / 1000.0; /* microseconds */
}

static void set_events(int ep, struct conn *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void kill_conn(int ep, struct conn *c) {
    if (!c->alive) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->alive = 0;
}

/* Send as much of the current message as the socket takes. */
static void pump_send(int ep, struct conn *c, size_t idx) {
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, pattern + c->off + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n > 0) { c->sent += (size_t)n; continue; }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { set_events(ep, c, 1); return; }
        if (n < 0 && errno == EINTR) continue;
        error_note("connection %ld: send failed (errno %d)", (long)idx, errno);
        kill_conn(ep, c);
        return;
    }
    set_events(ep, c, 0);
}

static void start_message(int ep, struct conn *c, size_t idx) {
    c->off = (idx * 7919u + c->done * 131u) % PATTERN_LEN;
    c->sent = 0;
    c->received = 0;
    c->t_start = now_ns();
    pump_send(ep, c, idx);
}

static double arg_double(const char *s, const char *name) {
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0) { fprintf(stderr, "loadgen: bad %s: %s\n", name, s); exit(2); }
    return v;
}

/* One blocking handshake round trip proves the server has accepted us. */
static int handshake(int fd, size_t idx) {
    static const unsigned char hello[] = "hello, Echo! 0123 xyz\n";
    const size_t len = sizeof hello - 1;
    unsigned char buf[64];
    size_t got = 0;
    if (send(fd, hello, len, MSG_NOSIGNAL) != (ssize_t)len) return -1;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char want = hello[i] >= 'a' && hello[i] <= 'z' ? hello[i] - 32 : hello[i];
        if (buf[i] != want) {
            error_note("connection %ld: handshake byte %zu wrong (0x%02x)", (long)idx, i,
                       buf[i]);
            return -2;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    int port = 0;
    long nconns = 1, server_pid = 0;
    double duration = 2.0, warmup = 0.5, connect_timeout = 20.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "loadgen: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--conns")) nconns = atol(v);
        else if (!strcmp(a, "--size")) msg_size = (size_t)atol(v);
        else if (!strcmp(a, "--duration")) duration = arg_double(v, a);
        else if (!strcmp(a, "--warmup")) warmup = arg_double(v, a);
        else if (!strcmp(a, "--connect-timeout")) connect_timeout = arg_double(v, a);
        else if (!strcmp(a, "--server-pid")) server_pid = atol(v);
        else { fprintf(stderr, "loadgen: unknown option %s\n", a); return 2; }
        i++;
    }
    if (port <= 0 || port > 65535 || nconns < 1 || nconns > 100000 || msg_size < 1 ||
        msg_size > 16u * 1024u * 1024u || duration <= 0 || duration > 600) {
        fprintf(stderr, "usage: loadgen --port P [--conns N] [--size BYTES] [--duration S] "
                        "[--warmup S] [--connect-timeout S]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* pattern[i] = i mod 256, repeated: every byte value, lowercase included. */
    pattern = malloc(PATTERN_LEN + msg_size);
    upper_pattern = malloc(PATTERN_LEN + msg_size);
    unsigned char *rbuf = malloc(msg_size < 65536 ? 65536 : msg_size);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!pattern || !upper_pattern || !rbuf || !conns) { perror("malloc"); return 2; }
    for (size_t i = 0; i < PATTERN_LEN + msg_size; i++) {
        unsigned char b = (unsigned char)((i * 37u + 11u) % 256u);
        pattern[i] = b;
        upper_pattern[i] = b >= 'a' && b <= 'z' ? b - 32 : b;
    }

    int ep = epoll_create1(0);
    if (ep < 0) { perror("epoll_create1"); return 2; }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* Connect phase: one connection at a time, each proven served. */
    uint64_t t_connect = now_ns();
    uint64_t connect_deadline = t_connect + (uint64_t)(connect_timeout * 1e9);
    long connected = 0;
    for (long i = 0; i < nconns; i++) {
        if (now_ns() > connect_deadline) {
            error_note("connect phase took longer than the timeout after %ld of %ld connections",
                       connected, nconns);
            break;
        }
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) { error_note("socket() failed (errno %d) at connection %ld", errno, i); break; }
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            error_note("connection %ld: connect failed (errno %d)", i, errno);
            close(fd);
            break;
        }
        int h = handshake(fd, (size_t)i);
        if (h != 0) {
            if (h == -1)
                error_note("connection %ld: handshake round trip failed (errno %d)", i, errno);
            close(fd);
            break;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conns[i].fd = fd;
        conns[i].alive = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        connected++;
    }
    double connect_seconds = (double)(now_ns() - t_connect) / 1e9;

    struct rusage ru0, ru1;
    double scpu0 = -1.0, scpu1 = -1.0, sflt0 = 0.0, sflt1 = 0.0;
    uint64_t t0 = now_ns();
    uint64_t warm_end = t0 + (uint64_t)(warmup * 1e9);
    uint64_t warm_limit = warm_end + 10000000000ull; /* all must have served one by then */
    uint64_t measure_start = 0, measure_end = 0;
    int measuring = 0;
    long warmed = 0; /* connections with a completed round trip */

    if (connected == nconns && !errors)
        for (long i = 0; i < nconns; i++) start_message(ep, &conns[i], (size_t)i);

    int maxev = nconns < 1024 ? (int)nconns : 1024;
    struct epoll_event *evs = calloc((size_t)maxev, sizeof *evs);
    while (connected == nconns && !errors) {
        uint64_t t = now_ns();
        if (!measuring) {
            if (t >= warm_end && warmed == nconns) {
                measuring = 1;
                measure_start = t;
                measure_end = t + (uint64_t)(duration * 1e9);
                getrusage(RUSAGE_SELF, &ru0);
                if (server_pid > 0) scpu0 = proc_cpu(server_pid, &sflt0);
            } else if (t >= warm_limit) {
                error_note("warm-up: only %ld of %ld connections completed a round trip",
                           warmed, nconns);
                break;
            }
        } else if (t >= measure_end) {
            break;
        }
        int n = epoll_wait(ep, evs, maxev, 50);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); break; }
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            size_t idx = (size_t)(c - conns);
            if (!c->alive) continue;
            if (evs[k].events & EPOLLOUT) pump_send(ep, c, idx);
            if (!c->alive || !(evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            for (;;) {
                size_t room = msg_size - c->received;
                /* Read one byte more than owed to catch extra bytes. */
                ssize_t r = recv(c->fd, rbuf, room + 1 < 65536 ? room + 1 : 65536, 0);
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) {
                    if (r == 0)
                        error_note("connection %ld: the server closed it", (long)idx);
                    else
                        error_note("connection %ld: recv failed (errno %d)", (long)idx, errno);
                    kill_conn(ep, c);
                    break;
                }
                if ((size_t)r > room) {
                    error_note("connection %ld: %ld bytes more than sent", (long)idx,
                               (long)((size_t)r - room));
                    kill_conn(ep, c);
                    break;
                }
                if (memcmp(rbuf, upper_pattern + c->off + c->received, (size_t)r) != 0) {
                    size_t j = 0;
                    while (rbuf[j] == upper_pattern[c->off + c->received + j]) j++;
                    error_note("connection %ld: echo byte %zu wrong (got 0x%02x, want 0x%02x)",
                               (long)idx, c->received + j, rbuf[j],
                               upper_pattern[c->off + c->received + j]);
                    kill_conn(ep, c);
                    break;
                }
                c->received += (size_t)r;
                if (c->received == msg_size) {
                    if (c->sent != msg_size) { /* echo of bytes never sent: impossible */
                        error_note("connection %ld: echo ahead of send", (long)idx);
                        kill_conn(ep, c);
                        break;
                    }
                    uint64_t t_done = now_ns();
                    if (c->done == 0) warmed++;
                    c->done++;
                    if (measuring && t_done < measure_end) {
                        counted++;
                        add_sample(t_done - c->t_start);
                    }
                    start_message(ep, c, idx);
                    break; /* the next echo cannot be here yet */
                }
            }
        }
    }
    uint64_t t_end = now_ns();
    if (measuring) {
        getrusage(RUSAGE_SELF, &ru1);
        if (server_pid > 0) scpu1 = proc_cpu(server_pid, &sflt1);
    }
    double measured = measuring ? (double)((t_end < measure_end ? t_end : measure_end) - measure_start) / 1e9 : 0.0;
    double cpu = 0.0;
    if (measuring) {
        cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
              (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
              (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
              (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    }
    for (long i = 0; i < nconns; i++)
        if (conns[i].alive) close(conns[i].fd);
    close(ep);

    if (!measuring && !errors) error_note("never started measuring");
    qsort(samples, nsamples, sizeof *samples, cmp_u64);
    double rps = measured > 0 ? (double)counted / measured : 0.0;
    printf("{\"conns\": %ld, \"size\": %zu, \"connected\": %ld, \"connect_seconds\": %.3f, "
           "\"seconds\": %.3f, \"round_trips\": %llu, \"rps\": %.1f, \"mbytes_per_s\": %.2f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, \"samples\": %zu, "
           "\"gen_cpu\": %.3f, \"server_cpu\": %.3f, \"server_faults_per_rt\": %.3f, "
           "\"errors\": %ld, \"first_error\": \"",
           nconns, msg_size, connected, connect_seconds, measured, (unsigned long long)counted,
           rps, rps * (double)msg_size / 1e6, pct(0.50), pct(0.99),
           nsamples ? (double)samples[nsamples - 1] / 1000.0 : 0.0, nsamples,
           measured > 0 ? cpu / measured : 0.0,
           measured > 0 && scpu0 >= 0 && scpu1 >= 0 ? (scpu1 - scpu0) / measured : -1.0,
           counted && scpu0 >= 0 && scpu1 >= 0 ? (sflt1 - sflt0) / (double)counted : -1.0, errors);
    for (const char *p = first_error; *p; p++)
        if (*p == '"' || *p == '\\') printf("\\%c", *p); else putchar(*p);
    printf("\"}\n");
    return errors ? 1 : 0;
}
