/* A plain echo server in C with poll(): every byte back unchanged (RFC 862).
 *
 * Written for this repository in the textbook shape (one poll() loop, a
 * buffer per connection), not taken from elsewhere:
 *   - non-blocking sockets; a connection's unsent echo is kept and sent when
 *     the socket is writable again; while it holds more than CAP bytes the
 *     server stops reading that connection (backpressure);
 *   - the client's EOF (half-close) is answered with the rest of the echo,
 *     then close(); a reset or an error closes that connection only;
 *   - MSG_NOSIGNAL, so a peer that went away cannot kill the process;
 *   - out of descriptors, a spare one is given up to accept and close the
 *     waiting connection, so the listening socket does not stay readable.
 *
 *   cc -O2 -o echo_poll examples/plain/echo_poll.c && ./echo_poll PORT
 *   pytest --echo-server-cmd "./echo_poll {port}" --echo-transform identity
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CAP (256 * 1024)
#define MAXCONN 4096

struct conn {
    int fd;
    char *buf;
    size_t len;
    int eof; /* the client half-closed: close once the echo is out */
};

static struct conn conns[MAXCONN];
static size_t nconns;
static int spare = -1;

static void drop(size_t i) {
    close(conns[i].fd);
    free(conns[i].buf);
    conns[i] = conns[--nconns];
}

/* Send what the socket takes; 0 while the connection lives, -1 once it is closed. */
static int flush(size_t i) {
    struct conn *c = &conns[i];
    while (c->len > 0) {
        ssize_t n = send(c->fd, c->buf, c->len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            drop(i);
            return -1;
        }
        memmove(c->buf, c->buf + n, c->len - (size_t)n);
        c->len -= (size_t)n;
    }
    if (c->eof) {
        drop(i);
        return -1;
    }
    return 0;
}

static void on_readable(size_t i) {
    struct conn *c = &conns[i];
    while (c->len < CAP) {
        ssize_t n = recv(c->fd, c->buf + c->len, CAP - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0) {
            c->eof = 1;
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        drop(i); /* ECONNRESET and the like: this connection only */
        return;
    }
    flush(i);
}

static void on_accept(int listener) {
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && spare >= 0) {
                close(spare); /* make room to refuse the waiting connection */
                fd = accept(listener, NULL, NULL);
                if (fd >= 0) close(fd);
                spare = open("/dev/null", O_RDONLY);
                /* Linux says EMFILE before it looks for a connection: none left. */
                if (fd < 0) return;
                continue;
            }
            return; /* EAGAIN, or nothing to do about it now */
        }
        if (nconns == MAXCONN) {
            close(fd);
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        char *buf = malloc(CAP);
        if (buf == NULL) {
            close(fd);
            continue;
        }
        conns[nconns++] = (struct conn){fd, buf, 0, 0};
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 128) < 0) {
        perror("listen");
        return 1;
    }
    fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK);
    spare = open("/dev/null", O_RDONLY);
    static struct pollfd fds[MAXCONN + 1];
    for (;;) {
        fds[0] = (struct pollfd){listener, POLLIN, 0};
        for (size_t i = 0; i < nconns; i++) {
            short events = 0;
            if (!conns[i].eof && conns[i].len < CAP) events |= POLLIN;
            if (conns[i].len > 0) events |= POLLOUT;
            fds[i + 1] = (struct pollfd){conns[i].fd, events, 0};
        }
        size_t polled = nconns;
        if (poll(fds, polled + 1, -1) < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 1;
        }
        /* Backwards: drop() moves the last connection into the slot it frees. */
        for (size_t i = polled; i-- > 0;) {
            short r = fds[i + 1].revents;
            if (r == 0) continue;
            if (r & (POLLIN | POLLHUP | POLLERR)) {
                if (conns[i].eof && conns[i].len == 0) continue;
                on_readable(i);
            } else if (r & POLLOUT) {
                flush(i);
            }
        }
        if (fds[0].revents & POLLIN) on_accept(listener);
    }
}
