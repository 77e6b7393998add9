import KMIPProtocol
import XCTest

/// The codec against published and captured encodings, byte for byte.
final class VectorTests: XCTestCase {
    let v1_1 = ProtocolVersion(1, 1)

    func testEveryVectorDecodesAndEncodesBackToTheSameBytes() throws {
        for vector in [Vectors.createRequest, Vectors.createResponse, Vectors.destroyRequest, Vectors.destroyResponse,
                       Vectors.locateRequest, Vectors.locateResponse, Vectors.getRequest, Vectors.getResponse,
                       Vectors.getAttributesRequestPayload, Vectors.encryptRequestPayload, Vectors.encryptResponsePayload,
                       Vectors.capturedGCMEncryptRequest, Vectors.capturedGCMEncryptResponse] {
            let item = try TTLVDecoder.decode(vector)
            XCTAssertEqual(TTLVEncoder.encode(item), vector)
            XCTAssertEqual(try TTLVDecoder.messageLength(header: vector), vector.count)
        }
    }

    func testCreateRequestTreeOfTestCase311() throws {
        // Built field by field from the test case's description: the encoder alone must give its bytes.
        func attribute(_ name: String, _ value: TTLV) -> TTLV { .structure(.attribute, [.text(.attributeName, name), value]) }
        let message = RequestMessage(version: v1_1, items: [RequestMessage.Item(.create, [
            .enumeration(.objectType, ObjectType.symmetricKey.rawValue),
            .structure(.templateAttribute, [
                attribute("Cryptographic Algorithm", .enumeration(.attributeValue, CryptographicAlgorithm.aes.rawValue)),
                attribute("Cryptographic Length", .integer(.attributeValue, 128)),
                attribute("Cryptographic Usage Mask", .integer(.attributeValue, 0x0C)),
            ]),
        ])])
        XCTAssertEqual(message.encoded(), Vectors.createRequest)
    }

    func testLocateByNameIsTheRequestOfTestCase313() {
        let message = RequestMessage(version: v1_1, items: [Payloads.locate(name: "Key1", objectType: .symmetricKey)])
        XCTAssertEqual(message.encoded(), Vectors.locateRequest)
    }

    func testGetAndDestroyRequestsOfTestCases() {
        XCTAssertEqual(RequestMessage(version: v1_1, items: [RequestMessage.Item(.get, [
            .text(.uniqueIdentifier, "49a1ca88-6bea-4fb2-b450-7e58802c3038")])]).encoded(), Vectors.getRequest)
        XCTAssertEqual(RequestMessage(version: v1_1, items: [RequestMessage.Item(.destroy, [
            .text(.uniqueIdentifier, "fb4b5b9c-6188-4c63-8142-fe9c328129fc")])]).encoded(), Vectors.destroyRequest)
    }

    func testGetAttributesPayloadOfTestCase312() {
        let item = Payloads.getAttributes("1703250b-4d40-4de2-93a0-c494a1d4ae40",
                                          names: ["Object Group", "Application Specific Information", "Contact Information", "x-Purpose"])
        XCTAssertEqual(TTLVEncoder.encode(.structure(.requestPayload, item.payload)), Vectors.getAttributesRequestPayload)
    }

    func testLocateAndCreateResponsesAreRead() throws {
        let locate = try ResponseMessage(decoding: Vectors.locateResponse)
        XCTAssertEqual(locate.version, v1_1)
        XCTAssertEqual(locate.timeStamp, 0x4F9A_54E6)
        XCTAssertEqual(locate.items.count, 1)
        XCTAssertEqual(locate.items[0].operation, .locate)
        XCTAssertEqual(locate.items[0].status, .success)
        XCTAssertEqual(Payloads.identifiers(in: locate.items[0].payload), ["49a1ca88-6bea-4fb2-b450-7e58802c3038"])
        let create = try ResponseMessage(decoding: Vectors.createResponse)
        XCTAssertEqual(create.items[0].operation, .create)
        XCTAssertEqual(create.items[0].payload[.uniqueIdentifier]?.text, "fb4b5b9c-6188-4c63-8142-fe9c328129fc")
        XCTAssertEqual(create.items[0].payload[.objectType]?.enumValue, ObjectType.symmetricKey.rawValue)
        let get = try ResponseMessage(decoding: Vectors.getResponse)
        XCTAssertEqual(get.items[0].operation, .get)
    }

    func testEncryptResponsePayloadIsRead() throws {
        let payload = try TTLVDecoder.decode(Vectors.encryptResponsePayload)
        let encrypted = try XCTUnwrap(Payloads.encrypted(in: payload))
        XCTAssertEqual(encrypted.uniqueIdentifier, "b4faee10-aa2a-4446-8ad4-0881f3422959")
        XCTAssertEqual(encrypted.data, [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])
        XCTAssertEqual(encrypted.iv, [0x01])
        XCTAssertEqual(encrypted.tag, [0x01, 0x90, 0xFE])
        let request = try TTLVDecoder.decode(Vectors.encryptRequestPayload)
        XCTAssertEqual(request[.authenticatedEncryptionAdditionalData]?.byteString, [0x01, 0x10, 0x80, 0xFF])
        XCTAssertEqual(request[.cryptographicParameters]?[.tagLength]?.int32, 128)
    }

    func testGCMEncryptRequestIsWhatPyKMIPsClientSends() throws {
        let data = Array("0123456789abcdef0123456789abcdef".utf8)
        let message = RequestMessage(version: .v1_4, items: [
            Payloads.encrypt("1", parameters: Payloads.cryptographicParameters(mode: .gcm, padding: nil, tagLength: 16),
                             data: data, iv: [UInt8](repeating: 0, count: 12)),
        ])
        XCTAssertEqual(message.encoded(), Vectors.capturedGCMEncryptRequest)
        let answer = try ResponseMessage(decoding: Vectors.capturedGCMEncryptResponse)
        XCTAssertEqual(answer.version, .v1_4)
        let encrypted = try XCTUnwrap(Payloads.encrypted(in: answer.items[0].payload))
        XCTAssertEqual(encrypted.data.count, 32)
        XCTAssertEqual(encrypted.tag?.count, 16)
        XCTAssertNil(encrypted.iv)
    }

    func testBatchOfTwoCarriesIDsAndContinueOnError() throws {
        let items = [Payloads.getAttributes("a", names: ["State"]), Payloads.getAttributes("b", names: ["State"])]
        let tree = try TTLVDecoder.decode(RequestMessage(version: .v1_4, items: items).encoded())
        let header = try XCTUnwrap(tree[.requestHeader])
        XCTAssertEqual(header[.batchCount]?.int32, 2)
        XCTAssertEqual(header[.batchErrorContinuationOption]?.enumValue, BatchErrorContinuationOption.continue.rawValue)
        XCTAssertEqual(tree.all(.batchItem).map { $0[.uniqueBatchItemID]?.byteString }, [[0, 0, 0, 1], [0, 0, 0, 2]])
    }
}
