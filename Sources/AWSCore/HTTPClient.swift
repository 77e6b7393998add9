import CKeybrokerCrypto
import CKeybrokerCurl
import NIOPosix
import Synchronization

/// One HTTP exchange as keybroker needs it: a small body out, a small body back.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Connect and total time of this one attempt.
    public var timeoutMilliseconds: Int
    /// Metadata endpoints (link-local, loopback) must never go through an HTTP proxy.
    public var bypassProxy = false
}

/// A response body in memory that is zeroed when released: it may hold a plaintext data key or
/// credentials. It is never copied into a Swift array; readers borrow the bytes.
public final class ResponseBody: @unchecked Sendable {
    // Written only by the transfer before the object is shared, read-only afterwards.
    fileprivate var storage = CKB_curl_body(data: nil, length: 0, capacity: 0, limit: 1 << 20, overflowed: 0)
    /// The request id header of the response that carried this body (not a secret).
    public fileprivate(set) var requestID: String?

    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: storage.data, count: storage.length))
    }

    /// For error messages and non-secret documents only.
    public var text: String {
        withBytes { String(decoding: $0, as: UTF8.self) }
    }

    deinit {
        CKB_curl_body_clear(&storage)
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var body: ResponseBody
    /// AWS's id of this request (`x-amzn-RequestId`, S3's `x-amz-request-id`), what CloudTrail
    /// and AWS support search by.
    public var requestID: String? { body.requestID }
}

/// A transport failure: nothing usable came back (refused, reset, timed out, DNS, TLS).
public struct HTTPFailure: Error, CustomStringConvertible {
    public var message: String
    public var timedOut: Bool
    public var description: String { message }
}

/// HTTP(S) over libcurl. Transfers are blocking calls, so they run on a small pool of dedicated
/// threads (NIOThreadPool), never on an event loop or Swift's cooperative pool. Easy handles are
/// kept between transfers so connections to KMS are reused; libcurl applies HTTPS_PROXY/NO_PROXY
/// from the environment and the system CA store.
public final class HTTPClient: Sendable {
    private let pool: NIOThreadPool
    private let idleHandles = Mutex<[CurlHandle]>([])

    private final class CurlHandle: @unchecked Sendable {
        // Used by one thread at a time: taken from and returned to `idleHandles`.
        public let pointer: OpaquePointer
        init?() {
            guard let pointer = CKB_curl_easy_init() else { return nil }
            self.pointer = pointer
        }
        deinit { CKB_curl_easy_cleanup(pointer) }
    }

    private static let globalInit: Int32 = CKB_curl_global_init()

    public init(threads: Int) {
        _ = Self.globalInit
        pool = NIOThreadPool(numberOfThreads: max(1, threads))
        pool.start()
    }

    deinit {
        pool.shutdownGracefully { _ in }
    }

    /// Runs other blocking work (a `credential_process` command) on the same threads.
    public func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    public func send(_ request: HTTPRequest) async throws(HTTPFailure) -> HTTPResponse {
        do {
            return try await pool.runIfActive { [self] in try perform(request) }
        } catch let failure as HTTPFailure {
            throw failure
        } catch {
            throw HTTPFailure(message: "the HTTP thread pool is shut down", timedOut: false)
        }
    }

    private func perform(_ request: HTTPRequest) throws(HTTPFailure) -> HTTPResponse {
        let handle = idleHandles.withLock { $0.popLast() } ?? CurlHandle()
        guard let handle else { throw HTTPFailure(message: "libcurl cannot create a handle (out of memory)", timedOut: false) }
        let curl = handle.pointer
        CKB_curl_easy_reset(curl)
        func check(_ code: Int32, _ what: String) throws(HTTPFailure) {
            guard code == 0 else { throw HTTPFailure(message: "libcurl refused \(what) (code \(code))", timedOut: false) }
        }
        let timeout = max(1, request.timeoutMilliseconds)
        try check(CKB_curl_setopt_string(curl, Int32(CKB_OPT_URL), request.url), "the URL \(request.url)")
        try check(CKB_curl_setopt_long(curl, Int32(CKB_OPT_NOSIGNAL), 1), "NOSIGNAL")
        try check(CKB_curl_setopt_long(curl, Int32(CKB_OPT_CONNECTTIMEOUT_MS), timeout), "the connect timeout")
        try check(CKB_curl_setopt_long(curl, Int32(CKB_OPT_TIMEOUT_MS), timeout), "the timeout")
        try check(CKB_curl_setopt_long(curl, Int32(CKB_OPT_PROTOCOLS_HTTP_HTTPS), 1), "HTTP(S) only")
        try check(CKB_curl_setopt_long(curl, Int32(CKB_OPT_FOLLOWLOCATION), 0), "no redirects")
        try check(CKB_curl_setopt_long(curl, Int32(CKB_OPT_TCP_KEEPALIVE), 1), "TCP keep-alive")
        if request.bypassProxy {
            try check(CKB_curl_setopt_string(curl, Int32(CKB_OPT_NOPROXY), "*"), "NOPROXY")
        }
        switch request.method {
        case "GET":
            try check(CKB_curl_setopt_long(curl, Int32(CKB_OPT_HTTPGET), 1), "GET")
        case "POST":
            try check(CKB_curl_setopt_long(curl, Int32(CKB_OPT_POST), 1), "POST")
        default:
            try check(CKB_curl_setopt_string(curl, Int32(CKB_OPT_CUSTOMREQUEST), request.method), "the method")
        }
        // "Expect:" with no value stops libcurl from sending Expect: 100-continue.
        let lines = request.headers.map { "\($0.0): \($0.1)" } + ["Expect:"]
        var cStrings = lines.map { strdup($0) }
        defer {
            for pointer in cStrings {
                if let pointer { CKB_cleanse(pointer, strlen(pointer)) }
                free(pointer)
            }
        }
        let headersSet = cStrings.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) { CKB_curl_set_headers(curl, $0.baseAddress, $0.count) }
        }
        try check(headersSet, "the headers")
        let response = ResponseBody()
        var error = [CChar](repeating: 0, count: 512)
        let code: Int32 = request.body.withUnsafeBytes { body in
            var code = Int32(0)
            if request.method != "GET" {
                code = CKB_curl_set_body(curl, body.baseAddress?.assumingMemoryBound(to: UInt8.self), body.count)
                guard code == 0 else { return code }
            }
            return CKB_curl_perform(curl, &response.storage, &error, error.count)
        }
        if code != 0 {
            // A failed transfer may leave the connection in any state: drop this handle.
            let message = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw HTTPFailure(message: message.isEmpty ? "libcurl error \(code)" : message, timedOut: CKB_curl_code_is_timeout(code) == 1)
        }
        let status = CKB_curl_response_code(curl)
        let requestID = Self.header("x-amzn-RequestId", of: curl) ?? Self.header("x-amz-request-id", of: curl)
        response.requestID = requestID
        CKB_curl_easy_reset(curl)
        idleHandles.withLock { handles in
            if handles.count < 32 { handles.append(handle) }
        }
        return HTTPResponse(status: status, body: response)
    }

    /// A response header that is an id: printable ASCII without spaces, at most 255 bytes.
    private static func header(_ name: String, of curl: OpaquePointer) -> String? {
        var value = [CChar](repeating: 0, count: 256)
        let length = CKB_curl_response_header(curl, name, &value, value.count)
        guard length > 0 else { return nil }
        let bytes = value.prefix(Int(length)).map { UInt8(bitPattern: $0) }
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
