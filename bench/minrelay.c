/* minrelay: the least a userspace UDP relay can do per packet, as a floor for bench/media.py.
 * Usage: minrelay PAIRS_FILE [connected]
 * PAIRS_FILE lines: "<port_a> <peer_a> <port_b> <peer_b>" (all on 127.0.0.1): what arrives on
 * port_a is sent from port_b to peer_b, what arrives on port_b is sent from port_a to peer_a.
 * One thread, level-triggered epoll, one recvfrom and one sendto per packet: no latching, no
 * counters, no checks. A send the kernel refuses (a full buffer) drops the packet, as the
 * relays compared with it do; the generator counts it as lost. It prints "ready" once every port is bound, and runs until killed.
 * With `connected`, each socket is connected to its peer and sends with send(): the kernel keeps
 * the route instead of looking it up per packet (and delivers to it only what that peer sends).
 * Build: gcc -O2 -o minrelay minrelay.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/epoll.h>

struct end { int fd; int other; struct sockaddr_in peer; };

static void die(const char *what) { perror(what); exit(1); }

static int bind_port(unsigned port) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (s < 0) die("socket");
    int rb = 1 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (bind(s, (void *)&a, sizeof a)) die("bind");
    return s;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s PAIRS [connected]\n", argv[0]); return 2; }
    int connected = argc > 2 && strcmp(argv[2], "connected") == 0;
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror("pairs"); return 2; }
    int cap = 1024, n = 0;
    struct end *e = malloc(cap * sizeof *e);
    int ep = epoll_create1(0);
    if (!e || ep < 0) die("setup");
    unsigned pa, qa, pb, qb;
    while (fscanf(f, "%u %u %u %u", &pa, &qa, &pb, &qb) == 4) {
        if (n + 2 > cap) {
            cap *= 2;
            e = realloc(e, cap * sizeof *e);
            if (!e) die("realloc");
        }
        unsigned port[2] = { pa, pb }, peer[2] = { qa, qb };
        for (int k = 0; k < 2; k++) {
            struct end *x = &e[n + k];
            x->fd = bind_port(port[k]);
            x->other = n + 1 - k;
            memset(&x->peer, 0, sizeof x->peer);
            x->peer.sin_family = AF_INET;
            x->peer.sin_port = htons(peer[k]);
            x->peer.sin_addr.s_addr = htonl(0x7f000001);
            if (connected && connect(x->fd, (void *)&x->peer, sizeof x->peer)) die("connect");
            struct epoll_event ev = { .events = EPOLLIN, .data.u32 = n + k };
            if (epoll_ctl(ep, EPOLL_CTL_ADD, x->fd, &ev)) die("epoll_ctl");
        }
        n += 2;
    }
    if (!feof(f) || n == 0) { fprintf(stderr, "pairs: a line is not four ports\n"); return 2; }
    printf("ready\n");
    fflush(stdout);
    unsigned char buf[2048];
    struct epoll_event evs[1024];
    for (;;) {
        int m = epoll_wait(ep, evs, 1024, -1);
        for (int i = 0; i < m; i++) {
            struct end *x = &e[evs[i].data.u32];
            struct sockaddr_in src;
            socklen_t sl = sizeof src;
            ssize_t len = recvfrom(x->fd, buf, sizeof buf, 0, (void *)&src, &sl);
            if (len <= 0) continue;
            struct end *y = &e[x->other];
            if (connected)
                send(y->fd, buf, len, 0);
            else
                sendto(y->fd, buf, len, 0, (void *)&y->peer, sizeof y->peer);
        }
    }
}
