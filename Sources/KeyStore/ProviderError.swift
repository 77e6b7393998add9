/// What a provider throws. The provider protocol is part of the key store's layer, so it throws
/// that layer's one error type; a provider uses every code but `notFound` (AWS error codes,
/// OpenSSL failures and the like become `unavailable`, `refused`, `locked`, `corrupt` or `internal`).
public typealias ProviderError = KeyStoreError
