// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-teacache",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Tensors", targets: ["Tensors"]),
        .library(name: "Safetensors", targets: ["Safetensors"]),
        .library(name: "TeaCache", targets: ["TeaCache"]),
        .library(name: "DiTModels", targets: ["DiTModels"]),
        .library(name: "DiTHarness", targets: ["DiTHarness"]),
        .library(name: "TeaCacheDemo", targets: ["TeaCacheDemo"]),
        .executable(name: "teacache", targets: ["TeaCacheCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // MARK: - System libraries
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),

        .systemLibrary(
            name: "CDNNL",
            providers: [.apt(["libdnnl-dev"])]
        ),

        // MARK: - Implementation details
        .target(name: "CKernels", linkerSettings: [.linkedLibrary("dnnl")]),

        // MARK: - Libraries
        .target(
            name: "Tensors",
            dependencies: ["COpenBLAS", "CDNNL", "CKernels"]
        ),
        .target(
            name: "Safetensors",
            dependencies: ["Tensors"]
        ),
        .target(
            name: "TeaCache",
            dependencies: ["Tensors", "COpenBLAS"]
        ),

        .target(
            name: "DiTModels",
            dependencies: ["Tensors", "Safetensors", "TeaCache"]
        ),
        // Verification against fixtures and benchmarking: the drivers behind `teacache verify`, `bench`,
        // `demo` and `calibrate`, generic over the families (it names none).
        .target(
            name: "DiTHarness",
            dependencies: ["Tensors", "Safetensors", "TeaCache", "DiTModels"]
        ),
        .target(
            name: "TeaCacheDemo",
            dependencies: ["Tensors", "TeaCache", "DiTModels", "DiTHarness"]
        ),

        // MARK: - Command-line tool
        .executableTarget(
            name: "TeaCacheCLI",
            dependencies: [
                "Tensors",
                "Safetensors",
                "DiTModels",
                "DiTHarness",
                "TeaCache",
                "TeaCacheDemo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // MARK: - Tests
        // Shared by the test targets: seeded tensors, naive references, fixture paths, tolerances.
        .target(name: "TestSupport", dependencies: ["Tensors", "Safetensors"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "TestSupport"]),
        .testTarget(name: "SafetensorsTests", dependencies: ["Safetensors", "Tensors", "TestSupport"]),
        // The core runs on synthetic models only: no model family here.
        .testTarget(name: "TeaCacheTests", dependencies: ["TeaCache", "Tensors", "TestSupport"]),
        .testTarget(name: "DiTModelsTests",
                    dependencies: ["DiTModels", "DiTHarness", "Safetensors", "TeaCache", "Tensors", "TestSupport"]),
        .testTarget(name: "TeaCacheDemoTests",
                    dependencies: ["TeaCacheDemo", "TeaCache", "DiTModels", "DiTHarness", "Tensors", "TestSupport"]),
        // Builds README.md's code blocks as a separate consumer package and runs them.
        .testTarget(name: "ReadmeTests", dependencies: ["Safetensors", "Tensors"]),
        .testTarget(
            name: "TeaCacheCLITests",
            dependencies: ["TeaCacheCLI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// Documentation: `BUILD_DOCS=1 swift package generate-documentation --target <Module> --warnings-as-errors`
// (every module: `bash scripts/docs.sh`).
if Context.environment["BUILD_DOCS"] == "1" {
    package.dependencies.append(.package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"))
}
