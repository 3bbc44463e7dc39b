/* A classic epoll echo server in C, uppercase variant, as tutorials write it.
 *
 * Non-blocking sockets, level-triggered epoll, read a chunk, write its echo
 * back at once.  Built three ways by tests/checker/test_races.py:
 *
 *   cc -o epoll_echo epoll_echo.c                      SIGPIPE not ignored: the
 *       second write after the client's reset (EPIPE) kills the process
 *       (signal 13, ECHO-5); the first (ECONNRESET) only drops the echo;
 *   cc -DIGNORE_SIGPIPE -o ... epoll_echo.c             SIGPIPE ignored, every
 *       write error closes that connection only: correct;
 *   cc -DIGNORE_SIGPIPE -DEXIT_ON_ECONNRESET -o ...     handles EPIPE, but takes
 *       ECONNRESET on write for a fatal error and exits (ECHO-5);
 *   cc -DIGNORE_SIGPIPE -DSTRLEN_ECHO -o ...            echoes strlen(buf) bytes of
 *       a read buffer that is not NUL-terminated: the bytes after a NUL are
 *       lost, and a read shorter than the one before echoes the rest of that
 *       one again (ECHO-2, not a wrong transform).
 *
 * Usage: epoll_echo PORT
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>

#define CHUNK 4096

struct conn { char buf[1 << 16]; size_t len; int fin; };
static struct conn *conns[65536];

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(conns[fd]);
    conns[fd] = NULL;
}

/* Write what is queued; 0 on success (all or EAGAIN), -1 if the connection is gone. */
static int flush(int ep, int fd) {
    struct conn *c = conns[fd];
    while (c->len > 0) {
        ssize_t n = write(fd, c->buf, c->len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == ECONNRESET) {
#ifdef EXIT_ON_ECONNRESET
                perror("write");
                exit(1);
#endif
                /* The peer is gone: drop its echo; the next write says EPIPE. */
                c->len = 0;
                break;
            }
            drop(ep, fd);  /* EPIPE and the rest: this connection only */
            return -1;
        }
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->len ? EPOLLOUT : 0), .data.fd = fd};
    if (c->len == 0 && c->fin) { drop(ep, fd); return -1; }
    if (c->len + CHUNK > sizeof c->buf) ev.events = EPOLLOUT;  /* backpressure */
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
#ifdef IGNORE_SIGPIPE
    signal(SIGPIPE, SIG_IGN);
#endif
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) { perror("listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                if (c < 0) continue;
                if (c >= 65536) { close(c); continue; }
                conns[c] = calloc(1, sizeof(struct conn));
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                continue;
            }
            if (!conns[fd]) continue;
            struct conn *c = conns[fd];
            if ((evs[i].events & EPOLLIN) && c->len + CHUNK <= sizeof c->buf && !c->fin) {
#ifdef STRLEN_ECHO
                static char readbuf[CHUNK + 1];  /* the last byte stays NUL */
                ssize_t r = read(fd, readbuf, CHUNK);
                if (r > 0) { r = (ssize_t)strlen(readbuf); memcpy(c->buf + c->len, readbuf, r); }
#else
                ssize_t r = read(fd, c->buf + c->len, CHUNK);
#endif
                if (r == 0) c->fin = 1;
                else if (r < 0 && errno != EAGAIN) { drop(ep, fd); continue; }
                else if (r > 0) {
                    for (ssize_t k = 0; k < r; k++) c->buf[c->len + k] = toupper((unsigned char)c->buf[c->len + k]);
                    c->len += r;
                }
            }
            flush(ep, fd);
        }
    }
}
