import BrokerProtocol
import NIOCore
import XCTest

final class CodecTests: XCTestCase {
    /// Feeds `bytes` to one decoder `chunk` bytes at a time, taking out everything `next` finds.
    private func decoded<T>(_ bytes: [UInt8], chunk: Int, _ next: (inout FrameDecoder, inout ByteBuffer) -> T?) -> [T] {
        var decoder = FrameDecoder()
        var buffer = ByteBuffer()
        var out: [T] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            buffer.writeBytes(bytes[offset..<end])
            offset = end
            while let item = next(&decoder, &buffer) { out.append(item) }
        }
        return out
    }

    private func frames(_ bytes: [UInt8], chunk: Int = Int.max) -> [FrameDecoder.Frame] {
        decoded(bytes, chunk: chunk) { $0.next(from: &$1) }
    }

    private func encoded(_ request: Request) -> [UInt8] {
        var buffer = ByteBuffer()
        request.encode(into: &buffer)
        return Array(buffer.readableBytesView)
    }

    private func decodeOne(_ bytes: [UInt8]) throws -> Request {
        let out = frames(bytes)
        XCTAssertEqual(out.count, 1)
        guard case let .frame(payload) = out.first else {
            XCTFail("no frame: \(out)")
            throw ProtocolError(requestID: nil, op: nil, message: "no frame")
        }
        return try Request(payload: payload)
    }

    func testEveryRequestRoundTrips() throws {
        let requests: [Request] = [
            Request(requestID: 1, body: .hello(protocolVersion: 1, instance: "default", client: "mariadbd 10.11 ✓")),
            Request(requestID: 2, body: .latestKey(keyID: 1)),
            Request(requestID: 3, body: .getKey(keyID: 0xFFFF_FFFE, version: 7)),
            Request(requestID: 4, body: .rotate(keyID: ProtocolConstants.allKeys)),
            Request(requestID: 0xFFFF_FFFF, body: .status),
            Request(requestID: 5, body: .admin(.rewrap(masterKey: "alias/next"))),
            Request(requestID: 6, body: .admin(.rewrapInto(instance: "kmip"))),
            Request(requestID: 7, body: .admin(.unlock(tokenCode: "123456"))),
            Request(requestID: 8, body: .info),
        ]
        for request in requests {
            XCTAssertEqual(try decodeOne(encoded(request)), request)
        }
    }

    /// The server's decoder (`nextRequest`, which reads LATEST_KEY and GET_KEY in place) must
    /// find exactly what the general one finds, however the bytes arrive.
    func testNextRequestAgreesWithTheGeneralDecoder() {
        let requests: [Request] = [
            Request(requestID: 1, body: .hello(protocolVersion: 1, instance: "default", client: "mariadbd")),
            Request(requestID: 2, body: .latestKey(keyID: 1)),
            Request(requestID: 3, body: .getKey(keyID: 0xFFFF_FFFE, version: 0xFFFF_FFFF)),
            Request(requestID: 4, body: .rotate(keyID: 9)),
            Request(requestID: 5, body: .status),
            Request(requestID: 6, body: .info),
            Request(requestID: 7, body: .admin(.rewrap(masterKey: "alias/next"))),
            Request(requestID: 0xFFFF_FFFF, body: .latestKey(keyID: 0)),
        ]
        // A LATEST_KEY with a GET_KEY's length and a GET_KEY with a LATEST_KEY's: refused, not
        // read in place as the other kind. Then a zero length, after which nothing is decoded.
        let malformed: [UInt8] = [0, 0, 0, 13, 0x02, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1]
            + [0, 0, 0, 9, 0x03, 0, 0, 0, 9, 0, 0, 0, 1]
        let bytes = requests.flatMap(encoded) + malformed + [0, 0, 0, 0] + encoded(requests[1])
        let expected: [FrameDecoder.DecodedRequest] = frames(bytes).map { frame in
            switch frame {
            case let .invalidLength(length, op, requestID):
                return .invalidLength(length: length, op: op, requestID: requestID)
            case let .frame(payload):
                do throws(ProtocolError) { return .request(try Request(payload: payload)) } catch { return .malformed(error) }
            }
        }
        XCTAssertEqual(expected.count, requests.count + 3)
        XCTAssertEqual(Array(expected.prefix(requests.count)), requests.map { .request($0) })
        for chunk in [1, 5, 13, Int.max] {
            XCTAssertEqual(decoded(bytes, chunk: chunk) { $0.nextRequest(from: &$1) }, expected, "chunks of \(chunk) bytes")
        }
    }

    func testHelloWireBytesMatchTheSpecification() {
        let bytes = encoded(Request(requestID: 1, body: .hello(protocolVersion: 1, instance: "default", client: "x")))
        XCTAssertEqual(bytes, [0, 0, 0, 0x13, 0x01, 0, 0, 0, 1, 0, 1, 0, 7] + Array("default".utf8) + [0, 1, UInt8(ascii: "x")])
    }

    func testFramesSplitAtEveryByteAndBackToBack() throws {
        let requests = (1...20).map { Request(requestID: UInt32($0), body: .getKey(keyID: UInt32($0), version: 1)) }
        let bytes = requests.flatMap(encoded)
        let out = frames(bytes, chunk: 1)
        XCTAssertEqual(out.count, requests.count)
        for (frame, request) in zip(out, requests) {
            guard case let .frame(payload) = frame else { return XCTFail("not a frame") }
            XCTAssertEqual(try Request(payload: payload), request)
        }
    }

    func testEveryResponseRoundTrips() throws {
        let responses: [Response] = [
            Response(op: .hello, requestID: 1, status: .ok, body: .hello(protocolVersion: 1, server: "keybrokerd")),
            Response(op: .latestKey, requestID: 2, status: .ok, body: .latestKey(version: 3, key: ByteBuffer(bytes: Array(0..<32)))),
            Response(op: .getKey, requestID: 3, status: .ok, body: .getKey(key: ByteBuffer(bytes: Array(0..<16)))),
            Response(op: .rotate, requestID: 4, status: .ok, body: .rotate([RotatedKey(keyID: 1, version: 2), RotatedKey(keyID: 5, version: 9)])),
            Response(op: .status, requestID: 5, status: .ok, body: .status(json: "{\"a\":1}")),
            Response(op: .admin, requestID: 7, status: .ok, body: .admin(json: "{\"rewrapped\":2}")),
            Response(op: .latestKey, requestID: 6, status: .unavailable, body: .failure(message: "KMS is down")),
            Response(op: .rotate, requestID: 8, status: .partial, body: .partialRotation(RotationReport(
                message: "rotated 1 of 2 keys", rotated: [RotatedKey(keyID: 1, version: 2)],
                failed: [RotationReport.Failure(keyID: 3, status: .unavailable)]))),
            Response(op: .info, requestID: 9, status: .ok, body: .info(InstanceInfo([
                ("instance", "default"), ("provider", "aws"), ("master_key", "alias/mariadb-encryption"), ("location", "eu-west-1")]))),
            Response(op: .latestKey, requestID: 10, status: .refused, body: .refusal(KeyServiceRefusal(
                message: "KMS GenerateDataKeyWithoutPlaintext failed: DisabledException", code: "DisabledException", key: "alias/x"))),
            Response(op: .latestKey, requestID: 11, status: .locked, body: .failure(message: "waits for keybrokerctl unlock")),
        ]
        for response in responses {
            var buffer = ByteBuffer()
            buffer.writeResponse(response)
            var decoder = FrameDecoder()
            guard case let .frame(payload) = decoder.next(from: &buffer) else { return XCTFail("no frame") }
            XCTAssertEqual(try Response(payload: payload), response)
        }
    }

    /// PARTIAL (7) starts with message:string, so a client from before it reads a failure with a
    /// message: here, the way the plugin and kbproto.py read any non-OK body.
    func testPartialRotationReadsAsAFailureWithAMessageToAnOlderClient() throws {
        var buffer = ByteBuffer()
        let report = RotationReport(message: String(repeating: "é", count: 300), rotated: [RotatedKey(keyID: 7, version: 3)],
                                    failed: [RotationReport.Failure(keyID: 9, status: .refused)])
        buffer.writePartialRotationAnswer(requestID: 1, report: report)
        let bytes = Array(buffer.readableBytesView)
        XCTAssertEqual(bytes[9], 7)
        let messageLength = Int(bytes[10]) << 8 | Int(bytes[11])
        XCTAssertLessThanOrEqual(messageLength, ProtocolConstants.maximumPartialMessageLength)
        XCTAssertNotNil(String(validating: bytes[12..<(12 + messageLength)], as: UTF8.self), "cut at a character boundary")
        XCTAssertEqual(bytes.count, 12 + messageLength + 4 + 8 + 4 + 5)
        XCTAssertLessThanOrEqual(4 + 6 + 2 + ProtocolConstants.maximumPartialMessageLength + 4 + 8 * ProtocolConstants.maximumRotatedKeys + 4,
                                 4 + ProtocolConstants.maximumFrameLength, "a PARTIAL answer for the most keys fits a frame")
    }

    /// REFUSED (8) starts with message:string, so an older client reads a failure with a message;
    /// code and key follow, each cut to 255 bytes at a character boundary.
    func testRefusalWireBytes() throws {
        var buffer = ByteBuffer()
        buffer.writeRefusal(op: .getKey, requestID: 2, KeyServiceRefusal(message: "no", code: "DisabledException", key: String(repeating: "é", count: 200)))
        let bytes = Array(buffer.readableBytesView)
        XCTAssertEqual(Array(bytes[4..<10]), [3, 0, 0, 0, 2, 8])
        XCTAssertEqual(Array(bytes[10..<14]), [0, 2] + Array("no".utf8))
        XCTAssertEqual(Array(bytes[14..<33]), [0, 17] + Array("DisabledException".utf8))
        let keyLength = Int(bytes[33]) << 8 | Int(bytes[34])
        XCTAssertEqual(keyLength, 254, "255 bytes would cut an é in two")
        XCTAssertEqual(bytes.count, 35 + keyLength)
        var decoder = FrameDecoder()
        guard case let .frame(payload) = decoder.next(from: &buffer) else { return XCTFail("no frame") }
        let response = try Response(payload: payload)
        XCTAssertEqual(response.message, "no")
        guard case let .refusal(refusal) = response.body else { return XCTFail("not a refusal") }
        XCTAssertEqual(refusal.key, String(repeating: "é", count: 127))
    }

    func testInfoWireBytesAndLimits() throws {
        let info = InstanceInfo([("provider", "local")])
        var buffer = ByteBuffer()
        buffer.writeInfoAnswer(requestID: 1, info: info)
        XCTAssertEqual(Array(buffer.readableBytesView),
                       [0, 0, 0, 0x19, 7, 0, 0, 0, 1, 0, 0, 1, 0, 8] + Array("provider".utf8) + [0, 5] + Array("local".utf8))
        XCTAssertEqual(info["provider"], "local")
        XCTAssertNil(info["region"])
        var tooMany = ByteBuffer()
        tooMany.writeBytes([7, 0, 0, 0, 1, 0, 0, 65])
        for _ in 0..<65 { tooMany.writeBytes([0, 1, 0x61, 0, 0]) }
        XCTAssertThrowsError(try Response(payload: tooMany))
        XCTAssertEqual(InstanceInfo(Array(repeating: ("a", "b"), count: 100)).fields.count, InstanceInfo.maximumFields)
    }

    func testLengthZeroIsRejectedWithoutARequestID() {
        XCTAssertEqual(frames([0, 0, 0, 0, 1, 2, 3]), [.invalidLength(length: 0, op: nil, requestID: nil)])
    }

    func testOverLongLengthIsRejectedWithTheRequestID() {
        // 65537 bytes announced; the op and request id that follow are read so BAD_REQUEST can name them.
        XCTAssertEqual(frames([0, 1, 0, 1, 2, 0, 0, 0, 9, 0xAA], chunk: 1), [.invalidLength(length: 65537, op: 2, requestID: 9)])
        XCTAssertEqual(frames([0xFF, 0xFF, 0xFF, 0xFF, 2, 0, 0]), [])
    }

    func testMaximumLengthIsAccepted() {
        let payload = [UInt8](repeating: 5, count: 65536)
        XCTAssertEqual(frames([0, 1, 0, 0] + payload).count, 1)
    }

    func testNothingIsDecodedAfterABadLength() {
        let good = encoded(Request(requestID: 1, body: .status))
        XCTAssertEqual(frames([0, 0, 0, 0] + good), [.invalidLength(length: 0, op: nil, requestID: nil)])
    }

    private func assertRejected(_ payload: [UInt8], status: ResponseStatus, requestID: UInt32?, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Request(payload: ByteBuffer(bytes: payload)), file: file, line: line) { error in
            guard let error = error as? ProtocolError else { return XCTFail("wrong error \(error)", file: file, line: line) }
            XCTAssertEqual(error.status, status, error.message, file: file, line: line)
            XCTAssertEqual(error.requestID, requestID, file: file, line: line)
            XCTAssertFalse(error.message.isEmpty, file: file, line: line)
        }
    }

    func testUnknownOpIsUnsupported() {
        assertRejected([0x09, 0, 0, 0, 7], status: .unsupported, requestID: 7)
        assertRejected([0x00, 0, 0, 0, 7], status: .unsupported, requestID: 7)
    }

    func testShortHeaderHasNoRequestID() {
        assertRejected([0x02, 0, 0], status: .badRequest, requestID: nil)
    }

    func testShortBodiesAreBadRequests() {
        assertRejected([0x02, 0, 0, 0, 1, 0, 0, 1], status: .badRequest, requestID: 1)
        assertRejected([0x03, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0], status: .badRequest, requestID: 1)
        assertRejected([0x04, 0, 0, 0, 1], status: .badRequest, requestID: 1)
        assertRejected([0x01, 0, 0, 0, 1, 0, 1, 0, 9, 65], status: .badRequest, requestID: 1)
    }

    func testTrailingBytesAreBadRequests() {
        assertRejected([0x02, 0, 0, 0, 1, 0, 0, 0, 1, 0xEE], status: .badRequest, requestID: 1)
        assertRejected([0x05, 0, 0, 0, 2, 0], status: .badRequest, requestID: 2)
    }

    func testBadUTF8IsABadRequest() {
        assertRejected([0x01, 0, 0, 0, 3, 0, 1, 0, 2, 0xC3, 0x28, 0, 0], status: .badRequest, requestID: 3)
    }
}
