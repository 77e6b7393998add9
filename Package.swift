// swift-tools-version:6.0
import PackageDescription

// The module graph (docs/architecture.md): every target lists exactly the modules its sources
// import, and imports point one way — bytes ← keys ← providers ← server ← executables.
// IntegrationTests/architecture/test_module_graph.py checks both against the sources.
let nioCore: Target.Dependency = .product(name: "NIOCore", package: "swift-nio")
let nioPosix: Target.Dependency = .product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1: Target.Dependency = .product(name: "NIOHTTP1", package: "swift-nio")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let serviceLifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals: Target.Dependency = .product(name: "UnixSignals", package: "swift-service-lifecycle")
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "keybroker",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "keybrokerd", targets: ["keybrokerd"]),
        .executable(name: "keybrokerctl", targets: ["keybrokerctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
    ],
    targets: [
        // System libraries, one thin C module each.
        .target(name: "CKeybrokerCrypto", linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "CKeybrokerSystem"),
        .target(name: "CKeybrokerSystemd", linkerSettings: [.linkedLibrary("systemd")]),
        .target(name: "CKeybrokerCurl", linkerSettings: [.linkedLibrary("curl")]),
        .target(name: "CKeybrokerTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),

        // Foundations: shared helpers, locked memory, the wire format, settings and policy values.
        .target(name: "SystemSupport"),
        .target(name: "SecureMemory", dependencies: ["CKeybrokerCrypto", "CKeybrokerSystem", "SystemSupport"]),
        .target(name: "BrokerProtocol", dependencies: ["SystemSupport", nioCore]),
        .target(name: "KMIPProtocol"),
        .target(name: "ProviderSettings"),
        .target(name: "BrokerPolicy"),

        // Keys: the store and the abstractions providers and stores implement.
        .target(name: "KeyStore", dependencies: ["BrokerProtocol", "SecureMemory", "SystemSupport", "CKeybrokerSystem", logging]),

        // The AWS client core shared by the KMS provider and the S3 store.
        .target(name: "AWSCore", dependencies: [
            "ProviderSettings", "SecureMemory", "SystemSupport", "CKeybrokerCrypto", "CKeybrokerCurl", nioPosix, logging,
        ]),

        // Providers and stores.
        .target(name: "KMS", dependencies: ["BrokerProtocol", "KeyStore", "SecureMemory", "SystemSupport", "CKeybrokerCrypto"]),
        .target(name: "AWSKMS", dependencies: [
            "AWSCore", "BrokerProtocol", "KeyStore", "ProviderSettings", "SecureMemory", "SystemSupport", logging,
        ]),
        .target(name: "S3Store", dependencies: ["AWSCore", "BrokerProtocol", "KeyStore", "ProviderSettings", "SystemSupport", logging]),
        .target(name: "KMIPKMS", dependencies: [
            "BrokerProtocol", "KeyStore", "KMIPProtocol", "ProviderSettings", "SecureMemory", "SystemSupport",
            "CKeybrokerCrypto", "CKeybrokerTLS", nioPosix, logging,
        ]),

        // The server.
        .target(name: "Broker", dependencies: [
            "BrokerProtocol", "BrokerPolicy", "KeyStore", "SecureMemory", "SystemSupport",
            "CKeybrokerCrypto", "CKeybrokerSystem", "CKeybrokerSystemd",
            nioCore, nioPosix, nioHTTP1, logging, serviceLifecycle,
        ]),

        // Configuration and the executables.
        .target(name: "BrokerConfiguration", dependencies: ["BrokerPolicy", "ProviderSettings", "SystemSupport", "TOMLKit"]),
        .executableTarget(name: "keybrokerd", dependencies: [
            "Broker", "BrokerConfiguration", "BrokerPolicy", "KeyStore", "KMS", "AWSCore", "AWSKMS", "KMIPKMS", "S3Store", "ProviderSettings",
            "SecureMemory", "SystemSupport",
            "CKeybrokerSystem", "CKeybrokerSystemd",
            argumentParser, logging, serviceLifecycle, unixSignals,
        ]),
        .executableTarget(name: "keybrokerctl", dependencies: [
            "BrokerProtocol", "BrokerConfiguration", "KeyStore", "KMS", "SecureMemory", "SystemSupport", "CKeybrokerSystem",
            argumentParser, nioCore,
        ]),
        // A test tool (not installed): keybrokerd's SigV4 signatures for the comparison with botocore.
        .executableTarget(name: "keybroker-sigv4-check", dependencies: ["AWSCore", "AWSKMS", "ProviderSettings", "S3Store"], path: "Tests/Tools/SigV4Check"),

        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "SystemSupportTests", dependencies: ["SystemSupport", "TestSupport"]),
        .testTarget(name: "BrokerProtocolTests", dependencies: ["BrokerProtocol", nioCore]),
        .testTarget(name: "SecureMemoryTests", dependencies: ["SecureMemory"]),
        .testTarget(name: "KeyStoreTests", dependencies: ["KeyStore", "KMS", "BrokerProtocol", "SecureMemory", "SystemSupport", "TestSupport", logging]),
        .testTarget(name: "KMSTests", dependencies: ["KMS", "KeyStore", "BrokerProtocol", "SecureMemory", "TestSupport"]),
        .testTarget(name: "BrokerTests", dependencies: [
            "Broker", "BrokerPolicy", "KeyStore", "KMS", "BrokerProtocol", "SecureMemory", "CKeybrokerSystem", "TestSupport", logging,
            nioCore, .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "BrokerConfigurationTests", dependencies: ["BrokerConfiguration", "BrokerPolicy", "ProviderSettings", "TestSupport"]),
        .testTarget(name: "AWSCoreTests", dependencies: ["AWSCore", "ProviderSettings", "SecureMemory", "SystemSupport"]),
        .testTarget(name: "AWSKMSTests", dependencies: ["AWSKMS", "AWSCore", "KeyStore", "BrokerProtocol"]),
        .testTarget(name: "S3StoreTests", dependencies: ["S3Store"]),
        .testTarget(name: "KMIPProtocolTests", dependencies: ["KMIPProtocol"]),
        .testTarget(name: "KMIPKMSTests", dependencies: ["KMIPKMS", "KMIPProtocol", "ProviderSettings", "BrokerProtocol", "SecureMemory", "SystemSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
