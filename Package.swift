// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "configure-containerd-registries",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "configure-containerd-registries", targets: ["configure-containerd-registries"]),
        // For the fuzz package under fuzz/, which builds the core with libFuzzer.
        .library(name: "RegistryMirrorCore", targets: ["RegistryMirrorCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C libraries: a module map and a header of non-variadic shims, nothing else.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CCAres", pkgConfig: "libcares", providers: [.apt(["libc-ares-dev"])]),
        .systemLibrary(name: "CLinux"),
        // Signal handlers that only write to a pipe; the "Early" target installs them before main.
        .target(name: "CSignalGate"),
        .target(name: "CSignalGateEarly", dependencies: ["CSignalGate"]),

        // Pure logic: config, durations, rendering, planning, backoff, the apply state machine.
        .target(
            name: "RegistryMirrorCore",
            dependencies: [
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The edges: libcurl prober, c-ares resolver, the hosts directory on disk, locks, signals, log
        // handlers, sd_notify.
        .target(
            name: "RegistryMirrorSystem",
            dependencies: [
                "RegistryMirrorCore", "CCurl", "CCAres", "CSystemd", "CLinux", "CSignalGate",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "configure-containerd-registries",
            dependencies: [
                "RegistryMirrorCore", "RegistryMirrorSystem", "CSignalGateEarly",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A test tool, not shipped: the journal reader against a real journald (scripts/systemd).
        .executableTarget(name: "journal-follow-check", dependencies: ["RegistryMirrorCore", "RegistryMirrorSystem"]),
        .testTarget(
            name: "RegistryMirrorCoreTests",
            dependencies: ["RegistryMirrorCore", .product(name: "TOMLKit", package: "TOMLKit")],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "RegistryMirrorSystemTests",
            dependencies: ["RegistryMirrorCore", "RegistryMirrorSystem", .product(name: "TOMLKit", package: "TOMLKit")],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
