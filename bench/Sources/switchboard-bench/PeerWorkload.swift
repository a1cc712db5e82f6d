import Foundation

/// The two shapes `switchboard-bench peer` runs on both systems: every socket in one channel
/// (broadcast), or each socket in one room of `roomSize` with events round-robin over rooms.
struct PeerWorkload: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case broadcast
        case rooms(size: Int)
    }

    var kind: Kind
    var sockets: Int

    var channelCount: Int {
        switch kind {
        case .broadcast: 1
        case .rooms(let size): sockets / size
        }
    }

    var membersPerChannel: Int {
        switch kind {
        case .broadcast: sockets
        case .rooms(let size): size
        }
    }

    /// The channel socket (and user) `socket` is in.
    func channel(ofSocket socket: Int) -> Int {
        switch kind {
        case .broadcast: 0
        case .rooms(let size): socket / size
        }
    }

    func channelID(_ channel: Int) -> String {
        switch kind {
        case .broadcast: "peer-all"
        case .rooms: "peer-room-\(channel)"
        }
    }

    var label: String {
        switch kind {
        case .broadcast: "broadcast (1 channel × \(sockets))"
        case .rooms(let size): "rooms of \(size) (\(channelCount) channels)"
        }
    }

    var shortLabel: String {
        switch kind {
        case .broadcast: "broadcast"
        case .rooms(let size): "rooms of \(size)"
        }
    }

    static func userID(_ socket: Int) -> String { "peer-user-\(socket)" }
}

/// One point's publishing plan: `total` events at `rate` per second, event `e` going to channel
/// `e % channels` as that channel's event number `e / channels`.
struct PeerSchedule: Sendable {
    var point: UInt32
    var rate: Double
    var total: Int
    var channels: Int

    func channel(ofEvent event: Int) -> Int { event % channels }
    func number(ofEvent event: Int) -> Int { event / channels }

    var eventsPerChannel: [Int] {
        (0..<channels).map { total / channels + ($0 < total % channels ? 1 : 0) }
    }
}

/// The text both systems carry: the marker the load client parses, then padding to `length`
/// bytes. The marker holds the point, channel, event number and the send instant
/// (CLOCK_MONOTONIC ns, shared by every process on the machine).
enum PeerPayload {
    static func text(point: UInt32, channel: Int, number: Int, sentNs: UInt64, length: Int) -> String {
        let marker = "#pb:\(point):\(channel):\(number):\(sentNs):"
        return marker + String(repeating: "x", count: max(0, length - marker.utf8.count))
    }

    /// The frame nchan sends as is: the same JSON the notifier renders for a `MessageCreated`
    /// (`ServerFrame.event`), so both systems write frames of the same size.
    static func nchanFrame(channelID: String, seq: Int, eventID: String, createdAtMs: Int64, text: String) -> String {
        #"{"type":"event","channel":"\#(channelID)","seq":\#(seq),"event":{"id":"\#(eventID)","sender":"peer-publisher","created_at_ms":\#(createdAtMs),"kind":"message_created","message_id":"\#(eventID)","text":"\#(text)"}}"#
    }
}
