import ArgumentParser
import BrokerProtocol

/// `keybrokerctl store status|push|verify`: an instance's shared key store, through the daemon
/// (which holds the credentials; keybrokerctl never talks to S3 itself).
struct Store: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect, fill or check an instance's shared key store (store = \"s3://…\").",
        subcommands: [StoreStatus.self, StorePush.self, StoreVerify.self])
}

/// "1.1 2.3 …", with how many more the daemon did not list.
private func versionList(_ refs: [KeyRef], count: Int) -> String {
    refs.map { "\($0.keyID).\($0.version)" }.joined(separator: " ") + (refs.count < count ? " … (\(count - refs.count) more)" : "")
}

private func printFailures(_ failed: [KeyVersionFailure], count: Int) {
    for failure in failed {
        print("key \(failure.ref.keyID) version \(failure.ref.version): FAILED: \(failure.message)")
    }
    if failed.count < count { print("… and \(count - failed.count) more failures") }
}

struct StoreStatus: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status",
        abstract: "Objects and versions in the shared store, versions only this host has, the last sync.")
    @OptionGroup var options: GlobalOptions
    @Flag(name: .long, help: "Print the daemon's JSON answer.") var json = false

    func run() throws {
        let answer = try adminCommand(options, .store(.status), timeoutSeconds: 300, answer: StoreStatusAnswer.self)
        if json {
            print(answer.json)
            return
        }
        print("instance \"\(answer.instance)\": store \(answer.store)")
        print("objects: \(answer.objects) (\(answer.keyIDs) key ids); versions served here: \(answer.versionsServed); not yet in the cache: \(answer.notCached)")
        print("last sync: \(answer.lastSync ?? "never")\(answer.lastError.map { "; last error: \($0)" } ?? ""); refresh every \(answer.refreshMilliseconds) ms")
        if answer.localOnly > 0 {
            print("\(answer.localOnly) versions only on this host (other brokers cannot serve them; run keybrokerctl store push): \(versionList(answer.localOnlyVersions, count: answer.localOnly))")
        }
    }
}

struct StorePush: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "push",
        abstract: "Upload every key version this host has and the shared store lacks (never overwrites; safe to run again).")
    @OptionGroup var options: GlobalOptions

    func run() throws {
        let answer = try adminCommand(options, .store(.push), timeoutSeconds: 3600, answer: StorePushAnswer.self)
        print("uploaded \(answer.uploaded) key versions of instance \"\(answer.instance)\"; \(answer.present) were in the store already")
        printFailures(answer.failed, count: answer.failedCount)
        if answer.failedCount > 0 {
            throw CommandError("\(answer.failedCount) key versions were not uploaded; fix the cause and run store push again (uploaded ones are kept)")
        }
    }
}

struct StoreVerify: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify",
        abstract: "Check that every object decrypts to the key served for it and that the local cache agrees with the store.")
    @OptionGroup var options: GlobalOptions

    func run() throws {
        let answer = try adminCommand(options, .store(.verify), timeoutSeconds: 3600, answer: StoreVerifyAnswer.self)
        print("verified \(answer.verified) of \(answer.checked) objects of instance \"\(answer.instance)\"")
        if answer.localOnly > 0 {
            print("versions only on this host, not in the store (run keybrokerctl store push): \(versionList(answer.localOnlyVersions, count: answer.localOnly))")
        }
        printFailures(answer.failed, count: answer.failedCount)
        if answer.failedCount > 0 || answer.localOnly > 0 {
            throw CommandError("the store and this host do not agree: \(answer.failedCount) objects failed, \(answer.localOnly) versions are only here")
        }
    }
}
