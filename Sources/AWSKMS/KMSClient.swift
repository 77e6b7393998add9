import AWSCore
import BrokerProtocol
import ProviderSettings
import SecureMemory
import SystemSupport

/// The KMS JSON API (`POST /`, `X-Amz-Target: TrentService.<Op>`, `application/x-amz-json-1.1`),
/// the four operations keybroker uses.
struct KMSClient: Sendable {
    let requester: AWSRequester
    let endpoint: Endpoint
    let region: String
    let credentials: AWSRequester.Credentials

    struct KeyDescription: Sendable {
        var arn: String
        var state: String
        /// nil when KMS leaves it out (only ENCRYPT_DECRYPT keys existed before it was added).
        var usage: String?
        var spec: String
    }

    /// Headers and body of a KMS request, before signing. Public through `KMSRequest` for the
    /// signature tests, which sign exactly what the client sends.
    static func request(operation: String, members: [(String, String)], endpoint: Endpoint) -> (headers: [(String, String)], body: [UInt8]) {
        ([("Host", endpoint.host), ("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "TrentService.\(operation)")],
         JSONWriter.object(members))
    }

    /// An EncryptionContext (or Source-/DestinationEncryptionContext) member, as JSON text.
    static func contextMember(_ name: String, _ pairs: [(String, String)]) -> String {
        "\(JSONText.quoted(name)):" + JSONValue.object(pairs.map { ($0.0, .string($0.1)) }).serialized
    }

    /// The body with context members added before its closing brace.
    static func adding(_ members: [String], to body: [UInt8]) -> [UInt8] {
        guard !members.isEmpty, body.last == UInt8(ascii: "}") else { return body }
        let separator = body.count > 2 ? "," : ""
        return Array(body.dropLast()) + Array((separator + members.joined(separator: ",") + "}").utf8)
    }

    private func call(_ operation: String, _ members: [(String, String)], maxRetries: Int? = nil,
                      subject: String? = nil, contexts: [String] = []) async throws(AWSError) -> ResponseBody {
        let (headers, body) = Self.request(operation: operation, members: members, endpoint: endpoint)
        return try await send(operation, headers: headers, body: Self.adding(contexts, to: body), maxRetries: maxRetries, subject: subject)
    }

    private func send(_ operation: String, headers: [(String, String)], body: [UInt8], maxRetries: Int? = nil,
                      subject: String? = nil) async throws(AWSError) -> ResponseBody {
        try await requester.send(operation: "KMS \(operation)", endpoint: endpoint, signer: SigV4Signer(region: region, service: "kms"),
                                        protocol: .json, headers: Array(headers.dropFirst()), body: body, credentials: credentials,
                                        maxRetries: maxRetries, subject: subject)
    }

    /// What a trace line says a call is about: the KMS key and the data key, when known.
    static func subject(kmsKey: String?, ref: KeyRef?) -> String? {
        let parts = [kmsKey.map { "KMS key \($0)" }, ref.map { "key id=\($0.keyID), version=\($0.version)" }].compactMap { $0 }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }

    private static func reader<T>(_ body: ResponseBody, _ operation: String,
                                  _ read: (JSONReader) throws(AWSError) -> T) throws(AWSError) -> T {
        try body.withBytes { (bytes) throws(AWSError) -> T in
            let reader: JSONReader
            do throws(JSONReader.Failure) { reader = try JSONReader(bytes: bytes) } catch {
                var failure = AWSError(.malformed, operation: "KMS \(operation)", message: error.description)
                failure.requestID = body.requestID
                throw failure
            }
            do throws(AWSError) {
                return try read(reader)
            } catch {
                var failure = error
                failure.requestID = failure.requestID ?? body.requestID
                throw failure
            }
        }
    }

    func generateDataKeyWithoutPlaintext(keyID: String, length: Int, for ref: KeyRef? = nil,
                                         context: [(String, String)]? = nil) async throws(AWSError) -> [UInt8] {
        let spec: (String, String) = switch length {
        case 16: ("KeySpec", "AES_128")
        case 32: ("KeySpec", "AES_256")
        default: ("NumberOfBytes", String(length))
        }
        let body = try await call("GenerateDataKeyWithoutPlaintext", [("KeyId", keyID), spec], subject: Self.subject(kmsKey: keyID, ref: ref),
                                  contexts: context.map { [Self.contextMember("EncryptionContext", $0)] } ?? [])
        return try Self.reader(body, "GenerateDataKeyWithoutPlaintext") { (reader) throws(AWSError) -> [UInt8] in
            guard let blob = reader.base64(reader.member("CiphertextBlob")), !blob.isEmpty else {
                throw AWSError(.malformed, operation: "KMS GenerateDataKeyWithoutPlaintext", message: "no CiphertextBlob in the answer")
            }
            return blob
        }
    }

    /// The plaintext goes from the response buffer straight into locked memory.
    func decrypt(_ blob: [UInt8], for ref: KeyRef? = nil, context: [(String, String)]? = nil) async throws(AWSError) -> SecureBytes {
        let body = try await call("Decrypt", [("CiphertextBlob", Base64.encode(blob))], subject: Self.subject(kmsKey: nil, ref: ref),
                                  contexts: context.map { [Self.contextMember("EncryptionContext", $0)] } ?? [])
        return try Self.reader(body, "Decrypt") { (reader) throws(AWSError) -> SecureBytes in
            guard let plaintext = reader.base64Secret(reader.member("Plaintext")) else {
                throw AWSError(.malformed, operation: "KMS Decrypt", message: "no Plaintext in the answer")
            }
            return plaintext
        }
    }

    /// KMS Encrypt of a data key the broker already holds (moving a key set to AWS). The body,
    /// which carries the key in base64, is built as bytes and zeroed once sent.
    func encrypt(keyID: String, plaintext: SecureBytes, for ref: KeyRef? = nil, context: [(String, String)]? = nil) async throws(AWSError) -> [UInt8] {
        var encoded = plaintext.withUnsafeBytes { Base64.encodedBytes($0) }
        let contextText = context.map { "," + Self.contextMember("EncryptionContext", $0) } ?? ""
        var body = Array("{\"KeyId\":\(JSONText.quoted(keyID)),\"Plaintext\":\"".utf8) + encoded + Array("\"\(contextText)}".utf8)
        encoded.cleanse()
        defer { body.cleanse() }
        let (headers, _) = Self.request(operation: "Encrypt", members: [], endpoint: endpoint)
        let response = try await send("Encrypt", headers: headers, body: body, subject: Self.subject(kmsKey: keyID, ref: ref))
        return try Self.reader(response, "Encrypt") { (reader) throws(AWSError) -> [UInt8] in
            guard let blob = reader.base64(reader.member("CiphertextBlob")), !blob.isEmpty else {
                throw AWSError(.malformed, operation: "KMS Encrypt", message: "no CiphertextBlob in the answer")
            }
            return blob
        }
    }

    /// The same context on both sides: a rewrap changes the master key, not what the key is for.
    func reEncrypt(_ blob: [UInt8], to destination: String, for ref: KeyRef? = nil,
                   context: [(String, String)]? = nil) async throws(AWSError) -> (blob: [UInt8], keyID: String?) {
        let contexts = context.map { [Self.contextMember("SourceEncryptionContext", $0), Self.contextMember("DestinationEncryptionContext", $0)] } ?? []
        let body = try await call("ReEncrypt", [("CiphertextBlob", Base64.encode(blob)), ("DestinationKeyId", destination)],
                                  subject: Self.subject(kmsKey: destination, ref: ref), contexts: contexts)
        return try Self.reader(body, "ReEncrypt") { (reader) throws(AWSError) -> ([UInt8], String?) in
            guard let blob = reader.base64(reader.member("CiphertextBlob")), !blob.isEmpty else {
                throw AWSError(.malformed, operation: "KMS ReEncrypt", message: "no CiphertextBlob in the answer")
            }
            return (blob, reader.string(reader.member("KeyId")))
        }
    }

    func describeKey(_ keyID: String) async throws(AWSError) -> KeyDescription {
        let body = try await call("DescribeKey", [("KeyId", keyID)], maxRetries: 1, subject: Self.subject(kmsKey: keyID, ref: nil))
        return try Self.reader(body, "DescribeKey") { (reader) throws(AWSError) -> KeyDescription in
            guard let metadata = reader.member("KeyMetadata") else {
                throw AWSError(.malformed, operation: "KMS DescribeKey", message: "no KeyMetadata in the answer")
            }
            return KeyDescription(
                arn: reader.string(reader.member("Arn", of: metadata)) ?? keyID,
                state: reader.string(reader.member("KeyState", of: metadata)) ?? "unknown",
                usage: reader.string(reader.member("KeyUsage", of: metadata)),
                spec: reader.string(reader.member("KeySpec", of: metadata)) ?? reader.string(reader.member("CustomerMasterKeySpec", of: metadata)) ?? "unknown")
        }
    }
}

/// What the KMS client would send, for tests that compare its signature with another signer's.
public enum KMSRequest {
    public static func signed(operation: String, members: [(String, String)], endpoint: Endpoint, region: String,
                              credentials: AWSCredentials, time: Int64) -> (body: [UInt8], signed: SigV4Signer.Signed) {
        let (headers, body) = KMSClient.request(operation: operation, members: members, endpoint: endpoint)
        let signed = SigV4Signer(region: region, service: "kms").sign(method: "POST", path: endpoint.path, headers: headers, body: body,
                                                                     credentials: credentials, time: time)
        return (body, signed)
    }
}
