import KMIPProtocol
import Synchronization

/// Where the batcher's messages go: the KMIP client, or a test's stand-in.
protocol BatchItemSending: Sendable {
    func call(_ items: [RequestMessage.Item]) async throws(KMIPError) -> [ResponseMessage.Item]
}

extension KMIPClient: BatchItemSending {}

/// Sends Decrypt requests that wait at the same time (a warm-up of many stored keys) together, as
/// the batch items of one KMIP message, up to `batchSize` a message and `senders` messages in
/// flight. A single request goes alone, at once. A server that refuses batches is spoken to one
/// item at a time from then on.
///
/// While a message is in flight, a batch goes only when it is full: the answers of the message in
/// flight come back as new requests a moment later, and a part-filled batch sent at once would
/// split them between two messages (a warm-up of 1,000 keys at PyKMIP sent 93 messages of 10.8
/// items on average instead of 63 of 16). What is left waits at most until that message returns,
/// and then goes however many there are, so the server is never left without work that waits.
final class DecryptBatcher: Sendable {
    typealias Answer = Result<ResponseMessage.Item, KMIPError>

    private struct Waiting {
        var item: RequestMessage.Item
        var continuation: CheckedContinuation<Answer, Never>
    }

    private struct State {
        var queue: [Waiting] = []
        var head = 0
        /// Drain loops running, whether in flight or choosing their next batch.
        var sending = 0
        var inFlight = 0
        var batchesRefused = false

        var waiting: Int { queue.count - head }
    }

    private let client: any BatchItemSending
    let batchSize: Int
    let senders: Int
    private let state = Mutex(State())

    init(client: any BatchItemSending, batchSize: Int, concurrency: Int) {
        self.client = client
        self.batchSize = max(1, batchSize)
        senders = max(1, (max(1, concurrency) + self.batchSize - 1) / self.batchSize)
    }

    func submit(_ item: RequestMessage.Item) async throws(KMIPError) -> ResponseMessage.Item {
        let answer = await withCheckedContinuation { (continuation: CheckedContinuation<Answer, Never>) in
            let startSender = state.withLock { state -> Bool in
                state.queue.append(Waiting(item: item, continuation: continuation))
                let unbatched = batchSize == 1 || state.batchesRefused
                guard state.sending < (unbatched ? Int.max : senders) else { return false }
                // Part of a batch, with a sender already running: that sender takes it.
                guard state.sending == 0 || state.waiting >= (unbatched ? 1 : batchSize) else { return false }
                state.sending += 1
                return true
            }
            if startSender { Task { await self.drain() } }
        }
        return try answer.get()
    }

    /// The next batch, or none: then this sender stops (the queue is empty, or holds less than a
    /// batch while another message is in flight, whose sender takes it on its return).
    private func next(returning: Bool) -> [Waiting] {
        state.withLock { state in
            if returning { state.inFlight -= 1 }
            let limit = state.batchesRefused ? 1 : batchSize
            guard state.waiting > 0, state.waiting >= limit || state.inFlight == 0 else {
                state.sending -= 1
                return []
            }
            let end = min(state.queue.count, state.head + limit)
            let taken = Array(state.queue[state.head..<end])
            state.head = end
            if state.head == state.queue.count {
                state.queue.removeAll(keepingCapacity: true)
                state.head = 0
            }
            state.inFlight += 1
            return taken
        }
    }

    private func drain() async {
        var returning = false
        while true {
            let batch = next(returning: returning)
            if batch.isEmpty { return }
            await send(batch)
            returning = true
        }
    }

    private func send(_ batch: [Waiting]) async {
        do throws(KMIPError) {
            let answers = try await client.call(batch.map(\.item))
            if batch.count > 1, answers.allSatisfy({ $0.status != .success && Self.refusesBatches($0.reason) }) {
                state.withLock { $0.batchesRefused = true }
                for waiting in batch {
                    do throws(KMIPError) {
                        waiting.continuation.resume(returning: .success(try await client.call([waiting.item])[0]))
                    } catch {
                        waiting.continuation.resume(returning: .failure(error))
                    }
                }
                return
            }
            for (waiting, answer) in zip(batch, answers) { waiting.continuation.resume(returning: .success(answer)) }
        } catch {
            for waiting in batch { waiting.continuation.resume(returning: .failure(error)) }
        }
    }

    private static func refusesBatches(_ reason: ResultReason?) -> Bool {
        reason == .invalidMessage || reason == .featureNotSupported || reason == .operationNotSupported
    }
}
