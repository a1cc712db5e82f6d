import ArgumentParser
import NATSClient

/// The command-line flags every executable takes to reach a secured NATS: TLS files and one
/// way to authenticate (secrets from files). Each also reads `SWITCHBOARD_<NAME>` through
/// `EnvironmentFallback` with `environmentNames`.
public struct NATSAccessOptions: ParsableArguments {
    @Option(name: [.customLong("nats-tls-ca"), .customLong("nats-ca-file")], help: "PEM file of the CA certificates that sign the NATS servers' (turns TLS on).")
    public var natsTlsCa: String?
    @Option(name: [.customLong("nats-tls-cert"), .customLong("nats-cert-file")], help: "PEM file of this client's certificate, for NATS servers that verify clients (with --nats-tls-key).")
    public var natsTlsCert: String?
    @Option(name: [.customLong("nats-tls-key"), .customLong("nats-key-file")], help: "PEM file of this client's private key (with --nats-tls-cert).")
    public var natsTlsKey: String?
    @Option(help: "NATS credentials file (user JWT and nkey seed) for servers in operator mode.")
    public var natsCreds: String?
    @Option(help: "NATS user, with --nats-password-file.")
    public var natsUser: String?
    @Option(help: "File holding the NATS user's password (a trailing newline is trimmed).")
    public var natsPasswordFile: String?
    @Option(help: "File holding a NATS token.")
    public var natsTokenFile: String?
    @Option(help: "File holding an nkey seed (SU…) for servers that list the user's public nkey.")
    public var natsNkeySeedFile: String?

    public init() {}

    public static let environmentNames = [
        "nats-tls-ca", "nats-tls-cert", "nats-tls-key", "nats-creds", "nats-user", "nats-password-file", "nats-token-file", "nats-nkey-seed-file",
    ]

    public var tls: NATSConnection.Options.TLS? { .files(ca: natsTlsCa, cert: natsTlsCert, key: natsTlsKey) }

    public var authentication: NATSConnection.Options.Authentication {
        .init(user: natsUser, passwordFile: natsPasswordFile, tokenFile: natsTokenFile, nkeySeedFile: natsNkeySeedFile, credentialsFile: natsCreds)
    }
}
