/// A KMIP response, read from a decoded TTLV tree. Only what keybroker needs is taken; anything
/// else the server sends is ignored.
public struct ResponseMessage: Sendable {
    public struct Item: Sendable {
        public var operation: Operation?
        public var batchItemID: [UInt8]?
        public var status: ResultStatus
        public var reason: ResultReason?
        public var message: String?
        /// Empty for a failed item.
        public var payload: TTLV

        public init(operation: Operation?, batchItemID: [UInt8]?, status: ResultStatus, reason: ResultReason?,
                    message: String?, payload: TTLV) {
            self.operation = operation
            self.batchItemID = batchItemID
            self.status = status
            self.reason = reason
            self.message = message
            self.payload = payload
        }

        /// The failure as KMIP states it: "Permission Denied: The object …".
        public var failureText: String {
            let reasonText = reason?.description ?? "no reason given"
            if let message, !message.isEmpty { return "\(reasonText): \(Self.oneLine(message))" }
            return reasonText
        }

        static func oneLine(_ text: String) -> String {
            String(text.split(whereSeparator: \.isNewline).joined(separator: " ").prefix(300))
        }
    }

    public var version: ProtocolVersion
    public var timeStamp: Int64?
    public var items: [Item]

    public init(_ message: TTLV) throws(TTLVError) {
        guard message.tag == .responseMessage, message.typeCode == 0x01 else {
            throw TTLVError(.notAMessage, at: 0, "the answer is not a KMIP Response Message (tag \(message.tag))")
        }
        guard let header = message[.responseHeader], let versionItem = header[.protocolVersion], let version = ProtocolVersion(versionItem) else {
            throw TTLVError(.badValue, at: 0, "the response has no header with a protocol version")
        }
        self.version = version
        timeStamp = header[.timeStamp]?.dateTime
        var items: [Item] = []
        for batch in message.all(.batchItem) {
            items.append(try Self.item(batch))
        }
        if let count = header[.batchCount]?.int32, count != items.count {
            throw TTLVError(.badValue, at: 0, "the header counts \(count) batch items, the message holds \(items.count)")
        }
        self.items = items
    }

    private static func item(_ batch: TTLV) throws(TTLVError) -> Item {
        let statusValue = batch[.resultStatus]?.enumValue ?? UInt32.max
        guard let status = ResultStatus(rawValue: statusValue) else {
            throw TTLVError(.badValue, at: 0, "a batch item has no valid Result Status")
        }
        var operation: Operation?
        if let raw = batch[.operation]?.enumValue { operation = Operation(rawValue: raw) }
        var reason: ResultReason?
        if let raw = batch[.resultReason]?.enumValue { reason = ResultReason(rawValue: raw) }
        let payload = batch[.responsePayload] ?? TTLV(.responsePayload, .structure([]))
        return Item(operation: operation, batchItemID: batch[.uniqueBatchItemID]?.byteString, status: status,
                    reason: reason, message: batch[.resultMessage]?.text, payload: payload)
    }

    public init(decoding bytes: [UInt8]) throws(TTLVError) {
        try self.init(TTLVDecoder.decode(bytes))
    }
}
