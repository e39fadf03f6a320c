// swift-tools-version:6.1
// sortedtrain: Sorted Fine-Tuning (SoFT) of LLaMA-family models, data-parallel over MPI.
import PackageDescription

let package = Package(
    name: "sortedtrain",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sortedtrain", targets: ["sortedtrain"]),
        .library(name: "SortedKit", targets: ["SortedKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // HTTP for `serve` (no configuration-file support needed: the CLI configures it).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.20.0", traits: []),
        // NIO's HTTP/1 client codec for `bench serve`'s load generator (no TLS to build).
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        // System libraries, each behind a small shim header (see Sources/C*/shim.h).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        // oneDNN, for bf16 GEMMs (Debian's OpenBLAS has no sbgemm); no pkg-config file in Debian.
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),

        // Pure math: tensors, kernels, the LLaMA model, the sorted loss, AdamW. Optimised in
        // debug builds too: unoptimised, its SIMD loops made the long-sequence unit tests
        // take minutes instead of seconds.
        .target(name: "SortedKit", dependencies: ["CBLAS", "CDNNL", "CQuant"], swiftSettings: [.unsafeFlags(["-O"])]),
        // Matrix kernels in C with intrinsics per CPU feature, chosen at run time: the quantized
        // weight kernels (GGUF block formats), float32 rows, and training attention's bf16 tiles
        // and row exp; optimised in debug builds too.
        .target(name: "CQuant", cSettings: [.unsafeFlags(["-O2"])]),
        // The one funnel for MPI.
        .target(name: "SortedDistributed", dependencies: ["CMPI"]),
        // Container formats in pure Swift: JSON (the one strict reader, with positions, and a
        // Decoder over it), safetensors (read and write), GGUF (read and write).
        .target(name: "SortedFormats", dependencies: ["SortedKit"]),
        // Model and checkpoint files: HDF5 (the one place that imports CHDF5), HF directories,
        // GGUF models, export — over SortedFormats' containers.
        .target(name: "SortedIO", dependencies: ["CHDF5", "SortedKit", "SortedFormats"]),

        // Tokenizers, datasets, prompt templates, the sharded sampler (no HDF5).
        .target(name: "SortedData", dependencies: ["SortedKit", "SortedFormats"]),

        // SVG charts (no dependencies): eval and training curves.
        .target(name: "SortedPlot"),

        // Serving every depth: loading a model to serve (no training config parsed), generation
        // strategies (fixed depth, early exit, self-speculative), continuous batching, per-exit
        // evaluation and their benchmark, over SortedKit's decoder.
        .target(name: "SortedInference", dependencies: ["SortedKit", "SortedFormats", "SortedIO", "SortedData", "SortedDistributed", "SortedPlot"]),

        // `sortedtrain serve`: the OpenAI-compatible HTTP adapter over SortedInference — the
        // wire format, the continuous-batching scheduler, metrics, the chat page — and the
        // load generator of `bench serve`.
        .target(name: "SortedServer", dependencies: ["SortedInference", "SortedKit", "SortedData", "SortedFormats",
                                                     .product(name: "Hummingbird", package: "hummingbird"),
                                                     .product(name: "HummingbirdCore", package: "hummingbird"),
                                                     .product(name: "NIOCore", package: "swift-nio"),
                                                     .product(name: "NIOPosix", package: "swift-nio"),
                                                     .product(name: "NIOHTTP1", package: "swift-nio")]),

        // Run configuration, the training loop, metrics, benchmarks.
        .target(name: "SortedTraining", dependencies: ["SortedKit", "SortedDistributed", "SortedFormats", "SortedIO",
                                                       "SortedData", "SortedInference"]),

        .executableTarget(name: "sortedtrain", dependencies: [
            "SortedTraining", "SortedInference", "SortedPlot", "SortedKit", "SortedDistributed", "SortedFormats", "SortedIO",
            "SortedData", "SortedServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Multi-rank checks, launched by launch/test under mpirun.
        .executableTarget(name: "sortedtrain-mpi-tests", dependencies: ["SortedDistributed", "SortedIO", "SortedTraining", "SortedKit"],
                          path: "Tests/MPITests"),

        // What the XCTest targets share: temporary directories, running python3.
        .target(name: "SortedTestSupport", path: "Tests/SortedTestSupport"),

        .testTarget(name: "SortedKitTests", dependencies: ["SortedKit", "SortedFormats"]),
        .testTarget(name: "SortedFormatsTests", dependencies: ["SortedFormats", "SortedTestSupport"]),
        .testTarget(name: "SortedIOTests", dependencies: ["SortedIO", "SortedFormats", "SortedKit", "SortedTestSupport"]),
        .testTarget(name: "SortedDataTests", dependencies: ["SortedData", "SortedFormats", "SortedKit", "SortedTestSupport"]),
        .testTarget(name: "SortedTrainingTests", dependencies: ["SortedTraining", "SortedIO", "SortedDistributed", "SortedKit",
                                                                "SortedData", "SortedFormats", "SortedInference", "SortedTestSupport"]),
        .testTarget(name: "SortedInferenceTests", dependencies: ["SortedInference", "SortedKit", "SortedData", "SortedTestSupport"]),
        .testTarget(name: "SortedPlotTests", dependencies: ["SortedPlot", "SortedTestSupport"]),
        .testTarget(name: "SortedServerTests", dependencies: ["SortedServer", "SortedData"]),
    ],
    // Kernels hand raw buffer pointers to worker threads; Swift 5 mode keeps that legal
    // without wrapping every pointer in a Sendable box.
    swiftLanguageModes: [.v5]
)
