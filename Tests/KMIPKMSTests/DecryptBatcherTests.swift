@testable import KMIPKMS
import KMIPProtocol
import Synchronization
import SystemSupport
import XCTest

/// A successful, empty Decrypt answer for each item, as the stand-in servers below give.
private func successes(for items: [RequestMessage.Item]) -> [ResponseMessage.Item] {
    items.map { _ in
        ResponseMessage.Item(operation: .decrypt, batchItemID: nil, status: .success, reason: nil, message: nil,
                             payload: .structure(.responsePayload, []))
    }
}

/// A server that answers one message at a time, as PyKMIP does: a fixed cost per message and a
/// smaller one per batch item.
private final class SerialServer: BatchItemSending {
    private struct State {
        var freeAt = ContinuousClock.now
        var sizes: [Int] = []
    }

    private let state = Mutex(State())
    let perMessage: Duration
    let perItem: Duration

    init(perMessage: Duration = .milliseconds(2), perItem: Duration = .microseconds(200)) {
        self.perMessage = perMessage
        self.perItem = perItem
    }

    var sizes: [Int] { state.withLock { $0.sizes } }

    func call(_ items: [RequestMessage.Item]) async throws(KMIPError) -> [ResponseMessage.Item] {
        let done = state.withLock { state in
            let start = max(ContinuousClock.now, state.freeAt)
            state.freeAt = start + perMessage + perItem * items.count
            state.sizes.append(items.count)
            return state.freeAt
        }
        try? await Task.sleep(until: done, clock: .continuous)
        return successes(for: items)
    }
}

/// A server whose answers wait until the test releases them, one message at a time, so the test
/// decides what is in flight when the batcher chooses its next batch.
private final class GatedServer: BatchItemSending {
    private struct State {
        var sizes: [Int] = []
        var held: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var sizes: [Int] { state.withLock { $0.sizes } }

    func call(_ items: [RequestMessage.Item]) async throws(KMIPError) -> [ResponseMessage.Item] {
        await withCheckedContinuation { continuation in
            state.withLock { state in
                state.sizes.append(items.count)
                state.held.append(continuation)
            }
        }
        return successes(for: items)
    }

    /// Answers the oldest message still held.
    func releaseOldest() {
        let continuation = state.withLock { state in state.held.isEmpty ? nil : state.held.removeFirst() }
        continuation?.resume()
    }

    /// Waits, at most five seconds, until `count` messages have arrived.
    func waitForMessages(_ count: Int) async {
        let deadline = ContinuousClock.now + .seconds(5)
        while sizes.count < count, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(1)) }
    }
}

final class DecryptBatcherTests: XCTestCase {
    private let item = Payloads.decrypt("mk-1", parameters: .structure(.cryptographicParameters, []), data: [1, 2, 3], iv: nil)

    /// A warm-up as InstanceKeyStore runs it: `concurrency` keys at a time, each doing some work of
    /// its own (the key file, the check value) after its Decrypt before the next key starts.
    private func warmUp(_ batcher: DecryptBatcher, keys: Int, concurrency: Int) async -> Int {
        let item = item
        let answered = await mapWithBoundedConcurrency(Array(0..<keys), limit: concurrency) { _ in
            let answer = try? await batcher.submit(item)
            try? await Task.sleep(for: .microseconds(300))
            return answer?.status == .success
        }
        return answered.filter { $0 }.count
    }

    func testAWarmUpSendsFullBatches() async {
        let server = SerialServer()
        let batcher = DecryptBatcher(client: server, batchSize: 16, concurrency: 32)
        let keys = 1000
        let answered = await warmUp(batcher, keys: keys, concurrency: 32)
        XCTAssertEqual(answered, keys)
        let sizes = server.sizes
        XCTAssertEqual(sizes.reduce(0, +), keys)
        XCTAssertLessThanOrEqual(sizes.max() ?? 0, 16)
        // Which part-filled batches go depends on how the machine schedules the keys' own work (a
        // loaded 2-CPU CI machine: 63-67 messages); the rule behind it is tested exactly below.
        XCTAssertLessThanOrEqual(sizes.count, (keys + 15) / 16 * 115 / 100, "batch sizes \(sizes)")
    }

    func testAPartFilledBatchWaitsUntilNoMessageIsInFlight() async {
        let server = GatedServer()
        let batcher = DecryptBatcher(client: server, batchSize: 16, concurrency: 32)
        let item = item
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await batcher.submit(item))?.status == .success }
            await server.waitForMessages(1)
            for _ in 0..<20 { group.addTask { (try? await batcher.submit(item))?.status == .success } }
            await server.waitForMessages(2)
            XCTAssertEqual(server.sizes, [1, 16], "a lone request goes at once, 16 waiting go as a second message")

            // The lone message returns while the full one is in flight: the 4 left wait for it.
            server.releaseOldest()
            try? await Task.sleep(for: .milliseconds(100))
            XCTAssertEqual(server.sizes, [1, 16], "a part-filled batch went while a message was in flight")

            server.releaseOldest()
            await server.waitForMessages(3)
            XCTAssertEqual(server.sizes, [1, 16, 4], "what is left goes when no message is in flight")
            server.releaseOldest()
            var answered = 0
            for await success in group where success { answered += 1 }
            XCTAssertEqual(answered, 21)
        }
    }

    func testALoneRequestGoesAtOnceAndAloneAndThePartOfABatchLeftGoesWhenTheMessageInFlightReturns() async {
        let server = SerialServer(perMessage: .milliseconds(50))
        let batcher = DecryptBatcher(client: server, batchSize: 16, concurrency: 32)
        let clock = ContinuousClock()
        let started = clock.now
        let answer = try? await batcher.submit(item)
        XCTAssertEqual(answer?.status, .success)
        XCTAssertLessThan(clock.now - started, .milliseconds(500))
        XCTAssertEqual(server.sizes, [1])
        // 20 at once: the first message takes what is queued when its sender starts, a second goes
        // only once 16 wait, and what is left goes when a message returns: 3 messages at most.
        let answered = await warmUp(batcher, keys: 20, concurrency: 20)
        XCTAssertEqual(answered, 20)
        XCTAssertEqual(server.sizes.dropFirst().reduce(0, +), 20)
        XCTAssertLessThanOrEqual(server.sizes.count, 1 + 3)
    }

    func testBatchSizeOneSendsEachAlone() async {
        let server = SerialServer(perMessage: .microseconds(100))
        let batcher = DecryptBatcher(client: server, batchSize: 1, concurrency: 32)
        let answered = await warmUp(batcher, keys: 100, concurrency: 32)
        XCTAssertEqual(answered, 100)
        XCTAssertEqual(server.sizes, Array(repeating: 1, count: 100))
    }
}
