/// The planner's output for one event, reused from event to event so that planning
/// allocates nothing per recipient (the slot arrays keep their capacity).
///
/// `targets[i]` is an instance with at least one online recipient; `slots[i]` are that
/// instance's local slots for the recipients. Only indices below `targets.count` are valid.
public struct PlanBuffer: Sendable {
    public struct Target: Sendable, Equatable {
        public var instance: UInt32
        public var instanceID: String
        public var inboxSubject: String
    }

    public private(set) var targets: [Target] = []
    public private(set) var slots: [[UInt32]] = []
    /// Per target, the slots that get only the event's position (the sender whose echo is
    /// skipped): parallel to `slots`, usually empty.
    public private(set) var positionSlots: [[UInt32]] = []
    /// Position in `targets` of each instance in the current plan, -1 when absent.
    private var position: [Int32] = []
    public private(set) var recipients = 0

    public init() {}

    mutating func reset(instanceCount: Int) {
        for target in targets { position[Int(target.instance)] = -1 }
        for index in targets.indices {
            slots[index].removeAll(keepingCapacity: true)
            positionSlots[index].removeAll(keepingCapacity: true)
        }
        targets.removeAll(keepingCapacity: true)
        recipients = 0
        if position.count < instanceCount { position.append(contentsOf: repeatElement(-1, count: instanceCount - position.count)) }
    }

    @inline(__always)
    mutating func add(_ placement: Placement, instances: InstanceRegistry) {
        slots[target(placement, instances: instances)].append(placement.slot)
    }

    mutating func addPosition(_ placement: Placement, instances: InstanceRegistry) {
        positionSlots[target(placement, instances: instances)].append(placement.slot)
    }

    /// The index of `placement`'s instance in `targets`, added when absent.
    @inline(__always)
    private mutating func target(_ placement: Placement, instances: InstanceRegistry) -> Int {
        var index = Int(position[Int(placement.instance)])
        if index < 0 {
            index = targets.count
            let instance = instances[placement.instance]
            targets.append(Target(instance: placement.instance, instanceID: instance.id, inboxSubject: instance.inboxSubject))
            if slots.count == index {
                slots.append([])
                positionSlots.append([])
            }
            position[Int(placement.instance)] = Int32(index)
        }
        return index
    }

    mutating func countRecipient() { recipients += 1 }
}

extension RoutingTable {
    /// Plans `channel`'s event: its online members' placements grouped by instance.
    /// `skipUser` (the sender, when the event asks for no echo) gets the event's position
    /// only (`positionSlots`), so that its chain of the channel stays whole.
    /// Returns the number of recipients (online members served the event).
    @discardableResult
    public func plan(partition: Int, channel: String, skipUser: String? = nil, into plan: inout PlanBuffer) -> Int {
        plan.reset(instanceCount: instances.count)
        guard let table = partitions[partition], let channelIndex = table.channel(channel) else { return 0 }
        let skip = skipUser.flatMap { users.id(of: $0) } ?? .max
        let presence = self.presence
        let instances = self.instances
        table.members[Int(channelIndex)].forEach { user in
            guard presence.isOnline(user) else { return }
            guard user != skip else {
                presence.forEachPlacement(of: user) { plan.addPosition($0, instances: instances) }
                return
            }
            plan.countRecipient()
            presence.forEachPlacement(of: user) { plan.add($0, instances: instances) }
        }
        return plan.recipients
    }
}
