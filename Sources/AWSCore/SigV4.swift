import CKeybrokerCrypto
import SecureMemory
import SystemSupport

/// AWS Signature Version 4 for requests whose headers and body are final: every header given is
/// signed (they are all meaningful for the JSON and query protocols), plus `x-amz-date` and, with
/// temporary credentials, `x-amz-security-token`.
///
///     canonical request = METHOD \n /path \n query \n name:value\n… \n signed;names \n hex(sha256(body))
///     string to sign    = AWS4-HMAC-SHA256 \n 20150830T123600Z \n 20150830/region/service/aws4_request \n hex(sha256(canonical))
///     signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
public struct SigV4Signer: Sendable {
    public var region: String
    public var service: String

    public init(region: String, service: String) {
        self.region = region
        self.service = service
    }

    public struct Signed: Sendable {
        /// Every header to send, `Authorization` last.
        public var headers: [(String, String)]
        public var canonicalRequest: String
        public var stringToSign: String
    }

    /// Signs a request at `time` (seconds since the epoch, UTC).
    /// `headers` must include `host`; `path` is already URI-encoded; `query` is the canonical query string.
    public func sign(method: String, path: String, query: String = "", headers: [(String, String)], body: [UInt8],
                     credentials: AWSCredentials, time: Int64) -> Signed {
        let (date, timestamp) = Self.timestamps(time)
        var all = headers
        all.append(("X-Amz-Date", timestamp))
        if let token = credentials.sessionToken { all.append(("X-Amz-Security-Token", token)) }
        var canonical: [String: String] = [:]
        for (name, value) in all {
            let key = name.lowercased()
            let trimmed = Self.trimHeaderValue(value)
            if let existing = canonical[key] { canonical[key] = existing + "," + trimmed } else { canonical[key] = trimmed }
        }
        let names = canonical.keys.sorted()
        let signedHeaders = names.joined(separator: ";")
        let canonicalHeaders = names.map { "\($0):\(canonical[$0] ?? "")\n" }.joined()
        let canonicalRequest = [method, path.isEmpty ? "/" : path, query, canonicalHeaders, signedHeaders, Self.hexSHA256(body)]
            .joined(separator: "\n")
        let scope = "\(date)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", timestamp, scope, Self.hexSHA256(Array(canonicalRequest.utf8))].joined(separator: "\n")
        let signature = signingKey(secret: credentials.secretAccessKey, date: date).withUnsafeBytes { key in
            Self.hex(Self.hmac(key: key, Array(stringToSign.utf8)))
        }
        all.append(("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return Signed(headers: all, canonicalRequest: canonicalRequest, stringToSign: stringToSign)
    }

    /// The derived key, kept in locked memory like the secret it comes from.
    private func signingKey(secret: SecureBytes, date: String) -> SecureBytes {
        let prefix = Array("AWS4".utf8)
        let seed = SecureBytes(count: prefix.count + secret.count) { buffer in
            buffer.copyBytes(from: prefix)
            secret.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[prefix.count...]).copyMemory(from: $0) }
        }
        var key = seed
        for part in [date, region, service, "aws4_request"] {
            let previous = key
            key = SecureBytes(count: 32) { out in
                previous.withUnsafeBytes { k in
                    let data = Array(part.utf8)
                    _ = CKB_hmac_sha256(k.baseAddress?.assumingMemoryBound(to: UInt8.self), k.count, data, data.count,
                                        out.baseAddress?.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        return key
    }

    private static func hmac(key: UnsafeRawBufferPointer, _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        _ = CKB_hmac_sha256(key.baseAddress?.assumingMemoryBound(to: UInt8.self), key.count, data, data.count, &out)
        return out
    }

    public static func hexSHA256(_ data: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        CKB_sha256(data, data.count, &digest)
        return hex(digest)
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        Hex.encode(bytes)
    }

    /// Leading and trailing blanks removed, runs of blanks folded to one space (as botocore does).
    public static func trimHeaderValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }

    /// ("20150830", "20150830T123600Z") for a Unix time.
    public static func timestamps(_ time: Int64) -> (String, String) {
        let civil = CivilTime(unix: time)
        return (civil.basicDate, civil.basicTimestamp)
    }

    /// RFC 3986 percent-encoding of everything but unreserved characters (for query strings and forms).
    public static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + Hex.encode([byte], uppercase: true)
            }
        }
        return out
    }
}
