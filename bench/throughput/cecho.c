/* A minimal uppercase echo server on epoll: the ceiling of this machine.
 *
 *   cecho PORT
 *
 * Listens on 127.0.0.1:PORT.  One thread, level-triggered epoll, non-blocking
 * sockets.  Each readable connection: recv up to 64 KiB, uppercase a-z in
 * place, send; what the socket does not take is kept and the connection
 * waits for EPOLLOUT (and stops reading) until it has gone.  EOF: flush
 * (already done, nothing is kept when reading), close.  Errors close that
 * connection only.  SIGTERM/SIGINT end the process (default action).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    size_t pending, off; /* unsent bytes in buf, starting at off */
    unsigned char buf[BUF];
};

static void drop(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Send what is pending; 1 if all of it went, 0 if some is left, -1 on error. */
static int flush(struct conn *c) {
    while (c->pending) {
        ssize_t n = send(c->fd, c->buf + c->off, c->pending, MSG_NOSIGNAL);
        if (n > 0) { c->off += (size_t)n; c->pending -= (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return -1;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: cecho PORT\n"); return 2; }
    int port = atoi(argv[1]);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
        perror("cecho: bind/listen");
        return 2;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (!c) { /* the listening socket */
                for (int a = 0; a < 128; a++) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break; /* EAGAIN, or EMFILE: try again next round */
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (!c) { close(fd); break; }
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (c->pending) { /* waiting for EPOLLOUT */
                int f = flush(c);
                if (f < 0) { drop(ep, c); continue; }
                if (f == 1) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                }
                continue;
            }
            ssize_t r = recv(c->fd, c->buf, BUF, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0) { drop(ep, c); continue; }
            for (ssize_t i = 0; i < r; i++)
                if (c->buf[i] >= 'a' && c->buf[i] <= 'z') c->buf[i] -= 32;
            c->off = 0;
            c->pending = (size_t)r;
            int f = flush(c);
            if (f < 0) { drop(ep, c); continue; }
            if (f == 0) {
                struct epoll_event cev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
        }
    }
}
