import AWSCore
@testable import AWSKMS
import KeyStore
import XCTest

final class ProviderErrorTests: XCTestCase {
    func testHowAWSFailuresReachTheKeyStore() {
        func service(_ code: String, _ status: Int) -> AWSError { AWSError(.service(code: code), operation: "KMS Decrypt", status: status, message: "m") }
        for code in ["AccessDeniedException", "DisabledException", "KMSInvalidStateException", "NotFoundException"] {
            let refusal = ProviderError(service(code, 400), key: "alias/mariadb-encryption")
            XCTAssertEqual(refusal.code, .refused, code)
            XCTAssertEqual(refusal.serviceCode, code)
            XCTAssertEqual(refusal.serviceKey, "alias/mariadb-encryption")
        }
        XCTAssertEqual(service("InvalidCiphertextException", 400).providerError.code, .corrupt)
        XCTAssertEqual(service("ThrottlingException", 400).providerError.code, .unavailable)
        XCTAssertEqual(AWSError(.transport, operation: "KMS Decrypt", message: "refused").providerError.code, .unavailable)
        XCTAssertEqual(AWSError(.locked, operation: "two-factor start", message: "locked").providerError.code, .locked)
        let noCredentials = AWSError(.credentials, operation: "credentials", message: "none").providerError
        XCTAssertEqual(noCredentials.code, .refused)
        XCTAssertEqual(noCredentials.serviceCode, "NoCredentials")
        XCTAssertEqual(AWSError(.credentials, operation: "credentials", message: "down", transient: true).providerError.code, .unavailable)
    }
}
