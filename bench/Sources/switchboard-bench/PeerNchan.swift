import Foundation
import SwitchboardHarness

/// nchan as Debian ships it (`nginx` + `libnginx-mod-nchan`), installed with apt when missing,
/// run from a temp directory: one worker, memory store, `POST /pub/<channel>` publishes,
/// `/sub/<channel>` subscribes over WebSocket, on a free loopback port. `stop()` ends it.
final class NchanSystem: PeerSystem {
    static let module = "/usr/lib/nginx/modules/ngx_nchan_module.so"

    let name = "nchan"
    let port: UInt16
    let versions: String
    private let directory: TemporaryDirectory
    private let master: ServerProcess
    private(set) var publisher: any PeerPublisher

    init(maxSockets: Int, textLength: Int) throws {
        try Self.ensureInstalled()
        directory = try TemporaryDirectory(prefix: "switchboard-bench-nchan")
        for folder in ["logs", "tmp"] {
            try FileManager.default.createDirectory(at: directory.url.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        let directory = directory
        let started = try ServerProcess.startOnFreePort { port in
            let conf = directory.url.appendingPathComponent("nginx.conf")
            try Self.configuration(port: port, maxSockets: maxSockets).write(to: conf, atomically: true, encoding: .utf8)
            return try ServerProcess(name: "nginx", executable: "nginx", arguments: ["-p", directory.path, "-c", conf.path, "-g", "daemon off;"],
                                     logURL: directory.url.appendingPathComponent("logs/nginx.out"))
        }
        master = started.process
        port = started.port
        let nginx = PeerShell.output("nginx", ["-v"])?.text.replacingOccurrences(of: "nginx version: ", with: "") ?? "nginx ?"
        let nchan = PeerShell.output("dpkg-query", ["-W", "-f=${Version}", "libnginx-mod-nchan"])?.text ?? "?"
        versions = "\(nginx), libnginx-mod-nchan \(nchan) (memory store, 1 worker)"
        do {
            publisher = try NchanHTTPPublisher(port: started.port, textLength: textLength)
        } catch {
            started.process.stop()
            throw error
        }
    }

    /// Installs nginx and the nchan module from Debian when either is missing.
    static func ensureInstalled() throws {
        let hasNginx = PeerShell.output("nginx", ["-v"])?.status == 0
        if hasNginx && FileManager.default.fileExists(atPath: module) { return }
        print("installing nginx and libnginx-mod-nchan with apt-get …")
        let env = ["DEBIAN_FRONTEND": "noninteractive"]
        let install = ["install", "-y", "--no-install-recommends", "nginx", "libnginx-mod-nchan"]
        if PeerShell.output("apt-get", install, environment: env)?.status == 0 { return }
        _ = PeerShell.output("apt-get", ["update"], environment: env)
        guard let result = PeerShell.output("apt-get", install, environment: env), result.status == 0 else {
            throw PeerBenchError.setup("apt-get install nginx libnginx-mod-nchan failed (root needed)")
        }
    }

    /// One worker (the comparison is per core of work), enough connections and files for every
    /// socket, nothing written per request.
    static func configuration(port: UInt16, maxSockets: Int) -> String {
        """
        load_module \(module);
        worker_processes 1;
        worker_rlimit_nofile \(maxSockets * 2 + 1024);
        pid logs/nginx.pid;
        error_log logs/error.log warn;
        events { worker_connections \(maxSockets + 1024); }
        http {
          access_log off;
          client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
          uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
          nchan_max_reserved_memory 512M;
          server {
            listen 127.0.0.1:\(port);
            keepalive_requests 1000000000;
            keepalive_timeout 3600s;
            location ~ ^/pub/([A-Za-z0-9_-]+)$ { nchan_publisher http; nchan_channel_id $1; }
            location ~ ^/sub/([A-Za-z0-9_-]+)$ { nchan_subscriber websocket; nchan_channel_id $1; nchan_subscriber_first_message newest; }
          }
        }

        """
    }

    func serverProcesses() -> [PeerServerProcess] {
        [PeerServerProcess(name: "nginx master", pid: master.pid)]
            + PeerProcStats.children(of: master.pid).map { PeerServerProcess(name: "nginx worker", pid: $0) }
    }

    func targets(for workload: PeerWorkload) throws -> [PeerLoadClient.Target] {
        (0..<workload.sockets).map { PeerLoadClient.Target(port: port, path: "/sub/\(workload.channelID(workload.channel(ofSocket: $0)))") }
    }

    func waitSubscribed(sockets: Int, timeout: Duration) throws {}

    func stop() {
        master.stop(grace: .seconds(5))
        directory.remove()
    }
}
