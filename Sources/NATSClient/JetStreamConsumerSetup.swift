import CNATS

extension JetStream {
    /// How a durable pull consumer's acks count.
    public enum AckPolicy: Sendable {
        /// Each message is acked on its own.
        case explicit
        /// Acking a message acks every earlier one: one ack per batch for a consumer that
        /// processes strictly in order.
        case all

        var c: jsAckPolicy { self == .explicit ? js_AckExplicit : js_AckAll }
    }

    /// Binds to the durable pull consumer `durable` of `stream`, with `ackPolicy`, creating
    /// it if missing and updating it if `ackWait`, `maxAckPending` or `maxDeliver` changed.
    /// `ackWait` is how long the server waits for an ack before redelivering; `maxAckPending`
    /// bounds unacked messages in flight; `maxDeliver` (-1: unlimited) bounds deliveries of
    /// one message.
    ///
    /// The consumer is created here through the API, not by nats.c's subscribe, because nats.c
    /// deletes a consumer it created when the subscription is unsubscribed, durable or not;
    /// a durable must outlive the process (its ack floor is the partition's position).
    ///
    /// With `restartAtAckFloor`, an existing consumer is recreated to deliver from just past
    /// its ack floor: everything a previous process fetched but did not ack comes first and
    /// in order, now rather than after the ack wait. An `.all` consumer needs this: its first
    /// ack would otherwise also ack what a crashed predecessor left pending.
    public func pullSubscribe(stream: String, durable: String, filterSubject: String, ackWait: Duration = .seconds(30), maxAckPending: Int = 20_000, maxDeliver: Int = -1, ackPolicy: AckPolicy = .explicit, restartAtAckFloor: Bool = false) throws -> PullSubscription {
        let start = try bindPullConsumer(stream: stream, durable: durable, filterSubject: filterSubject, ackWait: ackWait, maxAckPending: maxAckPending,
                                         maxDeliver: maxDeliver, ackPolicy: ackPolicy, restartAtAckFloor: restartAtAckFloor)
        var options = callOptions()
        var code = jsErrCode(0)
        var sub: OpaquePointer?
        let status = stream.withCString { cStream in
            durable.withCString { cDurable in
                var subscribeOptions = jsSubOptions()
                jsSubOptions_Init(&subscribeOptions)
                subscribeOptions.Stream = cStream
                subscribeOptions.Consumer = cDurable
                return js_PullSubscribe(&sub, context, filterSubject, cDurable, &options, &subscribeOptions, &code)
            }
        }
        guard status == NATS_OK, let sub else {
            throw jetStreamError(status, code: code, "pull subscribe \(durable) on \(stream) (\(filterSubject))", subject: filterSubject)
        }
        return PullSubscription(handle: sub, jetStream: self, description: "consumer \(durable) of \(stream)", start: start)
    }

    /// Creates or updates the durable pull consumer as `pullSubscribe` does, without a nats.c
    /// subscription (for `PullFeed`, which sends its own pull requests); returns where it
    /// stands. A missing consumer is created to deliver from just after `startAfter` when
    /// given (its predecessor was deleted under a reader that had taken everything up to it).
    public func bindPullConsumer(stream: String, durable: String, filterSubject: String, ackWait: Duration = .seconds(30), maxAckPending: Int = 20_000, maxDeliver: Int = -1, ackPolicy: AckPolicy = .explicit, restartAtAckFloor: Bool = false, startAfter: UInt64? = nil) throws -> PullSubscription.Start {
        try Self.validateStreamName(stream)
        try Self.validateStreamName(durable, what: "durable name")
        guard maxAckPending > 0 else { throw NATSError.invalidArgument("maxAckPending must be positive") }
        guard maxDeliver == -1 || maxDeliver > 0 else { throw NATSError.invalidArgument("maxDeliver must be -1 (unlimited) or positive") }
        return try ensureDurablePullConsumer(
            stream: stream, durable: durable, filterSubject: filterSubject,
            ackWait: ackWait.natsNanoseconds, maxAckPending: Int64(maxAckPending), maxDeliver: Int64(maxDeliver), ackPolicy: ackPolicy.c,
            restartAtAckFloor: restartAtAckFloor, startAfter: startAfter
        )
    }

    /// Returns where the consumer stands as the subscription starts.
    private func ensureDurablePullConsumer(stream: String, durable: String, filterSubject: String, ackWait: Int64, maxAckPending: Int64, maxDeliver: Int64, ackPolicy: jsAckPolicy, restartAtAckFloor: Bool, startAfter: UInt64?) throws -> PullSubscription.Start {
        var options = callOptions()
        var code = jsErrCode(0)
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        let lookup = js_GetConsumerInfo(&info, context, stream, durable, &options, &code)
        var exists: Bool
        /// Where a recreated consumer resumes (0: from the start).
        var resumeAt: UInt64 = 0
        var keptAckFloor: UInt64 = 0
        var keptConsumerSequence: UInt64 = 0
        if lookup == NATS_OK, let info {
            defer { jsConsumerInfo_Destroy(info) }
            keptAckFloor = info.pointee.AckFloor.Stream
            keptConsumerSequence = info.pointee.AckFloor.Consumer
            if !restartAtAckFloor, let config = info.pointee.Config?.pointee,
               config.AckWait == ackWait, config.MaxAckPending == maxAckPending, config.MaxDeliver == maxDeliver,
               config.AckPolicy == ackPolicy,
               config.FilterSubject.map({ String(cString: $0) }) == filterSubject {
                return PullSubscription.Start(ackFloor: info.pointee.AckFloor.Stream, lastConsumerSequence: info.pointee.AckFloor.Consumer)
            }
            exists = true
            if let config = info.pointee.Config?.pointee, restartAtAckFloor || config.AckPolicy != ackPolicy {
                // The server cannot change an ack policy or rewind a consumer in place:
                // recreate it just past its ack floor, so its position survives.
                resumeAt = info.pointee.AckFloor.Stream + 1
                try deleteConsumer(stream: stream, durable: durable)
                exists = false
                keptConsumerSequence = 0
            }
        } else if code == JSConsumerNotFoundErr {
            exists = false
            if let startAfter, startAfter > 0 { resumeAt = startAfter + 1 }
        } else {
            throw jetStreamError(lookup, code: code, "consumer info of \(durable) on \(stream)")
        }

        var created: UnsafeMutablePointer<jsConsumerInfo>?
        code = jsErrCode(0)
        let status = durable.withCString { cDurable in
            filterSubject.withCString { cFilter in
                var config = jsConsumerConfig()
                jsConsumerConfig_Init(&config)
                config.Durable = cDurable
                config.FilterSubject = cFilter
                config.AckPolicy = ackPolicy
                config.DeliverPolicy = resumeAt > 0 ? js_DeliverByStartSequence : js_DeliverAll
                config.OptStartSeq = resumeAt
                config.AckWait = ackWait
                config.MaxAckPending = maxAckPending
                config.MaxDeliver = maxDeliver
                return exists
                    ? js_UpdateConsumer(&created, context, stream, &config, &options, &code)
                    : js_AddConsumer(&created, context, stream, &config, &options, &code)
            }
        }
        if let created { jsConsumerInfo_Destroy(created) }
        if status != NATS_OK {
            throw jetStreamError(status, code: code, "\(exists ? "update" : "create") consumer \(durable) on \(stream) (\(filterSubject))")
        }
        // A new consumer numbers its deliveries from 1; an updated one keeps its numbering
        // (it is not rewound, so the info read above still tells where it stands).
        return PullSubscription.Start(ackFloor: resumeAt > 0 ? resumeAt - 1 : keptAckFloor, lastConsumerSequence: keptConsumerSequence)
    }

    /// An ordered consumer: an ephemeral, flow-controlled push consumer without acks that
    /// nats.c recreates on a gap, so messages come exactly in stream order. Replays
    /// `filterSubject` of `stream` from `startSequence` (0: from the first message).
    /// `createTimeout` bounds the creation request alone: on a large stream the server counts
    /// the filter's pending messages first, which takes far longer than an ordinary call.
    public func orderedConsumer(stream: String, filterSubject: String, startSequence: UInt64, createTimeout: Duration? = nil) throws -> OrderedConsumer {
        try Self.validateStreamName(stream)
        var options = callOptions()
        if let createTimeout { options.Wait = createTimeout.natsTimeoutMilliseconds }
        var code = jsErrCode(0)
        var sub: OpaquePointer?
        let status = stream.withCString { cStream in
            var subscribeOptions = jsSubOptions()
            jsSubOptions_Init(&subscribeOptions)
            subscribeOptions.Stream = cStream
            subscribeOptions.Ordered = true
            if startSequence > 0 {
                subscribeOptions.Config.DeliverPolicy = js_DeliverByStartSequence
                subscribeOptions.Config.OptStartSeq = startSequence
            } else {
                subscribeOptions.Config.DeliverPolicy = js_DeliverAll
            }
            return js_SubscribeSync(&sub, context, filterSubject, &options, &subscribeOptions, &code)
        }
        guard status == NATS_OK, let sub else {
            throw jetStreamError(status, code: code, "ordered consumer on \(stream) (\(filterSubject))", subject: filterSubject)
        }
        // Flow control keeps the server within 32 MB of unread data; nats.c's default of
        // 65 536 pending messages is far less for small messages, and what it drops is lost.
        let limits = natsSubscription_SetPendingLimits(sub, -1, OrderedConsumer.pendingByteLimit)
        guard limits == NATS_OK else {
            _ = natsSubscription_Unsubscribe(sub)
            natsSubscription_Destroy(sub)
            throw coreError(limits, "pending limits of ordered consumer on \(stream)")
        }
        return OrderedConsumer(handle: sub, jetStream: self, description: "ordered consumer on \(stream) (\(filterSubject))")
    }

}
