import CKeybrokerTLS
import KMIPProtocol
import ProviderSettings
import SecureMemory

/// The TLS client settings of one instance: CA, client certificate and key, loaded once.
final class TLSContext: @unchecked Sendable {
    // Read-only after init; OpenSSL allows one SSL_CTX to serve many threads.
    let pointer: OpaquePointer

    init(caFile: String, certificateFile: String, key: SecureBytes) throws(KMIPError) {
        var error = [CChar](repeating: 0, count: 512)
        let context = key.withUnsafeBytes { pem in
            CKB_tls_context_new(caFile, certificateFile, pem.baseAddress?.assumingMemoryBound(to: UInt8.self), pem.count, &error, error.count)
        }
        guard let context else {
            throw KMIPError(.setup, server: nil, message: Self.text(error))
        }
        pointer = context
    }

    deinit { CKB_tls_context_free(pointer) }

    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One TLS connection to a KMIP server. Blocking calls with deadlines; used by one thread at a
/// time (taken from and returned to the pool).
final class TLSConnection: @unchecked Sendable {
    let pointer: OpaquePointer
    let server: KMIPSettings.Server

    static let maximumMessageLength = 1 << 20

    private init(pointer: OpaquePointer, server: KMIPSettings.Server) {
        self.pointer = pointer
        self.server = server
    }

    deinit { CKB_tls_close(pointer) }

    static func open(_ context: TLSContext, to server: KMIPSettings.Server, deadline: Int64) throws(KMIPError) -> TLSConnection {
        var status: Int32 = 0
        var error = [CChar](repeating: 0, count: 512)
        guard let connection = CKB_tls_connect(context.pointer, server.host, server.port, deadline, &status, &error, error.count) else {
            throw KMIPError(tlsStatus: status, server: server, message: TLSContext.text(error))
        }
        return TLSConnection(pointer: connection, server: server)
    }

    var isUsable: Bool { CKB_tls_usable(pointer) == 1 }

    var negotiated: String {
        var out = [CChar](repeating: 0, count: 128)
        CKB_tls_describe(pointer, &out, out.count)
        return TLSContext.text(out)
    }

    /// Sends one request message and reads one response message (its header gives its length).
    func exchange(_ request: [UInt8], deadline: Int64) throws(KMIPError) -> [UInt8] {
        var error = [CChar](repeating: 0, count: 512)
        let sent = request.withUnsafeBufferPointer { CKB_tls_write(pointer, $0.baseAddress, $0.count, deadline, &error, error.count) }
        guard sent == Int32(CKB_TLS_OK.rawValue) else { throw KMIPError(tlsStatus: sent, server: server, message: TLSContext.text(error)) }
        var header = [UInt8](repeating: 0, count: 8)
        let headerRead = CKB_tls_read(pointer, &header, 8, deadline, &error, error.count)
        guard headerRead == Int32(CKB_TLS_OK.rawValue) else {
            throw KMIPError(tlsStatus: headerRead, server: server, message: TLSContext.text(error))
        }
        let length: Int
        do {
            length = try TTLVDecoder.messageLength(header: header)
        } catch {
            throw KMIPError(.malformed, server: server, message: error.description)
        }
        guard length <= Self.maximumMessageLength else {
            throw KMIPError(.malformed, server: server, message: "the answer claims \(length) bytes; keybroker reads at most \(Self.maximumMessageLength)")
        }
        var message = header + [UInt8](repeating: 0, count: length - 8)
        let bodyRead = message.withUnsafeMutableBufferPointer { buffer in
            CKB_tls_read(pointer, buffer.baseAddress! + 8, length - 8, deadline, &error, error.count)
        }
        guard bodyRead == Int32(CKB_TLS_OK.rawValue) else {
            message.cleanse()
            throw KMIPError(tlsStatus: bodyRead, server: server, message: TLSContext.text(error))
        }
        return message
    }

    static func now() -> Int64 { CKB_tls_now_ms() }
}
