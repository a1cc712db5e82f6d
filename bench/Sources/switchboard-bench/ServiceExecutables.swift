import Foundation

/// Where the bench finds the `fanout` and `notifier` executables when no path is given.
///
/// The bench is a package of its own (`bench/`), so its build folder holds only
/// `switchboard-bench`; the services are built by the package above (`swift build -c release`
/// at the repository root). The folder is the one of the same configuration there:
/// `<repo>/bench/.build/<triple>/release/` → `<repo>/.build/<triple>/release/`. A service
/// next to `switchboard-bench` (a copied-together bin folder) is preferred.
enum ServiceExecutables {
    static var directory: URL {
        let own = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: own.appendingPathComponent("fanout").path) { return own }
        let components = own.pathComponents
        guard let bench = components.lastIndex(of: "bench"), components.index(after: bench) < components.count,
              components[components.index(after: bench)].hasPrefix(".build") else { return own }
        let root = NSString.path(withComponents: Array(components[..<bench]) + Array(components[(bench + 1)...]))
        return URL(fileURLWithPath: root, isDirectory: true)
    }

    static func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }
}
