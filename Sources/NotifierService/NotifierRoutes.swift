import NIOHTTP1
import ServiceSupport

/// HTTP routes an executable adds beside `/ws` and the operations endpoints — the
/// development demo page and its send endpoint — passed in `NotifierConfiguration.routes`.
/// The product module knows nothing of what they do.
public protocol NotifierRoutes: Sendable {
    /// The most request-body bytes a route reads; a longer body is answered 413 unread.
    var maxBodyBytes: Int { get }
    /// True when `path` (without its query) is one of these routes.
    func serves(path: String) -> Bool
    /// Answers one request, off the event loop.
    func respond(to request: RouteRequest) async -> HTTPAnswer
}

/// One request to a `NotifierRoutes` route.
public struct RouteRequest: Sendable {
    public var head: HTTPRequestHead
    public var path: String
    public var body: [UInt8]

    public init(head: HTTPRequestHead, path: String, body: [UInt8]) {
        self.head = head
        self.path = path
        self.body = body
    }
}
