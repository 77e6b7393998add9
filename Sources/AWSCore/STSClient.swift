import ProviderSettings
import SecureMemory
import SystemSupport

/// The three STS calls the credential chain and two-factor start need (query protocol, XML answers).
public struct STSClient: Sendable {
    public let requester: AWSRequester
    public let endpoint: Endpoint
    public let region: String

    private var signer: SigV4Signer { SigV4Signer(region: region, service: "sts") }

    public func assumeRole(roleARN: String, sessionName: String, externalID: String?, durationSeconds: Int?,
                    mfaSerial: String? = nil, tokenCode: String? = nil,
                    using credentials: AWSCredentials) async throws(AWSError) -> AWSCredentials {
        var parameters = [("Action", "AssumeRole"), ("Version", "2011-06-15"), ("RoleArn", roleARN), ("RoleSessionName", sessionName)]
        if let externalID { parameters.append(("ExternalId", externalID)) }
        if let durationSeconds { parameters.append(("DurationSeconds", String(durationSeconds))) }
        if let mfaSerial, let tokenCode { parameters += [("SerialNumber", mfaSerial), ("TokenCode", tokenCode)] }
        return try await call("AssumeRole", parameters, credentials: credentials, source: "role \(roleARN)")
    }

    /// Unsigned, as the SDKs send it: the web identity token is the proof.
    public func assumeRoleWithWebIdentity(roleARN: String, sessionName: String, token: String) async throws(AWSError) -> AWSCredentials {
        let parameters = [("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", roleARN),
                          ("RoleSessionName", sessionName), ("WebIdentityToken", token)]
        return try await call("AssumeRoleWithWebIdentity", parameters, credentials: nil, source: "web identity, role \(roleARN)")
    }

    public func getSessionToken(serialNumber: String, tokenCode: String, durationSeconds: Int?,
                         using credentials: AWSCredentials) async throws(AWSError) -> AWSCredentials {
        var parameters = [("Action", "GetSessionToken"), ("Version", "2011-06-15"), ("SerialNumber", serialNumber), ("TokenCode", tokenCode)]
        if let durationSeconds { parameters.append(("DurationSeconds", String(durationSeconds))) }
        return try await call("GetSessionToken", parameters, credentials: credentials, source: "two-factor session of \(serialNumber)")
    }

    private func call(_ action: String, _ parameters: [(String, String)], credentials: AWSCredentials?, source: String) async throws(AWSError) -> AWSCredentials {
        let operation = "STS \(action)"
        var body = Array(parameters.map { "\(SigV4Signer.percentEncode($0.0))=\(SigV4Signer.percentEncode($0.1))" }.joined(separator: "&").utf8)
        defer { body.cleanse() }
        let fixed = credentials
        let answer = try await requester.send(
            operation: operation, endpoint: endpoint, signer: credentials == nil ? nil : signer, protocol: .query,
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], body: body,
            credentials: fixed.map { creds in
                AWSRequester.Credentials(get: { () throws(AWSError) in creds }, invalidate: {})
            }, subject: source)
        return try answer.withBytes { (bytes) throws(AWSError) -> AWSCredentials in
            guard let block = XMLText.range("Credentials", in: bytes) else {
                throw AWSError(.malformed, operation: operation, message: "no Credentials element in the answer")
            }
            let inner = UnsafeRawBufferPointer(rebasing: bytes[block])
            guard let keyID = XMLText.first("AccessKeyId", in: inner), let secretRange = XMLText.range("SecretAccessKey", in: inner) else {
                throw AWSError(.malformed, operation: operation, message: "the Credentials element lacks AccessKeyId or SecretAccessKey")
            }
            let secret = SecureBytes(count: secretRange.count) {
                $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: inner[secretRange]))
            }
            let token = XMLText.first("SessionToken", in: inner)
            let expiration = XMLText.first("Expiration", in: inner).flatMap(CivilTime.parseISO8601)
            return AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: token, expiration: expiration, source: source)
        }
    }
}
