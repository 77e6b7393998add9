/// A KMIP request: a header and one or more batch items (KMIP 1.x specification, section 7).
///
///     Request Message
///       Request Header: Protocol Version, [Maximum Response Size], [Batch Error Continuation
///                       Option], [Batch Order Option], Batch Count
///       Batch Item × n: Operation, [Unique Batch Item ID], Request Payload
public struct RequestMessage: Sendable {
    public struct Item: Sendable {
        public var operation: Operation
        public var payload: [TTLV]
        public init(_ operation: Operation, _ payload: [TTLV]) {
            self.operation = operation
            self.payload = payload
        }
    }

    public var version: ProtocolVersion
    public var items: [Item]
    public var maximumResponseSize: Int32?

    public init(version: ProtocolVersion, items: [Item], maximumResponseSize: Int32? = nil) {
        self.version = version
        self.items = items
        self.maximumResponseSize = maximumResponseSize
    }

    /// The batch item ID of item `index` in a batch of more than one (a single item has none, as
    /// in the specification's test cases).
    public static func batchItemID(_ index: Int) -> [UInt8] {
        let value = UInt32(index + 1)
        return [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    public var ttlv: TTLV {
        var header: [TTLV] = [version.ttlv]
        if let maximumResponseSize { header.append(.integer(.maximumResponseSize, maximumResponseSize)) }
        if items.count > 1 {
            // Every item is answered even when one fails; the order does not matter.
            header.append(.enumeration(.batchErrorContinuationOption, BatchErrorContinuationOption.continue.rawValue))
            header.append(.boolean(.batchOrderOption, false))
        }
        header.append(.integer(.batchCount, Int32(items.count)))
        var children: [TTLV] = [.structure(.requestHeader, header)]
        for (index, item) in items.enumerated() {
            var batch: [TTLV] = [.enumeration(.operation, item.operation.rawValue)]
            if items.count > 1 { batch.append(.bytes(.uniqueBatchItemID, Self.batchItemID(index))) }
            batch.append(.structure(.requestPayload, item.payload))
            children.append(.structure(.batchItem, batch))
        }
        return .structure(.requestMessage, children)
    }

    public func encoded() -> [UInt8] { TTLVEncoder.encode(ttlv) }
}
