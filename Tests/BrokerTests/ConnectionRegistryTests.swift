@testable import Broker
import XCTest

final class ConnectionRegistryTests: XCTestCase {
    func testBudgetsAtTheirLimits() {
        let registry = ConnectionRegistry(maximum: 10, maximumPerUID: 4, maximumUnauthenticated: 2)
        XCTAssertNil(registry.admit(uid: 1))
        XCTAssertNil(registry.admit(uid: 1))
        guard case .unauthenticated(2)? = registry.admit(uid: 1) else { return XCTFail("a third connection before HELLO") }
        registry.authenticated(uid: 1)
        registry.authenticated(uid: 1)
        XCTAssertNil(registry.admit(uid: 1))
        XCTAssertNil(registry.admit(uid: 1))
        guard case .perUID(4)? = registry.admit(uid: 1) else { return XCTFail("a fifth connection of one uid") }
        for uid in UInt32(2)...4 {
            XCTAssertNil(registry.admit(uid: uid))
            XCTAssertNil(registry.admit(uid: uid))
        }
        guard case .total(10)? = registry.admit(uid: 5) else { return XCTFail("an eleventh connection") }
        registry.release(uid: 1, authenticated: true)
        XCTAssertNil(registry.admit(uid: 5), "a released slot is free again")
    }

    func testAdmissionIsGivenBackOnce() {
        let registry = ConnectionRegistry(maximum: 1, maximumPerUID: 1, maximumUnauthenticated: 1)
        XCTAssertNil(registry.admit(uid: 3))
        let admission = Admission(uid: 3, registry: registry)
        admission.authenticated()
        admission.authenticated()
        admission.release()
        admission.release()
        XCTAssertNil(registry.admit(uid: 3))
        guard case .total(1)? = registry.admit(uid: 4) else { return XCTFail("released twice") }
    }
}
