import NIOHTTP1
import NotifierService
import ServiceSupport

/// The development routes the `notifier` executable adds: the demo page at `/`, and
/// `POST /demo/send` when it runs with `--demo-send` (404 otherwise, like any unknown path).
public struct DemoRoutes: NotifierRoutes {
    private let sender: DemoSender?

    /// `sender` nil serves the page only.
    public init(sender: DemoSender?) {
        self.sender = sender
    }

    public var maxBodyBytes: Int { DemoSender.maxBodyBytes }

    public func serves(path: String) -> Bool {
        switch path {
        case "/", "/index.html": true
        case "/demo/send": sender != nil
        default: false
        }
    }

    public func respond(to request: RouteRequest) async -> HTTPAnswer {
        guard request.path == "/demo/send", let sender else {
            return HTTPAnswer(status: .ok, headers: DemoPage.headers, body: DemoPage.bytes)
        }
        guard request.head.method == .POST else {
            return HTTPAnswer(status: .methodNotAllowed, headers: [("Allow", "POST")], text: "use POST\n")
        }
        return await sender.send(token: TokenAuthenticator.token(from: request.head), body: request.body)
    }
}
