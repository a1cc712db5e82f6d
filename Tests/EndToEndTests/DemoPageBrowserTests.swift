import Foundation
import SwitchboardHarness
import Testing

extension EndToEnd {
    /// The demo page, an application of the JavaScript client, in a real headless Chromium
    /// (Debian's `chromium`, driven over the DevTools protocol by `Peers/demo_pages.py`): two
    /// pages on two notifiers exchange a message; one page's notifier is stopped and that page
    /// carries on through the other one, showing every message sent meanwhile once, in order.
    @Test func demoPagesInChromiumExchangeMessagesAndOneCarriesOnWhenItsNotifierStops() async throws {
        let deployment = try await Deployment()
        defer { deployment.stop() }
        #expect(try deployment.startFanout(members: ["alice", "bob"], of: ["demo"]))
        let n1 = try deployment.startNotifier("n1", extra: ["--demo-send"])
        let n2 = try deployment.startNotifier("n2", extra: ["--demo-send"])
        let pid = try #require(deployment.notifier("n1")?.pid)
        func page(_ port: Int, user: String, urls: [Int]) async throws -> String {
            let list = urls.map { "ws://127.0.0.1:\($0)/ws" }.joined(separator: ",")
            return "http://127.0.0.1:\(port)/?token=\(try await deployment.token(user))&channel=demo&urls=\(list)"
        }
        let logs = try TemporaryDirectory(prefix: "switchboard-test-browser")
        defer { logs.remove() }
        let script = RepositoryPaths.root.appendingPathComponent("Tests/EndToEndTests/Peers/demo_pages.py").path
        let driver = try ServerProcess(
            name: "demo_pages.py", executable: PythonPeer.interpreter,
            arguments: [script, try ServerProcess.resolve("chromium"), try await page(n1, user: "alice", urls: [n1, n2]),
                        try await page(n2, user: "bob", urls: [n2, n1]), "\(pid)", "\(n2)"],
            logURL: logs.url.appendingPathComponent("driver.log")
        )
        let status = driver.waitForExit(timeout: .seconds(90))
        #expect(status == 0, "\(driver.log())\n\(deployment.logsText())")
        report("demo pages in Chromium: \(driver.log().split(separator: "\n").last.map(String.init) ?? "")")
    }
}
