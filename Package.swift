// swift-tools-version:6.0
import PackageDescription

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
        .target(name: "CKeybrokerCrypto", linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "CKeybrokerSystem"),
        .target(name: "CKeybrokerSystemd", linkerSettings: [.linkedLibrary("systemd")]),
        .target(name: "CKeybrokerCurl", linkerSettings: [.linkedLibrary("curl")]),
        .target(name: "BrokerProtocol", dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        .target(name: "SecureMemory", dependencies: ["CKeybrokerCrypto", "CKeybrokerSystem"]),
        .target(name: "KMS", dependencies: ["SecureMemory", "CKeybrokerCrypto"]),
        .target(name: "AWSKMS", dependencies: [
            "KMS", "SecureMemory", "CKeybrokerCrypto", "CKeybrokerCurl",
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "KeyStore", dependencies: ["KMS", "SecureMemory", "CKeybrokerSystem", .product(name: "Logging", package: "swift-log")]),
        .target(name: "BrokerConfiguration", dependencies: ["KMS", "AWSKMS", .product(name: "Logging", package: "swift-log"), "KeyStore", "SecureMemory", "CKeybrokerSystem", "TOMLKit"]),
        .target(name: "Broker", dependencies: [
            "BrokerProtocol", "KeyStore", "KMS", "BrokerConfiguration", "CKeybrokerSystem", "CKeybrokerSystemd", "SecureMemory",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "keybrokerd", dependencies: [
            "Broker", "BrokerConfiguration", "AWSKMS", "KeyStore", "CKeybrokerSystem", "CKeybrokerSystemd",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "keybrokerctl", dependencies: [
            "BrokerProtocol", "BrokerConfiguration", "KMS", "AWSKMS", "KeyStore", "CKeybrokerCrypto", "CKeybrokerSystem",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "BrokerProtocolTests", dependencies: ["BrokerProtocol", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "SecureMemoryTests", dependencies: ["SecureMemory"]),
        .testTarget(name: "KeyStoreTests", dependencies: ["KeyStore", "KMS", "SecureMemory"]),
        .testTarget(name: "BrokerConfigurationTests", dependencies: ["BrokerConfiguration"]),
        .testTarget(name: "AWSKMSTests", dependencies: ["AWSKMS", "SecureMemory"]),
    ],
    swiftLanguageModes: [.v6]
)
