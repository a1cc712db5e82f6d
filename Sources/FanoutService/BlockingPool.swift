import NIOPosix

/// Runs a blocking C-library call (connect, stream management, a snapshot read) on the
/// process's one blocking pool, `NIOThreadPool.singleton`, so it never stalls the
/// cooperative pool that the HTTP server and signal handling share.
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive(work)
}
