import BrokerProtocol
import CKeybrokerSystem
import Glibc
import NIOCore
import SystemSupport

/// A blocking protocol v1 client over the broker's Unix socket, for one command's few requests.
struct BrokerConnection {
    private let fd: Int32
    private var nextRequestID: UInt32 = 1
    let path: String

    init(path: String, timeoutSeconds: Int = 30) throws(CommandError) {
        let fd = CKB_unix_connect(path)
        guard fd >= 0 else {
            let hint = (-fd == ENOENT || -fd == ECONNREFUSED) ? " (is keybrokerd running?)" : (-fd == EACCES ? " (are you in the socket's group?)" : "")
            throw CommandError("cannot connect to \(path): \(errnoText(-fd))\(hint)")
        }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
        self.path = path
    }

    func close() {
        _ = Glibc.close(fd)
    }

    /// Sends one request and waits for its response; a non-OK status becomes an error.
    mutating func call(_ body: Request.Body) throws(CommandError) -> Response.Body {
        let request = Request(requestID: nextRequestID, body: body)
        nextRequestID += 1
        var buffer = ByteBuffer()
        request.encode(into: &buffer)
        while buffer.readableBytes > 0 {
            let count = buffer.withUnsafeReadableBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw CommandError("cannot send to \(path): \(errnoText(errno))") }
            buffer.moveReaderIndex(forwardBy: count)
        }
        var header = try receive(4)
        let length = Int(header.readInteger(as: UInt32.self)!)
        guard (1...ProtocolConstants.maximumFrameLength).contains(length) else {
            throw CommandError("the broker sent a frame of \(length) bytes, outside protocol v1's limits")
        }
        // Key bytes stay in this buffer until the caller has moved them to locked memory (secureKey).
        let payload = try receive(length)
        let response: Response
        do {
            response = try Response(payload: payload)
        } catch {
            throw CommandError("cannot read the broker's response: \(error.message)")
        }
        guard response.requestID == request.requestID else {
            throw CommandError("the broker answered request \(response.requestID), not \(request.requestID)")
        }
        if case let .refusal(refusal) = response.body {
            throw CommandError("\(response.status): \(refusal.code.isEmpty ? "" : "\(refusal.code): ")\(refusal.message)")
        }
        if case let .failure(message) = response.body {
            throw CommandError("\(response.status): \(message)")
        }
        return response.body
    }

    private func receive(_ count: Int) throws(CommandError) -> ByteBuffer {
        var bytes = ByteBuffer()
        bytes.reserveCapacity(count)
        while bytes.readableBytes < count {
            let wanted = count - bytes.readableBytes
            var n = 0
            var failure: Int32 = 0
            bytes.writeWithUnsafeMutableBytes(minimumWritableBytes: wanted) { space in
                n = Glibc.recv(fd, space.baseAddress, wanted, 0)
                failure = n < 0 ? errno : 0
                return max(n, 0)
            }
            if n == 0 { throw CommandError("the broker closed the connection") }
            if n < 0 {
                if failure == EINTR { continue }
                let reason = failure == EAGAIN ? "timed out waiting for the broker" : errnoText(failure)
                throw CommandError("cannot read from \(path): \(reason)")
            }
        }
        return bytes
    }
}

struct CommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
