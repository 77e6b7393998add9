import BrokerProtocol
import CKeybrokerTLS
import KeyStore
import KMIPProtocol
import ProviderSettings

/// A failed KMIP exchange, described for a DBA: which server, what failed, what to do.
public struct KMIPError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No answer: refused, unreachable, reset, closed, timed out, DNS.
        case transport
        case timeout
        /// The server's certificate does not verify against kmip_ca_file (chain, or host name).
        case serverCertificate
        /// The server refused our certificate (a TLS alert, or Authentication Not Successful).
        case clientCertificate
        /// The CA file, certificate or key cannot be used, or no protocol version in common.
        case setup
        /// An answer we cannot read.
        case malformed
        /// The server answered with a failed batch item.
        case operation(Operation, ResultReason)
        /// keybrokerd is stopping.
        case cancelled
    }

    public var kind: Kind
    public var server: KMIPSettings.Server?
    public var message: String

    public init(_ kind: Kind, server: KMIPSettings.Server?, message: String) {
        self.kind = kind
        self.server = server
        self.message = message
    }

    init(tlsStatus: Int32, server: KMIPSettings.Server, message: String) {
        let kind: Kind = switch UInt32(bitPattern: tlsStatus) {
        case CKB_TLS_TIMEOUT.rawValue: .timeout
        case CKB_TLS_SERVER_CERT.rawValue: .serverCertificate
        case CKB_TLS_CLIENT_CERT.rawValue: .clientCertificate
        case CKB_TLS_SETUP.rawValue: .setup
        default: .transport
        }
        self.init(kind, server: server, message: message)
    }

    var at: String { server.map { "KMIP server \($0)" } ?? "KMIP" }

    public var description: String {
        switch kind {
        case .transport, .timeout:
            return "\(at) is not reachable: \(message)"
        case .serverCertificate:
            return "\(at): certificate not trusted: \(message) (checked against kmip_ca_file and the host name in kmip_server)"
        case .clientCertificate:
            return "\(at) refused the client certificate (\(message)); register kmip_client_cert_file with the key manager and check that it carries the clientAuth extended key usage"
        case .setup, .malformed:
            return "\(at): \(message)"
        case .cancelled:
            return message
        case let .operation(operation, _):
            return "\(at): \(operation.name) failed: \(message)"
        }
    }

    /// Whether the same request may succeed if sent again soon.
    var isRetryable: Bool {
        switch kind {
        case .transport, .timeout: true
        case let .operation(_, reason): reason == .generalFailure || reason == .operationCanceled
        case .serverCertificate, .clientCertificate, .setup, .malformed, .cancelled: false
        }
    }

    /// A stale pooled connection: worth one more try on a fresh one, at once.
    var isBrokenConnection: Bool { kind == .transport }

    /// How the key store and the plugin see it: refusals are REFUSED (with KMIP's result reason
    /// as the service's code), everything that a fixed server or network cures is UNAVAILABLE (and
    /// retried later).
    var providerError: ProviderError { providerError(key: nil) }

    func providerError(key: String?) -> ProviderError {
        switch kind {
        case .transport, .timeout, .serverCertificate, .malformed, .setup, .cancelled:
            return ProviderError(.unavailable, description)
        case .clientCertificate:
            return ProviderError(.refused, description, serviceCode: "Client Certificate", serviceKey: key)
        case let .operation(_, reason):
            switch reason {
            case .generalFailure, .operationCanceled, .responseTooLarge: return ProviderError(.unavailable, description)
            case .cryptographicFailure: return ProviderError(.corrupt, description)
            default: return ProviderError(.refused, description, serviceCode: reason.description, serviceKey: key)
            }
        }
    }
}
