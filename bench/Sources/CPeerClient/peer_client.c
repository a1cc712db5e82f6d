// The load client of `switchboard-bench peer` (see peer_client.h): one epoll loop, level
// triggered, one read(2) per ready socket per turn so a busy socket cannot starve the others.
// A socket keeps bytes only while a frame is incomplete; complete frames are parsed straight
// out of the shared read buffer.
#define _GNU_SOURCE
#include "peer_client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { S_FREE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_DEAD };

/// Bytes one read(2) may return; frames are ~400 bytes, so one read drains a socket's backlog.
#define READ_BUFFER (256 * 1024)
/// Readiness events handled per epoll_wait.
#define EVENTS_PER_WAIT 512
/// A response header longer than this fails the upgrade (defends against a non-WebSocket peer).
#define MAX_HEADER 16384
/// A message longer than this closes the socket (frames here are ~400 bytes).
#define MAX_MESSAGE (4 * 1024 * 1024)

typedef struct pc_socket {
    int fd;
    uint8_t state;
    uint8_t in_fragment;
    char *request;
    uint32_t request_len, request_sent;
    uint8_t *pending;          // bytes of an incomplete frame or header
    size_t pending_len, pending_cap;
    uint8_t *message;          // a fragmented message under assembly
    size_t message_len, message_cap;
} pc_socket;

struct pc_client {
    int epoll_fd;
    uint32_t capacity, used;
    pc_socket *sockets;
    uint8_t *read_buffer;
    pc_frame *out;
    size_t out_len, out_cap;
    pc_counters counters;
    char first_error[256];
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void note_error(pc_client *c, uint32_t index, const char *what, int err) {
    if (c->first_error[0]) return;
    if (err) snprintf(c->first_error, sizeof c->first_error, "socket %u: %s: %s", index, what, strerror(err));
    else snprintf(c->first_error, sizeof c->first_error, "socket %u: %s", index, what);
}

static int reserve(uint8_t **buffer, size_t *cap, size_t needed) {
    if (needed <= *cap) return 0;
    size_t grown = *cap ? *cap : 1024;
    while (grown < needed) grown *= 2;
    uint8_t *bigger = realloc(*buffer, grown);
    if (!bigger) return -1;
    *buffer = bigger;
    *cap = grown;
    return 0;
}

/// Closes a socket for good and moves it from the open or connecting count to closed or failed.
static void kill_socket(pc_client *c, uint32_t index, const char *why, int err) {
    pc_socket *s = &c->sockets[index];
    if (s->state == S_DEAD || s->state == S_FREE) return;
    if (s->state == S_OPEN) {
        c->counters.open--;
        c->counters.closed++;
    } else {
        c->counters.connecting--;
        c->counters.failed++;
    }
    note_error(c, index, why, err);
    close(s->fd);
    s->fd = -1;
    s->state = S_DEAD;
    free(s->request);
    s->request = NULL;
}

pc_client *pc_create(uint32_t capacity) {
    pc_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->capacity = capacity;
    c->sockets = calloc(capacity ? capacity : 1, sizeof *c->sockets);
    c->read_buffer = malloc(READ_BUFFER);
    c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (!c->sockets || !c->read_buffer || c->epoll_fd < 0) {
        pc_destroy(c);
        return NULL;
    }
    return c;
}

void pc_destroy(pc_client *c) {
    if (!c) return;
    for (uint32_t i = 0; i < c->used; i++) {
        pc_socket *s = &c->sockets[i];
        if (s->fd >= 0 && s->state != S_DEAD && s->state != S_FREE) close(s->fd);
        free(s->request);
        free(s->pending);
        free(s->message);
    }
    if (c->epoll_fd >= 0) close(c->epoll_fd);
    free(c->sockets);
    free(c->read_buffer);
    free(c->out);
    free(c);
}

void pc_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

int pc_connect_loopback(uint16_t port, int nonblocking) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0 && !(nonblocking && errno == EINPROGRESS)) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int32_t pc_open(pc_client *c, uint16_t port, const char *target) {
    if (c->used >= c->capacity) {
        errno = ENOSPC;
        return -1;
    }
    int fd = pc_connect_loopback(port, 1);
    if (fd < 0) return -1;
    uint32_t index = c->used;
    pc_socket *s = &c->sockets[index];
    int length = snprintf(NULL, 0,
                          "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: c3dpdGNoYm9hcmQtcGVlcg==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                          target, port);
    s->request = malloc((size_t)length + 1);
    if (!s->request) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    snprintf(s->request, (size_t)length + 1,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: c3dpdGNoYm9hcmQtcGVlcg==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             target, port);
    s->request_len = (uint32_t)length;
    s->request_sent = 0;
    s->fd = fd;
    s->state = S_CONNECTING;
    struct epoll_event event = {.events = EPOLLOUT, .data.u32 = index};
    if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0) {
        int err = errno;
        close(fd);
        free(s->request);
        s->request = NULL;
        s->state = S_FREE;
        errno = err;
        return -1;
    }
    c->used++;
    c->counters.connecting++;
    return (int32_t)index;
}

/// Parses a decimal number ending in ':'; advances `*p`. Returns -1 when malformed.
static int parse_number(const uint8_t **p, const uint8_t *end, uint64_t *value) {
    const uint8_t *q = *p;
    uint64_t v = 0;
    if (q >= end || *q < '0' || *q > '9') return -1;
    while (q < end && *q >= '0' && *q <= '9') v = v * 10 + (uint64_t)(*q++ - '0');
    if (q >= end || *q != ':') return -1;
    *p = q + 1;
    *value = v;
    return 0;
}

static void handle_message(pc_client *c, uint32_t index, const uint8_t *payload, size_t length, uint64_t received) {
    c->counters.frames++;
    c->counters.payload_bytes += length;
    const uint8_t *marker = memmem(payload, length, "#pb:", 4);
    uint64_t point, channel, number, sent;
    const uint8_t *end = payload + length;
    const uint8_t *p = marker ? marker + 4 : NULL;
    if (!p || parse_number(&p, end, &point) || parse_number(&p, end, &channel) || parse_number(&p, end, &number) ||
        parse_number(&p, end, &sent)) {
        c->counters.unmarked++;
        return;
    }
    if (c->out_len == c->out_cap) {
        size_t grown = c->out_cap ? c->out_cap * 2 : 4096;
        pc_frame *bigger = realloc(c->out, grown * sizeof *bigger);
        if (!bigger) return;
        c->out = bigger;
        c->out_cap = grown;
    }
    c->out[c->out_len++] = (pc_frame){
        .socket = index, .point = (uint32_t)point, .channel = (uint32_t)channel, .number = (uint32_t)number,
        .sent_ns = sent, .received_ns = received,
    };
}

/// Answers a ping with a pong carrying the same payload (client frames are masked; the
/// all-zero key leaves the payload as is).
static void send_pong(pc_client *c, uint32_t index, const uint8_t *payload, size_t length) {
    if (length > 125) return;
    uint8_t frame[2 + 4 + 125];
    frame[0] = 0x8A;
    frame[1] = (uint8_t)(0x80 | length);
    memset(frame + 2, 0, 4);
    memcpy(frame + 6, payload, length);
    if (send(c->sockets[index].fd, frame, 6 + length, MSG_NOSIGNAL) > 0) c->counters.pings++;
}

/// Handles one complete frame; returns -1 when the socket was closed.
static int handle_frame(pc_client *c, uint32_t index, uint8_t opcode, int fin, const uint8_t *payload, size_t length, uint64_t received) {
    pc_socket *s = &c->sockets[index];
    switch (opcode) {
    case 0x1:
    case 0x2:
        if (fin) {
            handle_message(c, index, payload, length, received);
            return 0;
        }
        s->message_len = 0;
        s->in_fragment = 1;
        /* fall through */
    case 0x0:
        if (!s->in_fragment || s->message_len + length > MAX_MESSAGE ||
            reserve(&s->message, &s->message_cap, s->message_len + length)) {
            kill_socket(c, index, "bad or oversized fragmented message", 0);
            return -1;
        }
        memcpy(s->message + s->message_len, payload, length);
        s->message_len += length;
        if (fin) {
            s->in_fragment = 0;
            handle_message(c, index, s->message, s->message_len, received);
        }
        return 0;
    case 0x8: {
        char why[64];
        unsigned code = length >= 2 ? ((unsigned)payload[0] << 8 | payload[1]) : 0;
        snprintf(why, sizeof why, "closed by the server (code %u)", code);
        kill_socket(c, index, why, 0);
        return -1;
    }
    case 0x9:
        send_pong(c, index, payload, length);
        return 0;
    default:
        return 0;
    }
}

/// Parses the complete frames of `data`; returns how many bytes were consumed, or -1 when
/// the socket was closed.
static long parse_frames(pc_client *c, uint32_t index, uint8_t *data, size_t length, uint64_t received) {
    size_t at = 0;
    while (length - at >= 2) {
        uint8_t b0 = data[at], b1 = data[at + 1];
        size_t header = 2;
        uint64_t payload = b1 & 0x7F;
        if (payload == 126) {
            if (length - at < 4) break;
            payload = (uint64_t)data[at + 2] << 8 | data[at + 3];
            header = 4;
        } else if (payload == 127) {
            if (length - at < 10) break;
            payload = 0;
            for (int i = 0; i < 8; i++) payload = payload << 8 | data[at + 2 + i];
            header = 10;
        }
        int masked = (b1 & 0x80) != 0;
        if (masked) header += 4;
        if (payload > MAX_MESSAGE) {
            kill_socket(c, index, "frame over the size limit", 0);
            return -1;
        }
        if (length - at < header + payload) break;
        uint8_t *body = data + at + header;
        if (masked) {
            const uint8_t *key = body - 4;
            for (uint64_t i = 0; i < payload; i++) body[i] ^= key[i & 3];
        }
        if (handle_frame(c, index, b0 & 0x0F, (b0 & 0x80) != 0, body, (size_t)payload, received) < 0) return -1;
        at += header + (size_t)payload;
    }
    return (long)at;
}

/// Checks the upgrade response at the start of `data`; returns its length, 0 while it is
/// incomplete, -1 when the upgrade failed (socket closed).
static long parse_upgrade(pc_client *c, uint32_t index, const uint8_t *data, size_t length) {
    const uint8_t *end = memmem(data, length, "\r\n\r\n", 4);
    if (!end) {
        if (length > MAX_HEADER) {
            kill_socket(c, index, "upgrade response header too long", 0);
            return -1;
        }
        return 0;
    }
    if (length < 12 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
        char why[96];
        const uint8_t *line_end = memchr(data, '\r', length);
        int line = (int)(line_end ? line_end - data : 40);
        snprintf(why, sizeof why, "upgrade refused: %.*s", line > 60 ? 60 : line, (const char *)data);
        kill_socket(c, index, why, 0);
        return -1;
    }
    c->sockets[index].state = S_OPEN;
    c->counters.connecting--;
    c->counters.open++;
    return (long)(end + 4 - data);
}

static void read_socket(pc_client *c, uint32_t index) {
    pc_socket *s = &c->sockets[index];
    ssize_t got = read(s->fd, c->read_buffer, READ_BUFFER);
    if (got == 0) {
        kill_socket(c, index, "connection closed by the server", 0);
        return;
    }
    if (got < 0) {
        if (errno != EAGAIN && errno != EINTR) kill_socket(c, index, "read", errno);
        return;
    }
    uint64_t received = now_ns();
    c->counters.reads++;
    uint8_t *data = c->read_buffer;
    size_t length = (size_t)got;
    if (s->pending_len > 0) {
        if (reserve(&s->pending, &s->pending_cap, s->pending_len + length)) {
            kill_socket(c, index, "out of memory", ENOMEM);
            return;
        }
        memcpy(s->pending + s->pending_len, data, length);
        s->pending_len += length;
        data = s->pending;
        length = s->pending_len;
    }
    size_t consumed = 0;
    if (s->state == S_HANDSHAKE) {
        long header = parse_upgrade(c, index, data, length);
        if (header < 0) return;
        consumed = (size_t)header;
    }
    if (s->state == S_OPEN) {
        long frames = parse_frames(c, index, data + consumed, length - consumed, received);
        if (frames < 0) return;
        consumed += (size_t)frames;
    }
    size_t rest = length - consumed;
    if (data == s->pending) {
        memmove(s->pending, s->pending + consumed, rest);
        s->pending_len = rest;
    } else if (rest > 0) {
        if (reserve(&s->pending, &s->pending_cap, rest)) {
            kill_socket(c, index, "out of memory", ENOMEM);
            return;
        }
        memcpy(s->pending, data + consumed, rest);
        s->pending_len = rest;
    }
}

static void send_upgrade(pc_client *c, uint32_t index) {
    pc_socket *s = &c->sockets[index];
    if (s->request_sent == 0) {
        int err = 0;
        socklen_t size = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &size);
        if (err) {
            kill_socket(c, index, "connect", err);
            return;
        }
    }
    while (s->request_sent < s->request_len) {
        ssize_t sent = send(s->fd, s->request + s->request_sent, s->request_len - s->request_sent, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EAGAIN) return;
            kill_socket(c, index, "send upgrade request", errno);
            return;
        }
        s->request_sent += (uint32_t)sent;
    }
    free(s->request);
    s->request = NULL;
    s->state = S_HANDSHAKE;
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = index};
    epoll_ctl(c->epoll_fd, EPOLL_CTL_MOD, s->fd, &event);
}

int32_t pc_poll(pc_client *c, int32_t timeout_ms, const pc_frame **frames) {
    struct epoll_event events[EVENTS_PER_WAIT];
    c->out_len = 0;
    int ready = epoll_wait(c->epoll_fd, events, EVENTS_PER_WAIT, timeout_ms);
    for (int i = 0; i < ready; i++) {
        uint32_t index = events[i].data.u32;
        if (index >= c->used) continue;
        pc_socket *s = &c->sockets[index];
        if (s->state == S_CONNECTING) {
            send_upgrade(c, index);
        } else if (s->state == S_HANDSHAKE || s->state == S_OPEN) {
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_socket(c, index);
        }
    }
    *frames = c->out;
    return (int32_t)c->out_len;
}

void pc_get_counters(const pc_client *c, pc_counters *out) { *out = c->counters; }

const char *pc_first_error(const pc_client *c) { return c->first_error; }
