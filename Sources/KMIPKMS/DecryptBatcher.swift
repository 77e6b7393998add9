import KMIPProtocol
import Synchronization

/// Sends Decrypt requests that wait at the same time (a warm-up of many stored keys) together, as
/// the batch items of one KMIP message, up to `batchSize` a message and `senders` messages in
/// flight. A single request goes alone, at once. A server that refuses batches is spoken to one
/// item at a time from then on.
final class DecryptBatcher: Sendable {
    typealias Answer = Result<ResponseMessage.Item, KMIPError>

    private struct Waiting {
        var item: RequestMessage.Item
        var continuation: CheckedContinuation<Answer, Never>
    }

    private struct State {
        var queue: [Waiting] = []
        var head = 0
        var sending = 0
        var batchesRefused = false
    }

    private let client: KMIPClient
    let batchSize: Int
    let senders: Int
    private let state = Mutex(State())

    init(client: KMIPClient, batchSize: Int, concurrency: Int) {
        self.client = client
        self.batchSize = max(1, batchSize)
        senders = max(1, (max(1, concurrency) + self.batchSize - 1) / self.batchSize)
    }

    func submit(_ item: RequestMessage.Item) async throws(KMIPError) -> ResponseMessage.Item {
        let answer = await withCheckedContinuation { (continuation: CheckedContinuation<Answer, Never>) in
            let startSender = state.withLock { state -> Bool in
                state.queue.append(Waiting(item: item, continuation: continuation))
                guard state.sending < (batchSize == 1 || state.batchesRefused ? Int.max : senders) else { return false }
                state.sending += 1
                return true
            }
            if startSender { Task { await self.drain() } }
        }
        return try answer.get()
    }

    private func next() -> [Waiting] {
        state.withLock { state in
            let limit = state.batchesRefused ? 1 : batchSize
            let end = min(state.queue.count, state.head + limit)
            let taken = Array(state.queue[state.head..<end])
            state.head = end
            if state.head == state.queue.count {
                state.queue.removeAll(keepingCapacity: true)
                state.head = 0
            }
            if taken.isEmpty { state.sending -= 1 }
            return taken
        }
    }

    private func drain() async {
        while true {
            let batch = next()
            if batch.isEmpty { return }
            await send(batch)
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
