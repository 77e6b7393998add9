import AWSCore
import KeyStore

extension AWSError {
    /// How the key store and the client see it.
    var providerError: ProviderError { ProviderError(self) }
}

extension ProviderError {
    /// How the key store and the client see an AWS failure.
    init(_ error: AWSError) {
        switch error.kind {
        case let .service(code):
            if code == "InvalidCiphertextException" || code == "IncorrectKeyException" {
                self.init(.corrupt, error.description)
            } else {
                self.init(error.isRetryable ? .unavailable : .denied, error.description)
            }
        case .transport, .malformed, .locked:
            self.init(.unavailable, error.description)
        case .credentials:
            self.init(error.transient ? .unavailable : .denied, error.description)
        }
    }
}
