import CKeybrokerCrypto
import SecureMemory

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

    static func hexSHA256(_ data: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        CKB_sha256(data, data.count, &digest)
        return hex(digest)
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Leading and trailing blanks removed, runs of blanks folded to one space (as botocore does).
    static func trimHeaderValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }

    /// ("20150830", "20150830T123600Z") for a Unix time.
    static func timestamps(_ time: Int64) -> (String, String) {
        let civil = CivilTime(unix: time)
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let date = pad(civil.year, 4) + pad(civil.month, 2) + pad(civil.day, 2)
        return (date, date + "T" + pad(civil.hour, 2) + pad(civil.minute, 2) + pad(civil.second, 2) + "Z")
    }

    /// RFC 3986 percent-encoding of everything but unreserved characters (for query strings and forms).
    static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let digits = Array("0123456789ABCDEF")
                out += "%" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0xF)])
            }
        }
        return out
    }
}

/// UTC calendar fields of a Unix time, and back (proleptic Gregorian; no time zone database).
struct CivilTime: Equatable {
    var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int

    init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        (self.year, self.month, self.day, self.hour, self.minute, self.second) = (year, month, day, hour, minute, second)
    }

    init(unix: Int64) {
        let days = Int(unix >= 0 ? unix / 86400 : (unix - 86399) / 86400)
        let seconds = Int(unix - Int64(days) * 86400)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        self.init(year: yoe + era * 400 + (month <= 2 ? 1 : 0), month: month, day: day,
                  hour: seconds / 3600, minute: seconds / 60 % 60, second: seconds % 60)
    }

    var unix: Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = month > 2 ? month - 3 : month + 9
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second)
    }

    /// ISO 8601 as AWS writes expirations: `2024-05-01T12:00:00Z`, with optional fractional seconds
    /// and a `Z` or `±HH:MM` offset.
    static func parseISO8601(_ text: String) -> Int64? {
        let chars = Array(text.utf8)
        func number(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= chars.count else { return nil }
            var value = 0
            for c in chars[start..<(start + count)] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) else { return nil }
                value = value * 10 + Int(c - UInt8(ascii: "0"))
            }
            return value
        }
        guard chars.count >= 19, let year = number(0, 4), chars[4] == UInt8(ascii: "-"), let month = number(5, 2),
              chars[7] == UInt8(ascii: "-"), let day = number(8, 2), chars[10] == UInt8(ascii: "T") || chars[10] == UInt8(ascii: " "),
              let hour = number(11, 2), chars[13] == UInt8(ascii: ":"), let minute = number(14, 2),
              chars[16] == UInt8(ascii: ":"), let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        if index < chars.count, chars[index] == UInt8(ascii: ".") {
            index += 1
            while index < chars.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(chars[index]) { index += 1 }
        }
        var offset = 0
        if index < chars.count {
            switch chars[index] {
            case UInt8(ascii: "Z"), UInt8(ascii: "z"):
                index += 1
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                guard let h = number(index + 1, 2), let m = number(index + 4, 2) else { return nil }
                offset = (h * 3600 + m * 60) * (chars[index] == UInt8(ascii: "-") ? -1 : 1)
                index += 6
            default:
                return nil
            }
        }
        guard index == chars.count else { return nil }
        return CivilTime(year: year, month: month, day: day, hour: hour, minute: minute, second: second).unix - Int64(offset)
    }
}
