import NIOHTTP1
import NotifierService
import ServiceSupport

/// The development routes the `notifier` executable adds: the demo page at `/`, the
/// JavaScript client it runs on at `/switchboard.js`, and `POST /demo/send` when it runs with
/// `--demo-send` (404 otherwise, like any unknown path).
public struct DemoRoutes: NotifierRoutes {
    private let sender: DemoSender?
    private let page: [UInt8]
    private let clientScript: [UInt8]?

    /// `sender` nil serves the page only. `urls`: the notifiers' WebSocket URLs the page's
    /// client moves between (empty: this notifier's own). `clientScript`: the bytes of
    /// `clients/js/switchboard.js` (nil: `/switchboard.js` is 404 and the page cannot run).
    public init(sender: DemoSender?, urls: [String] = [], clientScript: [UInt8]? = nil) {
        self.sender = sender
        page = DemoPage.bytes(urls: urls)
        self.clientScript = clientScript
    }

    public var maxBodyBytes: Int { DemoSender.maxBodyBytes }

    public func serves(path: String) -> Bool {
        switch path {
        case "/", "/index.html": true
        case "/switchboard.js": clientScript != nil
        case "/demo/send": sender != nil
        default: false
        }
    }

    public func respond(to request: RouteRequest) async -> HTTPAnswer {
        if request.path == "/switchboard.js", let clientScript {
            return HTTPAnswer(status: .ok, headers: [("Content-Type", "text/javascript; charset=utf-8"), ("Cache-Control", "no-store")], body: clientScript)
        }
        guard request.path == "/demo/send", let sender else {
            return HTTPAnswer(status: .ok, headers: DemoPage.headers, body: page)
        }
        guard request.head.method == .POST else {
            return HTTPAnswer(status: .methodNotAllowed, headers: [("Allow", "POST")], text: "use POST\n")
        }
        return await sender.send(token: TokenAuthenticator.token(from: request.head), body: request.body)
    }
}
