import BrokerProtocol
import KeyStore
import KMIPProtocol
import Logging
import ProviderSettings
import SecureMemory
import Synchronization
import SystemSupport

/// KMIP operations over the transport: the protocol version agreed once with Discover Versions,
/// then request messages of one or more batch items, with the retry rules of the aws provider —
/// transport failures and General Failure are retried up to `maxRetries` times after a random
/// pause of up to base × 2^attempt; every other failure is final.
final class KMIPClient: Sendable {
    let transport: KMIPTransport
    let maxRetries: Int
    private let logger: Logger
    private let negotiated = Mutex<ProtocolVersion?>(nil)

    /// What Discover Versions offers, best first.
    let offered: [ProtocolVersion]

    init(transport: KMIPTransport, maxRetries: Int, maximumVersion: ProtocolVersion, logger: Logger) {
        self.transport = transport
        self.maxRetries = maxRetries
        self.logger = logger
        offered = ProtocolVersion.supported.filter { $0 <= maximumVersion }
    }

    /// The version in use: the best of the server's Discover Versions answer that keybroker
    /// speaks (1.4, 1.3, 1.2). A server without Discover Versions is spoken to in 1.2.
    func version() async throws(KMIPError) -> ProtocolVersion {
        if let version = negotiated.withLock({ $0 }) { return version }
        let request = RequestMessage(version: .v1_2, items: [Payloads.discoverVersions(offered)])
        let answer = try await send(request, retries: maxRetries)
        let version: ProtocolVersion
        if let item = answer.items.first, item.status == .success {
            let listed = Payloads.versions(in: item.payload)
            guard let common = listed.first(where: { self.offered.contains($0) }) else {
                throw KMIPError(.setup, server: nil, message: "the server speaks KMIP \(listed.map(\.description).joined(separator: ", ")); keybroker offers \(self.offered.map(\.description).joined(separator: ", "))")
            }
            version = common
        } else {
            version = .v1_2
        }
        negotiated.withLock { $0 = version }
        logger.info("KMIP protocol \(version) agreed with the server")
        return version
    }

    /// Sends the items in one message and returns one answer per item, in request order.
    func call(_ items: [RequestMessage.Item]) async throws(KMIPError) -> [ResponseMessage.Item] {
        let version = try await version()
        let answer = try await send(RequestMessage(version: version, items: items), retries: maxRetries)
        return try Self.match(answer.items, to: items)
    }

    /// One item, failing with its KMIP result when the server refuses it.
    func callOne(_ item: RequestMessage.Item) async throws(KMIPError) -> TTLV {
        let answer = try await call([item])[0]
        guard answer.status == .success else {
            throw KMIPError(.operation(item.operation, answer.reason ?? .generalFailure), server: transport.currentServer, message: answer.failureText)
        }
        return answer.payload
    }

    static func match(_ answers: [ResponseMessage.Item], to items: [RequestMessage.Item]) throws(KMIPError) -> [ResponseMessage.Item] {
        if items.count == 1 {
            guard let first = answers.first else { throw KMIPError(.malformed, server: nil, message: "the answer holds no batch item") }
            // A message-level failure (an unreadable request, a refused certificate) comes back as
            // one item without our batch ID; it answers the whole message.
            return [first]
        }
        var byID: [[UInt8]: ResponseMessage.Item] = [:]
        for answer in answers {
            if let id = answer.batchItemID { byID[id] = answer }
        }
        if byID.isEmpty, let only = answers.first, only.status != .success {
            return Array(repeating: only, count: items.count)
        }
        return items.indices.map { index in
            byID[RequestMessage.batchItemID(index)] ?? ResponseMessage.Item(
                operation: items[index].operation, batchItemID: nil, status: .operationFailed, reason: .generalFailure,
                message: "the server left this batch item unanswered", payload: .structure(.responsePayload, []))
        }
    }

    private func send(_ request: RequestMessage, retries: Int) async throws(KMIPError) -> ResponseMessage {
        var attempt = 0
        while true {
            do throws(KMIPError) {
                return try await sendOnce(request)
            } catch {
                guard error.isRetryable, attempt < retries else { throw error }
                attempt += 1
                let pause = RetryBackoff.pauseMilliseconds(attempt: attempt)
                logger.warning("\(error.description); retry \(attempt) of \(retries) in \(pause) ms")
                try? await Task.sleep(for: .milliseconds(pause))
            }
        }
    }

    private func sendOnce(_ request: RequestMessage) async throws(KMIPError) -> ResponseMessage {
        // Encrypt carries a data key: the encoded message is zeroed once sent (the caller zeroes
        // its items once every attempt is over).
        let bytes = request.encoded()
        defer { bytes.withUnsafeBytes { KMIPSecrets.zero($0) } }
        var answer = try await transport.exchange(bytes)
        defer { answer.cleanse() }
        let message: ResponseMessage
        do {
            message = try ResponseMessage(decoding: answer)
        } catch {
            throw KMIPError(.malformed, server: transport.currentServer, message: error.description)
        }
        if message.items.count == 1, let only = message.items.first, only.status != .success,
           only.reason == .authenticationNotSuccessful {
            throw KMIPError(.clientCertificate, server: transport.currentServer, message: "KMIP Authentication Not Successful: \(only.message ?? "")")
        }
        return message
    }
}
