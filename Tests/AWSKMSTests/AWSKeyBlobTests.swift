@testable import AWSKMS
import BrokerProtocol
import XCTest

/// The two key file formats: raw blobs pass through untouched, context files round-trip, and a
/// damaged header is refused with a reason.
final class AWSKeyBlobTests: XCTestCase {
    func testRawBlobsAreUntouched() throws {
        let kms: [UInt8] = [0x01, 0x02, 0x02, 0x00, 0x78] + Array(repeating: 0x41, count: 100)
        let moto = Array("2c431d85-04ec-4473-befc-d990883e9e0d".utf8) + [0x00, 0xFF]
        for blob in [kms, moto] {
            guard case let .raw(parsed) = try AWSKeyBlob.parse(blob) else { return XCTFail("not raw") }
            XCTAssertEqual(parsed, blob)
        }
    }

    func testContextFilesRoundTrip() throws {
        let context = AWSKeyBlob.Context(instance: "prod-1", ref: KeyRef(keyID: 4_000_000_000, version: 7))
        let blob: [UInt8] = [0x01, 0x0A, 0x00, 0x0A, 0x0A]  // newlines inside the blob are fine
        let file = AWSKeyBlob.encode(blob, context: context)
        XCTAssertEqual(String(decoding: file.prefix(while: { $0 != 0x0A }), as: UTF8.self),
                       "keybroker-kms-context-1 instance=prod-1 key_id=4000000000 version=7")
        guard case let .withContext(recorded, parsed) = try AWSKeyBlob.parse(file) else { return XCTFail("no context") }
        XCTAssertEqual(recorded, context)
        XCTAssertEqual(parsed, blob)
        XCTAssertEqual(context.kmsPairs.map(\.0), ["keybroker:instance", "keybroker:key_id", "keybroker:version"])
    }

    func testDamagedHeadersAreRefused() {
        let magic = Array("keybroker-kms-context-1 ".utf8)
        let cases: [([UInt8], String)] = [
            (magic + Array(repeating: 0x61, count: 600), "no end"),
            (magic + Array("instance=a key_id=x version=1\n".utf8) + [1], "lacks"),
            (magic + Array("instance=a key_id=1 version=1\n".utf8), "no CiphertextBlob"),
            (magic + Array("garbage\n".utf8) + [1], "without"),
        ]
        for (bytes, reason) in cases {
            XCTAssertThrowsError(try AWSKeyBlob.parse(bytes)) { error in
                XCTAssertTrue((error as? AWSKeyBlob.Unreadable)?.message.contains(reason) == true, "\(error)")
            }
        }
    }
}
