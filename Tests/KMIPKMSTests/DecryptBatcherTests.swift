@testable import KMIPKMS
import KMIPProtocol
import Synchronization
import SystemSupport
import XCTest

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
        return items.map { _ in
            ResponseMessage.Item(operation: .decrypt, batchItemID: nil, status: .success, reason: nil, message: nil,
                                 payload: .structure(.responsePayload, []))
        }
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
        // The first key goes alone before the others are queued, the last few may not fill a batch.
        XCTAssertLessThanOrEqual(sizes.count, (keys + 15) / 16 + 3, "batch sizes \(sizes)")
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
