import AWSCore
import KeyStore

extension AWSError {
    /// How the key store and the client see it.
    var providerError: ProviderError { ProviderError(self) }
}

extension ProviderError {
    /// How the key store and the client see an AWS failure: a refusal (access denied, key
    /// disabled or pending deletion, no usable credentials) is `refused` with AWS's code and
    /// `key`, the master key the request used; what a retry may cure is `unavailable`.
    init(_ error: AWSError, key: String? = nil) {
        switch error.kind {
        case let .service(code):
            if code == "InvalidCiphertextException" || code == "IncorrectKeyException" {
                self.init(.corrupt, error.description)
            } else if error.isRetryable {
                self.init(.unavailable, error.description)
            } else {
                self.init(.refused, error.description, serviceCode: code, serviceKey: key)
            }
        case .transport, .malformed:
            self.init(.unavailable, error.description)
        case .locked:
            self.init(.locked, error.description)
        case .credentials:
            if error.transient {
                self.init(.unavailable, error.description)
            } else {
                self.init(.refused, error.description, serviceCode: "NoCredentials", serviceKey: key)
            }
        }
    }
}
