import BrokerProtocol
import NIOCore
import XCTest

/// Each response kind's encoder, byte for byte against docs/protocol.md, and the typed documents
/// (STATUS, ADMIN answers) and ADMIN commands through their one reader and writer.
final class AnswerEncodingTests: XCTestCase {
    private func bytes(_ write: (inout ByteBuffer) -> Void) -> [UInt8] {
        var buffer = ByteBuffer()
        write(&buffer)
        return Array(buffer.readableBytesView)
    }

    /// The captured exchange in docs/protocol.md ("Example: a real HELLO + LATEST_KEY exchange").
    func testHelloAndLatestKeyAnswersMatchTheDocumentedCapture() {
        XCTAssertEqual(bytes { $0.writeHelloAnswer(requestID: 1, server: "keybrokerd 0.1.0") },
                       [0, 0, 0, 0x1A, 0x01, 0, 0, 0, 1, 0, 0, 1, 0, 0x10] + Array("keybrokerd 0.1.0".utf8))
        let key: [UInt8] = [
            0xA2, 0x7F, 0x8B, 0x7A, 0xC8, 0x2D, 0x1C, 0xA6, 0xCC, 0xCB, 0x89, 0x4F, 0xE0, 0xB8, 0x45, 0x2D,
            0xC5, 0x30, 0x41, 0xBD, 0x92, 0xFB, 0x6E, 0xE4, 0x73, 0x07, 0x84, 0x6F, 0xD7, 0x34, 0x2B, 0x0A,
        ]
        let answer = bytes { buffer in key.withUnsafeBytes { buffer.writeLatestKeyAnswer(requestID: 2, version: 3, key: $0) } }
        XCTAssertEqual(answer, [0, 0, 0, 0x2C, 0x02, 0, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0x20] + key)
    }

    func testGetKeyRotateStatusAdminAndFailureBodies() {
        let key: [UInt8] = Array(repeating: 7, count: 16)
        XCTAssertEqual(bytes { b in key.withUnsafeBytes { b.writeGetKeyAnswer(requestID: 9, key: $0) } },
                       [0, 0, 0, 0x18, 0x03, 0, 0, 0, 9, 0, 0, 0x10] + key)
        XCTAssertEqual(bytes { $0.writeRotateAnswer(requestID: 4, rotated: [KeyRef(keyID: 1, version: 2)]) },
                       [0, 0, 0, 0x12, 0x04, 0, 0, 0, 4, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2])
        XCTAssertEqual(bytes { $0.writeAdminAnswer(requestID: 5, answer: UnlockAnswer(instance: "i", message: "ok")) },
                       [0, 0, 0, 0x37, 0x06, 0, 0, 0, 5, 0, 0, 0x2F] + Array(#"{"instance":"i","unlocked":true,"message":"ok"}"#.utf8))
        XCTAssertEqual(bytes { $0.writeFailure(op: 0x09, requestID: 3, status: .unsupported, message: "no") },
                       [0, 0, 0, 0x0A, 0x09, 0, 0, 0, 3, 6, 0, 2, UInt8(ascii: "n"), UInt8(ascii: "o")])
    }

    func testLongStringsAreCutAtACharacterBoundary() throws {
        let text = String(repeating: "a", count: 199) + "é"  // the last character straddles byte 200
        let written = bytes { $0.writeProtocolString(text, limit: 200) }
        XCTAssertEqual(written.count, 2 + 199)
        let whole = bytes { $0.writeProtocolString("né", limit: 200) }
        XCTAssertEqual(whole, [0, 3, UInt8(ascii: "n"), 0xC3, 0xA9], "a string within the limit keeps its last character")
        let huge = String(repeating: "€", count: 30_000)  // 90,000 bytes
        let cut = bytes { $0.writeProtocolString(huge) }
        let length = Int(cut[0]) << 8 | Int(cut[1])
        XCTAssertEqual(length, 65535 - 65535 % 3)
        XCTAssertNotNil(String(validating: cut[2...], as: UTF8.self))
    }

    // MARK: ADMIN commands

    private func admin(_ text: String) throws -> Request {
        var payload = ByteBuffer()
        payload.writeInteger(Opcode.admin.rawValue)
        payload.writeInteger(UInt32(11))
        payload.writeProtocolString(text)
        return try Request(payload: payload)
    }

    func testAdminCommandsAreTyped() throws {
        XCTAssertEqual(try admin("rewrap alias/new").body, .admin(.rewrap(masterKey: "alias/new")))
        XCTAssertEqual(try admin("rewrap-into kmip").body, .admin(.rewrapInto(instance: "kmip")))
        XCTAssertEqual(try admin("unlock 123456").body, .admin(.unlock(tokenCode: "123456")))
        XCTAssertEqual(AdminCommand.unlock(tokenCode: "123456").text, "unlock 123456")
    }

    func testWrongAdminCommandsAreBadRequestsThatKeepTheConnection() {
        for text in ["frobnicate now", "rewrap", "rewrap ", "rewrap  two", "rewrap a b", "", "unlock \u{7F}1", String(repeating: "x", count: 4097)] {
            XCTAssertThrowsError(try admin(text), text) { error in
                guard let error = error as? ProtocolError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.status, .badRequest)
                XCTAssertEqual(error.requestID, 11)
                XCTAssertFalse(error.closesConnection, "\(text): the frame was sound")
            }
        }
        XCTAssertThrowsError(try admin("frobnicate now")) { error in
            XCTAssertTrue("\(error)".contains("unknown admin command \"frobnicate\""), "\(error)")
        }
    }

    func testAnAdminFrameWithTrailingBytesClosesTheConnection() {
        var payload = ByteBuffer()
        payload.writeInteger(Opcode.admin.rawValue)
        payload.writeInteger(UInt32(2))
        payload.writeProtocolString("frobnicate now")
        payload.writeInteger(UInt8(0))
        XCTAssertThrowsError(try Request(payload: payload)) { error in
            XCTAssertEqual((error as? ProtocolError)?.closesConnection, true)
        }
    }

    // MARK: Documents

    private let status = StatusDocument(
        server: "keybrokerd 0.1.0", uptimeSeconds: 12, instance: "default", connections: 2, requests: 30, errors: 1, denied: 0,
        malformed: 0, timedOut: 3, refusedConnections: 4,
        lockedMemory: .init(pages: 2, keys: 5, unlockedPages: 0, lockedKiB: 8, lockError: nil),
        reload: .init(succeeded: 1, failed: 2, lastAt: "2026-12-02T14:40:00Z", lastError: "keybroker.toml: line 3: bad"),
        instances: [
            .init(name: "default", provider: "local", providerStatus: nil, keyIDs: 2, versions: 3, loaded: 3, pending: 0, failed: 0,
                  lastError: "a \"quoted\" line\n", keys: [KeyRef(keyID: 1, version: 2), KeyRef(keyID: 0xFFFF_FFFE, version: 1)],
                  keysTruncated: false),
            .init(name: "kms", provider: "aws", providerStatus: "master key alias/x: Enabled", keyIDs: 0, versions: 0, loaded: 0,
                  pending: 0, failed: 0, lastError: nil, keys: [], keysTruncated: true),
        ])

    func testTheStatusDocumentReadsBackWhatItWrites() throws {
        XCTAssertEqual(try StatusDocument(json: status.json), status)
        XCTAssertTrue(status.json.hasPrefix(#"{"server":"keybrokerd 0.1.0","protocol":1,"uptime_s":12,"instance":"default","#))
    }

    func testAStatusReaderIgnoresMembersItDoesNotKnowAndNamesWhatIsMissing() throws {
        let newer = status.json.replacingOccurrences(of: #""server":"#, with: #""reloads":{"count":2},"server":"#)
        XCTAssertEqual(try StatusDocument(json: newer), status)
        let older = status.json.replacingOccurrences(of: #""timed_out":3,"#, with: "")
        XCTAssertThrowsError(try StatusDocument(json: older)) { XCTAssertTrue("\($0)".contains("\"timed_out\""), "\($0)") }
        XCTAssertThrowsError(try StatusDocument(json: "[1]"))
        XCTAssertThrowsError(try StatusDocument(json: "{\"server\":"))
    }

    func testAdminAnswersReadBackWhatTheyWrite() throws {
        let failed = [KeyVersionFailure(ref: KeyRef(keyID: 3, version: 1), message: "KMS said no")]
        let rewrap = RewrapAnswer(instance: "default", masterKey: "alias/next", rewrapped: 4, failed: failed)
        XCTAssertEqual(try RewrapAnswer(json: rewrap.json), rewrap)
        XCTAssertEqual(rewrap.json, #"{"instance":"default","master_key":"alias/next","rewrapped":4,"failed":[{"id":3,"version":1,"error":"KMS said no"}]}"#)
        let into = RewrapIntoAnswer(instance: "a", into: "b", provider: "kmip", copied: 2, present: 1, failed: [])
        XCTAssertEqual(try RewrapIntoAnswer(json: into.json), into)
        let unlock = UnlockAnswer(instance: "a", message: "unlocked until 12:00")
        XCTAssertEqual(try UnlockAnswer(json: unlock.json), unlock)
        XCTAssertThrowsError(try RewrapAnswer(json: into.json), "another command's answer is not read as this one's")
    }
}
