import Logging
import ProviderSettings
import SystemSupport

/// Sends signed AWS requests with the retry rules of the AWS SDKs' standard mode: throttling, 5xx
/// and transport errors are retried up to `maxRetries` times after a random pause of up to
/// base × 2^attempt (exponential backoff with full jitter); every other error is final. An
/// expired-token answer refreshes the credentials and tries once more.
public final class AWSRequester: Sendable {
    public enum ErrorFormat: Sendable {
        /// KMS: JSON errors `{"__type": "…#Code", "message": "…"}`.
        case json
        /// STS: XML errors `<Error><Code>…</Code><Message>…</Message></Error>`.
        case query
    }

    public struct Credentials: Sendable {
        public var get: @Sendable () async throws(AWSError) -> AWSCredentials
        public var invalidate: @Sendable () async -> Void

        public init(get: @escaping @Sendable () async throws(AWSError) -> AWSCredentials, invalidate: @escaping @Sendable () async -> Void) {
            self.get = get
            self.invalidate = invalidate
        }
    }

    public let http: HTTPClient
    public let timeoutMilliseconds: Int
    public let maxRetries: Int
    public let logger: Logger

    public init(http: HTTPClient, timeoutMilliseconds: Int, maxRetries: Int, logger: Logger) {
        self.http = http
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxRetries = maxRetries
        self.logger = logger
    }

    /// One request as a service's client builds it: method, where it goes (the path and the
    /// canonical query already URI-encoded, as they are signed), headers beyond Host, the body.
    public struct Call: Sendable {
        public var operation: String
        public var method: String
        public var endpoint: Endpoint
        public var path: String
        public var query: String
        public var headers: [(String, String)]
        public var body: [UInt8]

        public init(operation: String, method: String = "POST", endpoint: Endpoint, path: String? = nil, query: String = "",
                    headers: [(String, String)], body: [UInt8]) {
            self.operation = operation
            self.method = method
            self.endpoint = endpoint
            self.path = path ?? endpoint.path
            self.query = query
            self.headers = headers
            self.body = body
        }

        /// The URL sent: the endpoint's scheme and host, this call's path and query.
        public var url: String {
            "\(endpoint.isHTTPS ? "https" : "http")://\(endpoint.host)\(path)\(query.isEmpty ? "" : "?" + query)"
        }
    }

    /// Returns the body of a 2xx answer. `subject` names what the call is about for the trace
    /// line (the KMS key, the data key); it never holds a secret.
    public func send(operation: String, endpoint: Endpoint, signer: SigV4Signer?, protocol kind: ErrorFormat,
              headers extraHeaders: [(String, String)], body: [UInt8], credentials: Credentials?,
              maxRetries overrideRetries: Int? = nil, subject: String? = nil) async throws(AWSError) -> ResponseBody {
        let call = Call(operation: operation, endpoint: endpoint, headers: extraHeaders, body: body)
        return try await send(call, signer: signer, protocol: kind, credentials: credentials, maxRetries: overrideRetries, subject: subject).body
    }

    /// Sends `call` until it succeeds, fails for good or runs out of retries. An answer whose
    /// status is in `accepted` (S3's 404 and 412) is returned like a 2xx one, not retried.
    public func send(_ call: Call, signer: SigV4Signer?, protocol kind: ErrorFormat, credentials: Credentials?,
                     maxRetries overrideRetries: Int? = nil, accepted: Set<Int> = [], subject: String? = nil) async throws(AWSError) -> HTTPResponse {
        let retries = overrideRetries ?? maxRetries
        var attempt = 0
        var refreshedOnce = false
        while true {
            do throws(AWSError) {
                return try await attemptOnce(call, signer: signer, protocol: kind, credentials: credentials, accepted: accepted, subject: subject)
            } catch {
                if let code = error.code, AWSError.expiredCredentialCodes.contains(code), let credentials, !refreshedOnce {
                    refreshedOnce = true
                    logger.notice("AWS \(call.operation): \(code); refreshing the credentials and trying again")
                    await credentials.invalidate()
                    continue
                }
                guard error.isRetryable, attempt < retries else { throw error }
                attempt += 1
                let pause = RetryBackoff.pauseMilliseconds(attempt: attempt)
                logger.warning("AWS \(error.description); retry \(attempt) of \(retries) in \(pause) ms")
                try? await Task.sleep(for: .milliseconds(pause))
            }
        }
    }

    private func attemptOnce(_ call: Call, signer: SigV4Signer?, protocol kind: ErrorFormat, credentials: Credentials?,
                             accepted: Set<Int>, subject: String?) async throws(AWSError) -> HTTPResponse {
        var headers: [(String, String)] = [("Host", call.endpoint.host)] + call.headers
        if let signer, let credentials {
            let current = try await credentials.get()
            headers = signer.sign(method: call.method, path: call.path, query: call.query, headers: headers, body: call.body,
                                  credentials: current, time: unixNow()).headers
        }
        let response: HTTPResponse
        let started = ContinuousClock.now
        do {
            response = try await http.send(HTTPRequest(method: call.method, url: call.url, headers: headers, body: call.body,
                                                       timeoutMilliseconds: timeoutMilliseconds))
        } catch {
            let failure = AWSError(.transport, operation: call.operation, message: "\(call.endpoint.host): \(error.message)")
            trace(call.operation, subject: subject, outcome: "no answer (\(error.message))", requestID: nil, since: started, metric: "no_answer")
            throw failure
        }
        guard (200..<300).contains(response.status) || accepted.contains(response.status) else {
            let failure = Self.serviceError(operation: call.operation, response: response, protocol: kind)
            trace(call.operation, subject: subject, outcome: "HTTP \(response.status) \(failure.code ?? "")", requestID: failure.requestID, since: started,
                  metric: failure.code ?? "HTTP\(response.status)")
            throw failure
        }
        trace(call.operation, subject: subject, outcome: "HTTP \(response.status)", requestID: response.requestID, since: started, metric: "ok")
        return response
    }

    /// Every call is counted (`MetricsRegistry`); at `log_level = "trace"` it is also one line,
    /// what CloudTrail can be matched with. Never the body or the headers (they carry the
    /// signature, tokens and, for Decrypt, the key).
    private func trace(_ operation: String, subject: String?, outcome: String, requestID: String?, since started: ContinuousClock.Instant,
                       metric: String) {
        let elapsed = ContinuousClock.now - started
        MetricsRegistry.shared.recordCall(operation: operation, outcome: metric,
                                          seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        guard logger.logLevel <= .trace else { return }
        let milliseconds = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        logger.trace("AWS \(operation)\(subject.map { " (\($0))" } ?? ""): \(outcome.trimmingCharacters(in: [" "])) in \(milliseconds) ms, request id \(requestID ?? "none")",
                     metadata: ["event": "aws_call"])
    }

    public static func serviceError(operation: String, response: HTTPResponse, protocol kind: ErrorFormat) -> AWSError {
        var code: String?
        var message: String?
        // Some front ends (and moto's auth layer) answer a JSON-protocol call with an XML error.
        let looksLikeXML = response.body.withBytes { bytes in bytes.first(where: { $0 > 0x20 }) == UInt8(ascii: "<") }
        switch looksLikeXML ? .query : kind {
        case .json:
            response.body.withBytes { bytes in
                guard let reader = try? JSONReader(bytes: bytes) else { return }
                code = reader.string(reader.member("__type")) ?? reader.string(reader.member("code")) ?? reader.string(reader.member("Code"))
                message = reader.string(reader.member("message")) ?? reader.string(reader.member("Message"))
            }
            // "com.amazonaws.kms#NotFoundException" or "NotFoundException:http://…"
            if let raw = code {
                var short = Substring(raw)
                if let hash = short.lastIndex(of: "#") { short = short[short.index(after: hash)...] }
                if let colon = short.firstIndex(of: ":") { short = short[..<colon] }
                code = String(short)
            }
        case .query:
            response.body.withBytes { bytes in
                code = XMLText.first("Code", in: bytes)
                message = XMLText.first("Message", in: bytes)
            }
        }
        // STS and other query APIs repeat the id in the error document.
        var requestID = response.requestID
        if requestID == nil {
            requestID = response.body.withBytes { bytes in XMLText.first("RequestId", in: bytes) }
        }
        let fallback = response.status == 429 ? "Throttling" : (response.status >= 500 ? "ServiceUnavailable" : "HTTP\(response.status)")
        let text = message.map { Self.oneLine($0) } ?? Self.oneLine(String(response.body.text.prefix(200)))
        var error = AWSError(.service(code: code ?? fallback), operation: operation, status: response.status,
                             message: text.isEmpty ? "(no message)" : text)
        error.requestID = requestID
        return error
    }

    public static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ").trimmingCharacters(in: [" ", "\t"])
    }
}

/// Text of XML elements in the small documents STS and IMDS return. Not a general XML parser:
/// finds `<Name>text</Name>` and decodes the five predefined entities.
public enum XMLText {
    public static func range(_ name: String, in bytes: UnsafeRawBufferPointer, from start: Int = 0) -> Range<Int>? {
        let open = Array("<\(name)>".utf8), close = Array("</\(name)>".utf8)
        guard let openAt = find(open, in: bytes, from: start) else { return nil }
        let contentStart = openAt + open.count
        guard let closeAt = find(close, in: bytes, from: contentStart) else { return nil }
        return contentStart..<closeAt
    }

    public static func first(_ name: String, in bytes: UnsafeRawBufferPointer) -> String? {
        guard let range = range(name, in: bytes) else { return nil }
        return decode(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self))
    }

    public static func decode(_ text: String) -> String {
        guard text.contains("&") else { return text }
        return text.replacing("&lt;", with: "<").replacing("&gt;", with: ">").replacing("&quot;", with: "\"")
            .replacing("&apos;", with: "'").replacing("&amp;", with: "&")
    }

    public static func find(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard needle.count <= bytes.count, start <= bytes.count - needle.count else { return nil }
        var index = start
        while index <= bytes.count - needle.count {
            var match = true
            for offset in 0..<needle.count where bytes[index + offset] != needle[offset] {
                match = false
                break
            }
            if match { return index }
            index += 1
        }
        return nil
    }
}
