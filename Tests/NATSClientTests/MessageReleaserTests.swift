import CNATS
@testable import NATSClient
import Testing

@Suite struct MessageReleaserTests {
    func message(bytes: Int) throws -> OpaquePointer {
        var msg: OpaquePointer?
        let payload = [CChar](repeating: 65, count: bytes)
        #expect(natsMsg_Create(&msg, "a.b", nil, payload, Int32(bytes)) == NATS_OK)
        return try #require(msg)
    }

    @Test func holdsAtMostItsCountAndBytesThenDestroysTheGroup() throws {
        // Destroying goes through the library's collector: it must be open (connecting opens it).
        #expect(nats_Open(-1) == NATS_OK)
        let releaser = MessageReleaser(limit: 3, byteLimit: 1_000)
        releaser.release(try message(bytes: 10))
        releaser.release(try message(bytes: 10))
        #expect(releaser.count == 2 && releaser.bytes == 20)
        releaser.release(try message(bytes: 10))
        #expect(releaser.count == 0 && releaser.bytes == 0)

        releaser.release(try message(bytes: 600))
        #expect(releaser.count == 1)
        releaser.release(try message(bytes: 600))
        #expect(releaser.count == 0, "the byte bound cuts the group before the count does")

        releaser.release(try message(bytes: 1))
        releaser.flush()
        #expect(releaser.count == 0 && releaser.bytes == 0)
        releaser.release(try message(bytes: 1))
        // Left for deinit: destroyed with the releaser (valgrind/ASan would show a leak otherwise).
    }
}
