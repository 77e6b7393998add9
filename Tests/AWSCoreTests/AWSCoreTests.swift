@testable import AWSCore
import Glibc
import ProviderSettings
import SecureMemory
import SystemSupport
import XCTest

final class JSONReaderTests: XCTestCase {
    private func read<T>(_ text: String, _ body: (JSONReader) throws -> T) throws -> T {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { try body(try JSONReader(bytes: $0)) }
    }

    func testMembersStringsNumbersAndEscapes() throws {
        try read(#"{"a": "x\"y\\z\/\u00e9\ud83d\udd11", "n": -1.5e2, "t": true, "nil": null, "o": {"k": [1, "two"]}}"#) { r in
            XCTAssertEqual(r.string(r.member("a")), "x\"y\\z/é🔑")
            XCTAssertEqual(r.number(r.member("n")), -150)
            XCTAssertEqual(r.bool(r.member("t")), true)
            XCTAssertNil(r.string(r.member("nil")))
            XCTAssertNil(r.member("missing"))
            guard case let .array(items)? = r.member("k", of: r.member("o")) else { return XCTFail("no array") }
            XCTAssertEqual(r.string(items[1]), "two")
        }
    }

    func testSecretsGoStraightToLockedMemory() throws {
        try read(#"{"Plaintext": "AAECAwQFBgcICQoLDA0ODw==", "Escaped": "AAEC\/w==", "Secret": "ab\/c"}"#) { r in
            let key = try XCTUnwrap(r.base64Secret(r.member("Plaintext")))
            key.withUnsafeBytes { XCTAssertEqual(Array($0), Array(0..<16)) }
            let escaped = try XCTUnwrap(r.base64Secret(r.member("Escaped")))
            escaped.withUnsafeBytes { XCTAssertEqual(Array($0), [0, 1, 2, 0xFF]) }
            let secret = try XCTUnwrap(r.secret(r.member("Secret")))
            secret.withUnsafeBytes { XCTAssertEqual(Array($0), Array("ab/c".utf8)) }
        }
    }

    func testMalformedDocumentsAreErrorsNotCrashes() {
        for text in ["", "{", "{\"a\"}", "{\"a\":}", "[1,]", "\"unterminated", "{\"a\":1} x", "tru", "{\"a\":\"\u{01}\"}",
                     String(repeating: "[", count: 100) + String(repeating: "]", count: 100), "{\"a\":\"\\u12\"}"] {
            let bytes = Array(text.utf8)
            let parsed = bytes.withUnsafeBytes { raw -> JSONReader.Node? in
                guard let reader = try? JSONReader(bytes: raw) else { return nil }
                _ = reader.string(reader.member("a"))
                return reader.root
            }
            if text == "{\"a\":\"\\u12\"}" { XCTAssertNotNil(parsed); continue }
            XCTAssertNil(parsed, text)
        }
    }

    func testWriterEscapes() {
        XCTAssertEqual(String(decoding: JSONWriter.object([("KeyId", "a\"b\\c\n\u{1}")]), as: UTF8.self), #"{"KeyId":"a\"b\\c\n\u0001"}"#)
    }
}

final class EncodingTests: XCTestCase {
    func testBase64() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            let text = Base64.encode(bytes)
            XCTAssertEqual(Base64.decode(Array(text.utf8)), bytes)
        }
        XCTAssertEqual(Base64.encode(Array("foobar".utf8)), "Zm9vYmFy")
        XCTAssertNil(Base64.decode(Array("abc".utf8)))
        XCTAssertNil(Base64.decode(Array("ab!=".utf8)))
    }

    func testEndpoints() throws {
        let kms = try XCTUnwrap(Endpoint(parsing: "https://KMS.eu-west-1.amazonaws.com"))
        XCTAssertEqual(kms.host, "kms.eu-west-1.amazonaws.com")
        XCTAssertEqual(kms.path, "/")
        XCTAssertEqual(Endpoint(parsing: "https://h:443/")?.host, "h")
        XCTAssertEqual(Endpoint(parsing: "http://127.0.0.1:4566")?.host, "127.0.0.1:4566")
        XCTAssertEqual(Endpoint(parsing: "http://[::1]:80/x")?.host, "[::1]")
        XCTAssertEqual(Endpoint(parsing: "http://[::1]:81/x")?.path, "/x")
        for bad in ["ftp://h", "h", "https://", "https://u@h", "https://h:0", "https://h:99999", "https://h:x", "http://[::1"] {
            XCTAssertNil(Endpoint(parsing: bad), bad)
        }
        XCTAssertEqual(Endpoint.aws(service: "kms", region: "cn-north-1", fips: false)?.host, "kms.cn-north-1.amazonaws.com.cn")
        XCTAssertEqual(Endpoint.aws(service: "kms", region: "us-east-1", fips: true)?.host, "kms-fips.us-east-1.amazonaws.com")
    }

    func testTimes() {
        XCTAssertEqual(SigV4Signer.timestamps(1440938160).1, "20150830T123600Z")
        XCTAssertEqual(CivilTime.parseISO8601("2015-08-30T12:36:00Z"), 1440938160)
        XCTAssertEqual(CivilTime.parseISO8601("2015-08-30T12:36:00.123Z"), 1440938160)
        XCTAssertEqual(CivilTime.parseISO8601("2015-08-30T14:36:00+02:00"), 1440938160)
        XCTAssertEqual(CivilTime.parseISO8601("2000-02-29T00:00:00Z"), 951782400)
        XCTAssertNil(CivilTime.parseISO8601("2015-13-30T12:36:00Z"))
        XCTAssertNil(CivilTime.parseISO8601("yesterday"))
        for t: Int64 in [0, 951782400, 4102444800, 1440938160] {
            XCTAssertEqual(CivilTime(unix: t).unix, t)
        }
    }

    func testPercentEncoding() {
        XCTAssertEqual(SigV4Signer.percentEncode("a b/c+d=é~"), "a%20b%2Fc%2Bd%3D%C3%A9~")
    }
}

final class ProfileFileTests: XCTestCase {
    func testSharedFileSyntax() throws {
        let path = "/tmp/keybroker-profile-test-\(getpid())"
        defer { unlink(path) }
        let text = """
            # comment
            [default]
            aws_access_key_id = AKIADEFAULT
            aws_secret_access_key=secret/with+chars  ; note
            [profile db]
            region = eu-west-1
            s3 =
              region = not-this-one
            role_arn=arn:aws:iam::1:role/r
            [sso-session x]
            region = no
            """
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
        let config = try XCTUnwrap(try ProfileFile.load(path: path, isConfig: true))
        XCTAssertEqual(config.value("aws_access_key_id", profile: "default"), "AKIADEFAULT")
        config.secret("aws_secret_access_key", profile: "default")?.withUnsafeBytes {
            XCTAssertEqual(String(decoding: $0, as: UTF8.self), "secret/with+chars")
        }
        XCTAssertEqual(config.value("region", profile: "db"), "eu-west-1")
        XCTAssertEqual(config.value("role_arn", profile: "db"), "arn:aws:iam::1:role/r")
        XCTAssertFalse(config.hasProfile("x"))
        let credentials = try XCTUnwrap(try ProfileFile.load(path: path, isConfig: false))
        XCTAssertFalse(credentials.hasProfile("db"), "[profile db] is not a profile in a credentials file")
        XCTAssertNil(try ProfileFile.load(path: path + ".missing", isConfig: false))
    }
}

final class AWSErrorTests: XCTestCase {
    func testWhatIsRetried() {
        func service(_ code: String, _ status: Int) -> AWSError { AWSError(.service(code: code), operation: "KMS Decrypt", status: status, message: "m") }
        XCTAssertTrue(service("ThrottlingException", 400).isRetryable)
        XCTAssertTrue(service("KMSInternalException", 500).isRetryable)
        XCTAssertTrue(service("Whatever", 503).isRetryable)
        XCTAssertTrue(AWSError(.transport, operation: "KMS Decrypt", message: "refused").isRetryable)
        for code in ["AccessDeniedException", "NotFoundException", "DisabledException", "KMSInvalidStateException",
                     "InvalidCiphertextException", "IncorrectKeyException", "SignatureDoesNotMatch"] {
            XCTAssertFalse(service(code, 400).isRetryable, code)
        }
        XCTAssertEqual(service("DisabledException", 400).description, "KMS Decrypt failed: DisabledException (HTTP 400): m")
    }
}
