import AWSCore
@testable import AWSKMS
import XCTest

final class ProviderErrorTests: XCTestCase {
    func testHowAWSFailuresReachTheKeyStore() {
        func service(_ code: String, _ status: Int) -> AWSError { AWSError(.service(code: code), operation: "KMS Decrypt", status: status, message: "m") }
        XCTAssertEqual(service("AccessDeniedException", 400).providerError.code, .denied)
        XCTAssertEqual(service("InvalidCiphertextException", 400).providerError.code, .corrupt)
        XCTAssertEqual(service("ThrottlingException", 400).providerError.code, .unavailable)
        XCTAssertEqual(AWSError(.transport, operation: "KMS Decrypt", message: "refused").providerError.code, .unavailable)
    }
}
