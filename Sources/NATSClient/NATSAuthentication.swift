import CNATS
import Foundation

extension NATSConnection.Options {
    /// How the client proves who it is, besides `user:password@`/`token@` in the URL. Secrets
    /// come from files (read once at connect, a trailing newline trimmed) so that they are on
    /// no command line and in no log.
    public struct Authentication: Sendable, Equatable {
        /// User name, with its password in `passwordFile`.
        public var user: String?
        public var passwordFile: String?
        public var tokenFile: String?
        /// An nkey seed (`SU…`) for servers that list the user's public nkey.
        public var nkeySeedFile: String?
        /// A `.creds` file (a user JWT and its nkey seed, as `nsc` writes them) for servers in
        /// operator mode.
        public var credentialsFile: String?

        public init(user: String? = nil, passwordFile: String? = nil, tokenFile: String? = nil, nkeySeedFile: String? = nil, credentialsFile: String? = nil) {
            self.user = user
            self.passwordFile = passwordFile
            self.tokenFile = tokenFile
            self.nkeySeedFile = nkeySeedFile
            self.credentialsFile = credentialsFile
        }

        /// Sets them on nats.c's options; throws, naming the flag, on a missing or unreadable
        /// file or an inconsistent set.
        func apply(to opts: OpaquePointer) throws {
            let methods = [passwordFile != nil || user != nil, tokenFile != nil, nkeySeedFile != nil, credentialsFile != nil].filter { $0 }.count
            guard methods <= 1 else { throw NATSError.invalidArgument("give one of --nats-user/--nats-password-file, --nats-token-file, --nats-nkey-seed-file, --nats-creds") }
            if user != nil || passwordFile != nil {
                guard let user, let passwordFile else { throw NATSError.invalidArgument("--nats-user and --nats-password-file go together") }
                try check(natsOptions_SetUserInfo(opts, user, try Self.secret(passwordFile, "--nats-password-file")), "NATS user \(user)")
            }
            if let tokenFile { try check(natsOptions_SetToken(opts, try Self.secret(tokenFile, "--nats-token-file")), "NATS token") }
            if let nkeySeedFile {
                let seed = try Self.secret(nkeySeedFile, "--nats-nkey-seed-file")
                let publicKey: String
                do { publicKey = try NKeys.publicKey(ofSeed: seed) } catch { throw NATSError.invalidArgument("--nats-nkey-seed-file '\(nkeySeedFile)': \(error)") }
                try check(natsOptions_SetNKeyFromSeed(opts, publicKey, nkeySeedFile), "NATS nkey \(publicKey)")
            }
            if let credentialsFile {
                _ = try Self.secret(credentialsFile, "--nats-creds")
                try check(natsOptions_SetUserCredentialsFromFiles(opts, credentialsFile, nil), "NATS credentials from \(credentialsFile)")
            }
        }

        /// The file's text without trailing newlines; throws naming `flag` when it cannot be read or is empty.
        static func secret(_ path: String, _ flag: String) throws -> String {
            guard let data = FileManager.default.contents(atPath: path) else { throw NATSError.invalidArgument("\(flag) '\(path)' cannot be read") }
            var text = String(decoding: data, as: UTF8.self)
            while text.last == "\n" || text.last == "\r" { text.removeLast() }
            guard !text.isEmpty else { throw NATSError.invalidArgument("\(flag) '\(path)' is empty") }
            return text
        }
    }
}
