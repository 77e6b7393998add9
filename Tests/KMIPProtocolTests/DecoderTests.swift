import KMIPProtocol
import XCTest

/// Malformed input: every case is refused with its own error, none crashes.
final class DecoderTests: XCTestCase {
    func decodeError(_ bytes: [UInt8]) -> TTLVError.Code? {
        do {
            _ = try TTLVDecoder.decode(bytes)
            return nil
        } catch {
            return error.code
        }
    }

    let integer: [UInt8] = [0x42, 0x00, 0x20, 0x02, 0, 0, 0, 4, 0, 0, 0, 8, 0, 0, 0, 0]

    func testScalarsOfTheSpecificationExamples() throws {
        // KMIP 1.x specification 9.1.2: an Integer 8, a Text String "Hello World", a Boolean true.
        XCTAssertEqual(try TTLVDecoder.decode(integer), .integer(Tag(0x420020), 8))
        let text = Vectors.hex("420020 07 0000000B 48656C6C6F20576F726C64 0000000000")
        XCTAssertEqual(try TTLVDecoder.decode(text), .text(Tag(0x420020), "Hello World"))
        XCTAssertEqual(TTLVEncoder.encode(.text(Tag(0x420020), "Hello World")), text)
        let boolean = Vectors.hex("420020 06 00000008 0000000000000001")
        XCTAssertEqual(try TTLVDecoder.decode(boolean), .boolean(Tag(0x420020), true))
        let long = Vectors.hex("420020 03 00000008 01B69B4BA5749200")
        XCTAssertEqual(try TTLVDecoder.decode(long), TTLV(Tag(0x420020), .longInteger(123_456_789_000_000_000)))
        let interval = Vectors.hex("420020 0A 00000004 000D2F00 00000000")
        XCTAssertEqual(try TTLVDecoder.decode(interval), TTLV(Tag(0x420020), .interval(864_000)))
        let big = Vectors.hex("420020 04 00000010 0000000000000000 0000000000000001")
        XCTAssertEqual(TTLVEncoder.encode(try TTLVDecoder.decode(big)), big)
    }

    func testEveryTruncationOfAMessageIsRefused() {
        let message = Vectors.locateResponse
        for length in 0..<message.count {
            XCTAssertNotNil(decodeError(Array(message.prefix(length))), "prefix of \(length) bytes")
        }
    }

    func testBadInput() {
        XCTAssertEqual(decodeError(integer + [0]), .trailingBytes)
        var badLength = integer
        badLength[7] = 8
        XCTAssertEqual(decodeError(badLength + [0, 0, 0, 0, 0, 0, 0, 0]), .badLength)
        var badType = integer
        badType[3] = 0x0C
        XCTAssertEqual(decodeError(badType), .unknownType)
        XCTAssertEqual(decodeError(Vectors.hex("420020 06 00000008 0000000000000002")), .badValue)
        XCTAssertEqual(decodeError(Vectors.hex("420020 07 00000002 C328 000000000000")), .badValue)
        XCTAssertEqual(decodeError(Vectors.hex("420020 01 FFFFFFF0")), .truncated)
        XCTAssertEqual(decodeError(Vectors.hex("420020 04 00000004 00000001 00000000")), .badLength)
        // A child that runs past its structure's end.
        XCTAssertEqual(decodeError(Vectors.hex("420079 01 00000008 420020 02 00000004 00000008 00000000")), .truncated)
    }

    func testNestingDeeperThanTheLimitIsRefused() {
        var bytes: [UInt8] = []
        for depth in 0...TTLVDecoder.maximumDepth {
            let remaining = UInt32(8 * (TTLVDecoder.maximumDepth - depth))
            bytes += [0x42, 0x00, 0x01, 0x01, UInt8(remaining >> 24), UInt8(remaining >> 16 & 0xFF), UInt8(remaining >> 8 & 0xFF), UInt8(remaining & 0xFF)]
        }
        XCTAssertEqual(decodeError(bytes), .tooDeep)
        XCTAssertNoThrow(try TTLVDecoder.decode(Array(bytes[8...])))  // exactly at the limit
    }

    func testMessageHeader() {
        XCTAssertThrowsError(try TTLVDecoder.messageLength(header: [0x48, 0x54, 0x54, 0x50, 0x2F, 0x31, 0x2E, 0x31])) { error in
            XCTAssertEqual((error as? TTLVError)?.code, .notAMessage)
        }
        XCTAssertThrowsError(try TTLVDecoder.messageLength(header: [0x42, 0x00]))
    }

    func testResponseWithAFailedItem() throws {
        let answer = TTLV.structure(.responseMessage, [
            .structure(.responseHeader, [
                .structure(.protocolVersion, [.integer(.protocolVersionMajor, 1), .integer(.protocolVersionMinor, 4)]),
                TTLV(.timeStamp, .dateTime(1)), .integer(.batchCount, 1),
            ]),
            .structure(.batchItem, [
                .enumeration(.operation, Operation.encrypt.rawValue),
                .enumeration(.resultStatus, ResultStatus.operationFailed.rawValue),
                .enumeration(.resultReason, 0x0C),
                .text(.resultMessage, "The encryption key must be in the Active state\nto be used"),
            ]),
        ])
        let message = try ResponseMessage(decoding: TTLVEncoder.encode(answer))
        XCTAssertEqual(message.items[0].reason, .permissionDenied)
        XCTAssertEqual(message.items[0].failureText, "Permission Denied: The encryption key must be in the Active state to be used")
        var wrongCount = answer
        if case var .structure(children) = wrongCount.value {
            children.append(children[1])
            wrongCount.value = .structure(children)
        }
        XCTAssertThrowsError(try ResponseMessage(decoding: TTLVEncoder.encode(wrongCount)))
    }
}
