import ArgumentParser
import BrokerConfiguration
import BrokerProtocol
import Foundation
import Glibc
import KeyStore
import SystemSupport

/// Sends one ADMIN command (protocol extension 0x06) and reads its answer document.
func adminCommand<Answer: AdminAnswer>(_ options: GlobalOptions, _ command: AdminCommand, timeoutSeconds: Int,
                                       answer: Answer.Type) throws(CommandError) -> Answer {
    var connection = try options.connect(timeoutSeconds: timeoutSeconds)
    defer { connection.close() }
    guard case let .admin(json) = try connection.call(.admin(command)) else {
        throw CommandError("unexpected answer to \(command.verb)")
    }
    do {
        return try Answer(json: json)
    } catch {
        throw CommandError("cannot read the broker's answer: \(error.description)")
    }
}

private func printFailures(_ failed: [KeyVersionFailure]) {
    for failure in failed {
        print("key \(failure.ref.keyID) version \(failure.ref.version): FAILED: \(failure.message)")
    }
}

struct Rewrap: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-encrypt every stored data key of an instance under another master key, or copy them into another instance and its provider.",
        discussion: """
            --to KEY: each key file is replaced atomically (KMS ReEncrypt, or KMIP Decrypt then Encrypt), only after the new blob has been \
            unwrapped and compared with the key it must hold; then set master_key_id to the new key.
            --into INSTANCE: every version is wrapped by INSTANCE's provider (aws, kmip or local) and written into INSTANCE's directory; the \
            data keys keep their bytes, so a key set moves between vendors without re-encrypting data. This instance is left as it is.
            """)
    @OptionGroup var options: GlobalOptions
    @Option(name: .customLong("to"), help: ArgumentHelp("The new master key: a KMS key id, ARN or alias/NAME; a KMIP Unique Identifier or name:NAME.", valueName: "key"))
    var target: String?
    @Option(name: .customLong("into"), help: ArgumentHelp("Another configured instance to copy every key version into, wrapped by its provider.", valueName: "instance"))
    var into: String?

    func validate() throws {
        guard (target == nil) != (into == nil) else { throw ValidationError("give either --to KEY or --into INSTANCE") }
        for value in [target, into].compactMap({ $0 }) where value.isEmpty || value.contains(where: { $0.isWhitespace }) {
            throw ValidationError("\"\(value)\" must not be empty or contain spaces")
        }
    }

    func run() throws {
        if let into {
            let answer = try adminCommand(options, .rewrapInto(instance: into), timeoutSeconds: 3600, answer: RewrapIntoAnswer.self)
            print("copied \(answer.copied) key versions of instance \"\(options.instance)\" into instance \"\(into)\" (provider \(answer.provider)); \(answer.present) were there already")
            printFailures(answer.failed)
            if !answer.failed.isEmpty {
                throw CommandError("\(answer.failed.count) key versions were not copied; fix the cause and run rewrap --into again (copied ones are kept)")
            }
            print("instance \"\(into)\" now serves every key of \"\(options.instance)\"; point MariaDB at it (keybroker_key_management_instance) or swap the instance names in the configuration")
            return
        }
        guard let target else { return }
        let answer = try adminCommand(options, .rewrap(masterKey: target), timeoutSeconds: 3600, answer: RewrapAnswer.self)
        print("rewrapped \(answer.rewrapped) key versions of instance \"\(options.instance)\" under \(target)")
        printFailures(answer.failed)
        if !answer.failed.isEmpty {
            throw CommandError("\(answer.failed.count) key versions were not rewrapped (their old files are kept); fix the cause and run rewrap again")
        }
        print("now set master_key_id = \"\(target)\" in [instances.\(options.instance)] so new keys use it too, and restart keybrokerd")
    }
}

struct Unlock: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Two-factor start: unlock an instance with a one-time code from its MFA device.")
    @OptionGroup var options: GlobalOptions
    @Option(name: .customLong("token-code"), help: ArgumentHelp("The 6-digit code.", valueName: "NNNNNN")) var tokenCode: String

    func validate() throws {
        guard tokenCode.count == 6, tokenCode.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw ValidationError("--token-code must be the 6 digits the MFA device shows")
        }
    }

    func run() throws {
        let answer = try adminCommand(options, .unlock(tokenCode: tokenCode), timeoutSeconds: 60, answer: UnlockAnswer.self)
        print(answer.message)
    }
}

/// The instance's key directory and file prefix, from the configuration.
struct InstanceFiles {
    let config: BrokerConfig
    let instance: InstanceConfig
    let directory: KeyFileDirectory

    init(_ options: GlobalOptions) throws(CommandError) {
        do {
            config = try BrokerConfig.load(path: options.config)
        } catch {
            throw CommandError(error.description)
        }
        guard let instance = config.instance(named: options.instance) else {
            throw CommandError("\(options.config) has no instance \"\(options.instance)\"; name one with --instance NAME")
        }
        self.instance = instance
        let prefix: String
        switch instance.provider {
        case .aws: prefix = "aws-kms-key"
        case .local: prefix = "local-key"
        case .kmip: prefix = "kmip-key"
        }
        directory = KeyFileDirectory(path: "\(config.stateDirectory)/\(instance.name)", prefix: prefix)
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Copy key files (aws-kms-key.ID.VERSION, kmip-key.ID.VERSION) into an instance and have the broker load them.",
        discussion: "For an aws instance DIR is a MariaDB datadir or aws_key_management_keyfile_dir; for a kmip instance, a directory written by export. Files are written atomically with the daemon's owner and mode; an existing different file is never overwritten.")
    @OptionGroup var options: GlobalOptions
    @Option(name: .customLong("from"), help: ArgumentHelp("Directory holding the instance's key files (aws-kms-key.* or kmip-key.*).", valueName: "dir")) var from: String

    func run() throws {
        let files = try InstanceFiles(options)
        if case .local = files.instance.provider {
            throw CommandError("instance \"\(options.instance)\" uses provider local; key files can be imported into instances with provider = \"aws\" or \"kmip\"")
        }
        let source = KeyFileDirectory(path: from, prefix: files.directory.prefix)
        let refs = try storedVersions(in: source)
        guard !refs.isEmpty else { throw CommandError("\(from) holds no \(files.directory.prefix).ID.VERSION files") }
        let owner = directoryOwner(files.config.stateDirectory)
        try prepareDirectory(files.config.stateDirectory, owner: owner)
        try prepareDirectory(files.directory.path, owner: owner)
        let (present, conflicts) = try copyVersions(refs, from: source, to: files.directory, copied: "imported")
        var problems = conflicts
        var connection: BrokerConnection
        do {
            connection = try options.connect()
        } catch {
            print("the broker is not reachable (\(error.description)); it loads the imported keys when it starts")
            if problems > 0 { throw CommandError("\(problems) of \(refs.count) files were not imported") }
            return
        }
        defer { connection.close() }
        for ref in present {
            do {
                guard case let .getKey(bytes) = try connection.call(.getKey(keyID: ref.keyID, version: ref.version)) else {
                    throw CommandError("unexpected answer to GET_KEY")
                }
                let key = secureKey(bytes)
                print("key \(ref.keyID) version \(ref.version): loaded (\(key.count * 8) bits, fingerprint \(key.fingerprint))")
            } catch {
                print("key \(ref.keyID) version \(ref.version): FAILED to load: \(error)")
                problems += 1
            }
        }
        if problems > 0 { throw CommandError("\(problems) of \(refs.count) key files were not imported or did not load") }
        print("imported \(refs.count) key files into instance \"\(options.instance)\"")
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Copy an instance's key files to a directory (a backup, or a datadir for aws_key_management).",
        discussion: "Files are written atomically; an existing different file is never overwritten.")
    @OptionGroup var options: GlobalOptions
    @Option(name: .customLong("to"), help: ArgumentHelp("Target directory (created if missing).", valueName: "dir")) var target: String

    func run() throws {
        let files = try InstanceFiles(options)
        let refs = try storedVersions(in: files.directory)
        guard !refs.isEmpty else { throw CommandError("instance \"\(options.instance)\" has no key files in \(files.directory.path)") }
        try prepareDirectory(target, owner: nil)
        let destination = KeyFileDirectory(path: target, prefix: files.directory.prefix)
        let conflicts = try copyVersions(refs, from: files.directory, to: destination, copied: "exported").conflicts
        if conflicts > 0 { throw CommandError("\(conflicts) of \(refs.count) files were not exported") }
        print("exported \(refs.count) key files of instance \"\(options.instance)\" to \(target)")
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the broker's metrics in Prometheus text format.",
        discussion: """
            For node_exporter's textfile collector: keybrokerctl metrics > /var/lib/prometheus/node-exporter/keybroker.prom.$$ && \
            mv /var/lib/prometheus/node-exporter/keybroker.prom.$$ /var/lib/prometheus/node-exporter/keybroker.prom (a cron job or a timer). \
            Or let Prometheus scrape metrics_listen.
            """)
    @OptionGroup var options: GlobalOptions

    func run() throws {
        let answer = try adminCommand(options, .metrics(format: "prometheus"), timeoutSeconds: 30, answer: MetricsAnswer.self)
        print(answer.text, terminator: "")
    }
}
