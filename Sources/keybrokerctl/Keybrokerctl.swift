import ArgumentParser
import BrokerConfiguration
import BrokerProtocol
import CKeybrokerSystem
import Foundation
import KMS
import NIOCore
import SecureMemory
import SystemSupport

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("keybrokerd's configuration, to find the socket.", valueName: "path"))
    var config: String = BrokerConfig.defaultPath

    @Option(name: .long, help: ArgumentHelp("The broker's socket (overrides the configuration).", valueName: "path"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("The instance to use.", valueName: "name"))
    var instance: String = "default"

    func socketPath() throws(CommandError) -> String {
        if let socket { return socket }
        do {
            return try BrokerConfig.load(path: config).socketPath
        } catch {
            throw CommandError("\(error.description) (or pass --socket PATH)")
        }
    }

    func connect(timeoutSeconds: Int = 30) throws(CommandError) -> BrokerConnection {
        var connection = try BrokerConnection(path: socketPath(), timeoutSeconds: timeoutSeconds)
        _ = try connection.call(.hello(protocolVersion: ProtocolConstants.version, instance: instance, client: "keybrokerctl"))
        return connection
    }
}

@main
struct Keybrokerctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keybrokerctl",
        abstract: "Administer keybroker: inspect, fetch and rotate data keys.",
        subcommands: [Status.self, List.self, Latest.self, GetKey.self, Rotate.self, Rewrap.self, Import.self, Export.self, Unlock.self, Metrics.self, Store.self,
                      InitLocal.self])

    /// Exit statuses: 0 done, 1 failed (one line on stderr), 2 usage error.
    static func main() {
        // get-key --reveal and export hold key bytes: no core file, no ptrace by the same uid,
        // /proc/PID/mem closed, as for keybrokerd.
        let hardening = CKB_harden_process()
        if hardening != 0 {
            FileHandle.standardError.write(Data("keybrokerctl: warning: cannot make the process non-dumpable: \(errnoText(-hardening))\n".utf8))
        }
        do {
            var command = try parseAsRoot(movingGlobalOptionsAfterSubcommand(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch let error as CommandError {
            FileHandle.standardError.write(Data("keybrokerctl: \(error.description)\n".utf8))
            Foundation.exit(1)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data("keybrokerctl: \(fullMessage(for: error))\n".utf8))
            Foundation.exit(code == ExitCode(1) ? 1 : 2)
        }
    }
}

/// `keybrokerctl --socket S latest 1` reads naturally, but ArgumentParser only gives subcommands
/// the options written after their name: move the global ones there.
func movingGlobalOptionsAfterSubcommand(_ arguments: [String]) -> [String] {
    let globals: Set<String> = ["--config", "--socket", "--instance"]
    var leading: [String] = []
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
        guard globals.contains(name) else { break }
        leading.append(argument)
        if !argument.contains("="), index + 1 < arguments.count {
            leading.append(arguments[index + 1])
            index += 1
        }
        index += 1
    }
    guard !leading.isEmpty, index < arguments.count else { return arguments }
    // A command group (`store status`): the options go after the subcommand's own name.
    let groups: Set<String> = ["store"]
    if groups.contains(arguments[index]), index + 1 < arguments.count, !arguments[index + 1].hasPrefix("-") {
        return [arguments[index], arguments[index + 1]] + leading + arguments[(index + 2)...]
    }
    return [arguments[index]] + leading + arguments[(index + 1)...]
}

/// A key received from the broker, moved into locked memory; its bytes in the received frame are zeroed.
func secureKey(_ bytes: ByteBuffer) -> SecureBytes {
    defer { bytes.withUnsafeReadableBytes { $0.cleanse() } }
    return bytes.withUnsafeReadableBytes { SecureBytes(copying: $0) }
}

func parseKeyID(_ text: String, what: String = "key id") throws -> UInt32 {
    guard let value = UInt32(text), value != 0 else {
        throw ValidationError("\(what) must be a number from 1 to 4294967295, not \"\(text)\"")
    }
    return value
}

/// STATUS: the document's text as the broker sent it.
func statusText(_ options: GlobalOptions) throws(CommandError) -> String {
    var connection = try options.connect()
    defer { connection.close() }
    guard case let .status(json) = try connection.call(.status) else { throw CommandError("unexpected answer to STATUS") }
    return json
}

func statusDocument(_ options: GlobalOptions) throws(CommandError) -> StatusDocument {
    let json = try statusText(options)
    do {
        return try StatusDocument(json: json)
    } catch {
        throw CommandError("cannot read the broker's STATUS answer: \(error.description)")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the broker's health and its instances.")
    @OptionGroup var options: GlobalOptions
    @Flag(name: .long, help: "Print the raw JSON document.") var json = false

    func run() throws {
        if json {
            // Every member the broker sent, including those this keybrokerctl does not know.
            let object = try JSONSerialization.jsonObject(with: Data(try statusText(options).utf8))
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let document = try statusDocument(options)
        print("\(document.server), up \(document.uptimeSeconds) s, \(document.connections) connections, \(document.requests) requests, \(document.errors) errors, \(document.denied) denied")
        if let at = document.reload.lastAt {
            if let error = document.reload.lastError {
                print("reload failed at \(at): \(error); serving the previous configuration")
            } else {
                print("reloaded at \(at) (\(document.reload.succeeded) reloads, \(document.reload.failed) failed)")
            }
        }
        for instance in document.instances {
            let lastError = instance.lastError.map { ", last error: \($0)" } ?? ""
            let rotation = instance.rotateAfter.map { ", rotate_after \($0), next due \(instance.nextRotationDue ?? "at the first check")" } ?? ""
            print("instance \(instance.name): provider \(instance.provider), \(instance.keyIDs) keys, \(instance.versions) versions, \(instance.loaded) loaded, \(instance.pending) pending, \(instance.failed) failed\(rotation)\(lastError)")
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the instance's key ids and their latest versions.")
    @OptionGroup var options: GlobalOptions

    func run() throws {
        guard let instance = try statusDocument(options).instance(named: options.instance) else {
            throw CommandError("the broker reported no instance \"\(options.instance)\"")
        }
        print("KEY_ID\tLATEST_VERSION")
        for key in instance.keys {
            print("\(key.keyID)\t\(key.version)")
        }
        if instance.keysTruncated {
            print("(the list stops at \(StatusDocument.maximumListedKeys) of \(instance.keyIDs) keys)")
        }
    }
}

struct Latest: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the latest version of a key (creating version 1 of a new key when the instance allows it).")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "Key id.") var id: String

    func run() throws {
        let keyID = try parseKeyID(id)
        var connection = try options.connect()
        defer { connection.close() }
        guard case let .latestKey(version, bytes) = try connection.call(.latestKey(keyID: keyID)) else {
            throw CommandError("unexpected answer to LATEST_KEY")
        }
        let key = secureKey(bytes)
        print("key \(keyID) version \(version) (\(key.count * 8) bits, fingerprint \(key.fingerprint))")
    }
}

struct GetKey: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-key", abstract: "Print a key's version and fingerprint (first 8 bytes of SHA-256).")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "Key id.") var id: String
    @Option(name: .long, help: "Version (default: the latest).") var version: String?
    @Flag(name: .long, help: "Also print the key itself, in hex.") var reveal = false

    func run() throws {
        let keyID = try parseKeyID(id)
        let requested = try version.map { try parseKeyID($0, what: "version") }
        var connection = try options.connect()
        defer { connection.close() }
        let bytes: ByteBuffer
        let keyVersion: UInt32
        if let requested {
            guard case let .getKey(received) = try connection.call(.getKey(keyID: keyID, version: requested)) else {
                throw CommandError("unexpected answer to GET_KEY")
            }
            (keyVersion, bytes) = (requested, received)
        } else {
            guard case let .latestKey(latest, received) = try connection.call(.latestKey(keyID: keyID)) else {
                throw CommandError("unexpected answer to LATEST_KEY")
            }
            (keyVersion, bytes) = (latest, received)
        }
        let key = secureKey(bytes)
        print("key \(keyID) version \(keyVersion) (\(key.count * 8) bits, fingerprint \(key.fingerprint))")
        if reveal {
            var digits = key.withUnsafeBytes { Hex.encodedBytes($0) }
            print(String(decoding: digits, as: UTF8.self))
            digits.cleanse()
        }
    }
}

struct Rotate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a new version of a key, or of every key with --all.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "Key id.") var id: String?
    @Flag(name: .long, help: "Rotate every key of the instance.") var all = false

    func validate() throws {
        if all == (id != nil) { throw ValidationError("give a key id or --all, not both or neither") }
    }

    func run() throws {
        let keyID = try id.map { try parseKeyID($0) } ?? ProtocolConstants.allKeys
        var connection = try options.connect()
        defer { connection.close() }
        switch try connection.call(.rotate(keyID: keyID)) {
        case let .rotate(keys):
            if keys.isEmpty { print("no keys to rotate in instance \"\(options.instance)\"") }
            for key in keys { print("key \(key.keyID) now at version \(key.version)") }
        case let .partialRotation(report):
            for key in report.rotated { print("key \(key.keyID) now at version \(key.version)") }
            for failure in report.failed { print("key \(failure.keyID) not rotated: \(failure.status)") }
            throw CommandError("PARTIAL: \(report.message)")
        default:
            throw CommandError("unexpected answer to ROTATE")
        }
    }
}

struct InitLocal: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init-local", abstract: "Create a new master key file for the local provider (mode 0600; never overwrites).")
    @OptionGroup var options: GlobalOptions
    @Option(name: .customLong("master-key"), help: ArgumentHelp("Where to write the key.", valueName: "path")) var masterKey: String

    func run() throws {
        do {
            try MasterKeyFile.create(path: masterKey)
        } catch {
            throw CommandError(error.description)
        }
        print("created \(masterKey) (256-bit master key, mode 0600); back it up: without it the data keys cannot be unwrapped")
    }
}
