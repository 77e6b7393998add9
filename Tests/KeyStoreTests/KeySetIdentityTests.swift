import Glibc
import KMS
import KeyStore
import Logging
import SecureMemory
import XCTest

final class KeySetIdentityTests: XCTestCase {
    private var directory = ""

    override func setUp() {
        var template = Array("/tmp/keyset-test-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    override func tearDown() {
        _ = system("rm -rf '\(directory)'")
    }

    private func store(_ name: String = "default") throws -> KeyFileDirectory {
        let store = KeyFileDirectory(path: "\(directory)/\(name)", prefix: "local-key")
        try store.prepare()
        return store
    }

    private func write(_ path: String, _ text: String) {
        let file = fopen(path, "w")!
        fputs(text, file)
        fclose(file)
    }

    func testGeneratedIdentitiesAreVersion4UUIDsAndDiffer() {
        let identities = (0..<100).map { _ in KeySetIdentity.generate().value }
        XCTAssertEqual(Set(identities).count, 100)
        for identity in identities {
            let groups = identity.split(separator: "-")
            XCTAssertEqual(groups.map(\.count), [8, 4, 4, 4, 12], identity)
            XCTAssertEqual(groups[2].first, "4", identity)
            XCTAssertTrue("89ab".contains(groups[3].first!), identity)
            XCTAssertNotNil(KeySetIdentity(identity))
        }
    }

    func testTheFormReadBack() {
        XCTAssertNotNil(KeySetIdentity("a"))
        XCTAssertNotNil(KeySetIdentity(String(repeating: "x", count: 64)))
        XCTAssertNotNil(KeySetIdentity("prod.eu-west-1_2"))
        for bad in ["", String(repeating: "x", count: 65), "a b", "a/b", "é", "a\n", "a\0b"] {
            XCTAssertNil(KeySetIdentity(bad), bad)
        }
        XCTAssertEqual(KeySetIdentity(fileContent: Array("abc\n".utf8))?.value, "abc")
        XCTAssertEqual(KeySetIdentity(fileContent: Array("abc".utf8))?.value, "abc")
        XCTAssertNil(KeySetIdentity(fileContent: Array("abc\n\n".utf8)))
        XCTAssertNil(KeySetIdentity(fileContent: [0xFF, 0x41]))
    }

    func testCreatedOnceWithTheStoreAndKept() throws {
        let first = try store().keySetIdentity()
        XCTAssertEqual(try store().keySetIdentity(), first, "read back, not created again")
        var info = stat()
        XCTAssertEqual(lstat("\(directory)/default/key-set", &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o400)
        XCTAssertNotEqual(try store("other").keySetIdentity(), first, "another store, another key set")
    }

    func testALostDirectoryGetsANewIdentity() throws {
        let first = try store().keySetIdentity()
        _ = system("rm -rf '\(directory)/default'")
        XCTAssertNotEqual(try store().keySetIdentity(), first)
    }

    func testADamagedIdentityIsRefusedNotReplaced() throws {
        let files = try store()
        write(files.keySetPath, "not an identity\n")
        XCTAssertThrowsError(try files.keySetIdentity()) { error in
            XCTAssertTrue("\(error)".contains("holds no key-set identity"), "\(error)")
        }
        XCTAssertEqual(String(cString: Array(SmallFileReader.read(files.keySetPath)) + [0]), "not an identity\n")
    }

    func testAnIdentityThatIsNotARegularFileIsRefused() throws {
        let files = try store()
        XCTAssertEqual(mkfifo(files.keySetPath, 0o600), 0)
        XCTAssertThrowsError(try files.keySetIdentity()) { error in
            XCTAssertTrue("\(error)".contains("not a regular file"), "\(error)")
        }
    }

    func testTheInstanceServesItsStoresIdentity() async throws {
        let key = SecureBytes(copying: [UInt8](repeating: 7, count: 32))
        let instance = InstanceKeyStore(name: "default", provider: LocalProvider(masterKey: key, instance: "default"),
                                        directory: "\(directory)/default", keyLength: 32, autoCreate: true,
                                        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        XCTAssertNil(instance.keySet, "none before open")
        try await instance.open()
        XCTAssertEqual(instance.keySet, try store().keySetIdentity())
    }
}

private enum SmallFileReader {
    static func read(_ path: String) -> [UInt8] {
        guard let file = fopen(path, "r") else { return [] }
        defer { fclose(file) }
        var out: [UInt8] = []
        while case let c = fgetc(file), c != EOF { out.append(UInt8(c)) }
        return out
    }
}
