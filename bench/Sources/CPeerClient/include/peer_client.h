#ifndef PEER_CLIENT_H
#define PEER_CLIENT_H

#include <stdint.h>

// The load client of `switchboard-bench peer`: many WebSocket client sockets driven by one
// epoll loop on the calling thread, identical for every system under test. It connects and
// upgrades sockets, reads server frames (answering pings), and for every data frame that
// carries a marker `#pb:<point>:<channel>:<number>:<sent_ns>:` reports one record; the
// caller (Swift) keeps histograms and order/loss books. Nothing here allocates per frame.

typedef struct pc_client pc_client;

/// One data frame that carried a marker.
typedef struct pc_frame {
    uint32_t socket;       ///< index returned by pc_open
    uint32_t point;        ///< measurement point the event was published in
    uint32_t channel;      ///< channel index of the event
    uint32_t number;       ///< the event's number within its channel and point (0, 1, …)
    uint64_t sent_ns;      ///< CLOCK_MONOTONIC when the publisher sent it
    uint64_t received_ns;  ///< CLOCK_MONOTONIC right after the read that completed the frame
} pc_frame;

/// Totals since pc_create.
typedef struct pc_counters {
    uint64_t open;         ///< sockets upgraded and not closed
    uint64_t connecting;   ///< sockets connecting or waiting for the 101
    uint64_t failed;       ///< sockets that failed to connect or upgrade
    uint64_t closed;       ///< sockets closed by the server after the upgrade
    uint64_t frames;       ///< data frames (text or binary messages) received
    uint64_t unmarked;     ///< data frames without a marker (hello frames and the like)
    uint64_t payload_bytes;///< payload bytes of data frames
    uint64_t reads;        ///< read(2) calls that returned data
    uint64_t pings;        ///< pings answered with a pong
} pc_counters;

/// A TCP socket connected (or, when `nonblocking`, connecting) to 127.0.0.1:`port`, with
/// TCP_NODELAY; -1 with errno set on failure. Also the publishers' connection.
int pc_connect_loopback(uint16_t port, int nonblocking);

/// Makes stdout line-buffered, so that a long run's progress reaches a pipe or a log file
/// line by line (Swift 6 cannot touch C's `stdout` variable).
void pc_line_buffer_stdout(void);

/// A client for up to `capacity` sockets; NULL when out of memory or epoll fails.
pc_client *pc_create(uint32_t capacity);

/// Closes every socket and frees the client.
void pc_destroy(pc_client *client);

/// Starts a non-blocking connect to 127.0.0.1:`port` and, once connected, sends the
/// upgrade request for `target` (path and query). Returns the socket index, or -1 (errno set;
/// also when the capacity is used up). Progress happens in pc_poll.
int32_t pc_open(pc_client *client, uint16_t port, const char *target);

/// Waits up to `timeout_ms` for socket activity, handles it, and returns how many marked
/// frames were read; `*frames` points at them until the next call.
int32_t pc_poll(pc_client *client, int32_t timeout_ms, const pc_frame **frames);

/// Current totals.
void pc_get_counters(const pc_client *client, pc_counters *out);

/// The first error a socket met (connect, upgrade, unexpected close), or "" if none.
const char *pc_first_error(const pc_client *client);

#endif
