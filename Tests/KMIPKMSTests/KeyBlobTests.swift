import BrokerProtocol
import Foundation
import KMIPKMS
import KMIPProtocol
import ProviderSettings
import SecureMemory
import XCTest

final class KeyBlobTests: XCTestCase {
    let ref = KeyRef(keyID: 7, version: 3)

    func blob(_ mode: KMIPKeyBlob.Mode = .gcm) -> KMIPKeyBlob {
        let key = SecureBytes(copying: [UInt8](repeating: 0x11, count: 32))
        return KMIPKeyBlob(mode: mode, keyLength: 32, version: .v1_4, masterKeyID: "mk-1", iv: [UInt8](repeating: 1, count: 16),
                           tag: mode == .gcm ? [UInt8](repeating: 2, count: 16) : [], ciphertext: [UInt8](repeating: 3, count: 32),
                           check: KMIPKeyBlob.check(for: key, ref: ref, mode: mode))
    }

    func testLayoutAsDocumented() throws {
        let bytes = blob().encoded
        XCTAssertEqual(Array(bytes[0..<9]), Array("KBKM".utf8) + [1, 1, 32, 1, 4])
        XCTAssertEqual(Array(bytes[9..<15]), [0, 4] + Array("mk-1".utf8))
        XCTAssertEqual(bytes[15], 16)
        XCTAssertEqual(bytes.count, 9 + 2 + 4 + 1 + 16 + 1 + 16 + 2 + 32 + 16)
        XCTAssertEqual(try KMIPKeyBlob(decoding: bytes), blob())
        XCTAssertEqual(try KMIPKeyBlob(decoding: blob(.cbcPKCS5).encoded), blob(.cbcPKCS5))
    }

    func testEveryTruncationAndExtensionIsRefused() {
        let bytes = blob().encoded
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try KMIPKeyBlob(decoding: Array(bytes.prefix(length))), "prefix of \(length)")
        }
        XCTAssertThrowsError(try KMIPKeyBlob(decoding: bytes + [0]))
        var format = bytes
        format[4] = 2
        XCTAssertThrowsError(try KMIPKeyBlob(decoding: format)) { XCTAssertTrue("\($0)".contains("format 2")) }
        var mode = bytes
        mode[5] = 9
        XCTAssertThrowsError(try KMIPKeyBlob(decoding: mode))
        var length = bytes
        length[6] = 20
        XCTAssertThrowsError(try KMIPKeyBlob(decoding: length))
    }

    func testCheckValueBindsIdVersionModeAndKey() {
        let key = SecureBytes(copying: [UInt8](repeating: 0x11, count: 32))
        let other = SecureBytes(copying: [UInt8](repeating: 0x12, count: 32))
        let check = KMIPKeyBlob.check(for: key, ref: ref, mode: .gcm)
        XCTAssertEqual(check.count, 16)
        XCTAssertNotEqual(check, KMIPKeyBlob.check(for: other, ref: ref, mode: .gcm))
        XCTAssertNotEqual(check, KMIPKeyBlob.check(for: key, ref: KeyRef(keyID: 7, version: 4), mode: .gcm))
        XCTAssertNotEqual(check, KMIPKeyBlob.check(for: key, ref: KeyRef(keyID: 8, version: 3), mode: .gcm))
        XCTAssertNotEqual(check, KMIPKeyBlob.check(for: key, ref: ref, mode: .cbcPKCS5))
        XCTAssertEqual(KMIPKeyBlob.binding(ref), Array("keybroker-kmip-key-v1".utf8) + [0, 0, 0, 0, 7, 0, 0, 0, 3])
    }
}

final class SettingsTests: XCTestCase {
    func testServers() {
        XCTAssertEqual(KMIPSettings.parseServers("kmip.example.com:5696")?.map(\.description), ["kmip.example.com:5696"])
        XCTAssertEqual(KMIPSettings.parseServers("a.example, b.example:15696")?.map(\.description), ["a.example:5696", "b.example:15696"])
        XCTAssertEqual(KMIPSettings.parseServers("[::1]:5696")?.first?.host, "::1")
        XCTAssertEqual(KMIPSettings.parseServers("[::1]")?.first?.description, "[::1]:5696")
        XCTAssertEqual(KMIPSettings.parseServers("127.0.0.1:1")?.first?.port, "1")
        for bad in ["", "a:0", "a:65536", "a:b", "::1:5696", "[::1", "a b:1", "a,", "http://a:1"] {
            XCTAssertNil(KMIPSettings.parseServers(bad), bad)
        }
    }

    func testMasterKeyReference() {
        XCTAssertEqual(MasterKeyReference(parsing: "1f2e-33"), .uniqueIdentifier("1f2e-33"))
        XCTAssertEqual(MasterKeyReference(parsing: "name:mariadb encryption"), .name("mariadb encryption"))
        XCTAssertNil(MasterKeyReference(parsing: "name:"))
        XCTAssertNil(MasterKeyReference(parsing: "a b"))
        XCTAssertNil(MasterKeyReference(parsing: ""))
    }

    func testTLSFilesAreTrustedOnlyWhenOwned() throws {
        let directory = "/tmp/kb-kmip-files-\(getpid())"
        XCTAssertEqual(mkdir(directory, 0o755), 0)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = directory + "/client.key"
        XCTAssertTrue(FileManager.default.createFile(atPath: key, contents: Data("-----BEGIN PRIVATE KEY-----\n".utf8), attributes: [.posixPermissions: 0o644]))
        XCTAssertThrowsError(try TLSFiles.readClientKey(path: key, requirePrivateMode: true)) { error in
            XCTAssertTrue("\(error)".contains("is readable by group or others (mode 0644"), "\(error)")
            XCTAssertTrue("\(error)".contains("run: chmod 600 \(key)"), "\(error)")
        }
        XCTAssertEqual(try TLSFiles.readClientKey(path: key, requirePrivateMode: false).count, 28)
        XCTAssertThrowsError(try TLSFiles.readClientKey(path: key + ".missing", requirePrivateMode: true))
        let link = directory + "/link.key"
        XCTAssertEqual(symlink(key, link), 0)
        XCTAssertThrowsError(try TLSFiles.readClientKey(path: link, requirePrivateMode: false)) { error in
            XCTAssertTrue("\(error)".contains("is a symbolic link"), "\(error)")
        }
        // Whoever could rewrite the CA file could point keybrokerd at a key manager of their own.
        let ca = directory + "/ca.pem"
        XCTAssertTrue(FileManager.default.createFile(atPath: ca, contents: Data("x".utf8), attributes: [.posixPermissions: 0o664]))
        XCTAssertThrowsError(try TLSFiles.checkCertificate(path: ca)) { error in
            XCTAssertTrue("\(error)".contains("is writable by group"), "\(error)")
        }
        XCTAssertEqual(chmod(ca, 0o644), 0)
        XCTAssertNoThrow(try TLSFiles.checkCertificate(path: ca))
    }
}
