// swift-tools-version:6.0
// Fuzzing of the config loader and the hosts.toml renderer. A package of its own so that the
// sanitizer flags never touch the main build; scripts/fuzz.sh builds and runs it.
import PackageDescription

let package = Package(
    name: "configure-containerd-registries-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "configure-containerd-registries", path: ".."),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // The round-trip check both executables share: render every registry, parse it back, compare.
        .target(
            name: "RenderCheck",
            dependencies: [
                .product(name: "RegistryMirrorCore", package: "configure-containerd-registries"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // Declares libFuzzer's LLVMFuzzerRunDriver for the entry point below.
        .target(name: "CFuzzerDriver"),
        // libFuzzer entry point (LLVMFuzzerTestOneInput). Build with -sanitize=fuzzer,address
        // -parse-as-library (scripts/fuzz.sh).
        .executableTarget(
            name: "FuzzConfigLoader",
            dependencies: [
                "RenderCheck", "CFuzzerDriver",
                .product(name: "RegistryMirrorCore", package: "configure-containerd-registries"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // Plain build, no sanitizer: prints what the loader accepted and what was rendered, as JSON,
        // for fuzz/oracle.py to check with Python's tomllib.
        .executableTarget(
            name: "render-oracle",
            dependencies: ["RenderCheck", .product(name: "RegistryMirrorCore", package: "configure-containerd-registries")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
