import KMIPProtocol

// libFuzzer target for the bytes a KMIP server (or whoever answers on its port) controls:
// TTLVDecoder, TTLVDecoder.messageLength and ResponseMessage. Every check traps, so libFuzzer
// saves the input that broke it.
//
//     input ──▶ messageLength(header:) ── the length the transport would read, never negative
//           ──▶ TTLVDecoder.decode ──▶ encode ──▶ same length as the input, decodes to the same tree
//                                 ──▶ ResponseMessage(_:) ── a failure or items, never a crash

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    if let length = try? TTLVDecoder.messageLength(header: input) {
        check(length >= 8, "message length \(length) shorter than its header")
    }
    guard let item = try? TTLVDecoder.decode(input) else { return 0 }
    let encoded = TTLVEncoder.encode(item)
    check(encoded.count == input.count, "re-encoding changed the length: \(input.count) → \(encoded.count)")
    check((try? TTLVDecoder.decode(encoded)) == item, "re-encoded bytes decode to another tree")
    if case .structure = item.value {
        check((try? TTLVDecoder.messageLength(header: input)) == input.count || input[0] != 0x42, "header length disagrees with the item")
    }
    if let message = try? ResponseMessage(item) {
        for answer in message.items {
            _ = answer.failureText
            _ = Payloads.identifiers(in: answer.payload)
            _ = Payloads.attributes(in: answer.payload)
            _ = Payloads.encrypted(in: answer.payload)
            _ = Payloads.versions(in: answer.payload)
        }
    }
    return 0
}

private func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}
