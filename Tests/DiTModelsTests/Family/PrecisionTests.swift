import Foundation
import Safetensors
import Testing
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// Every family's public fixture at every weight precision, converted checkpoints loaded in place, and
/// budgets refused from the configuration alone.
@Suite struct PrecisionTests {
    static let publicFixtures = ["flux", "tangoflux", "wan21", "hunyuan_video", "cogvideox", "mochi", "ltx_video",
                                 "lumina_next", "lumina2", "easyanimate", "cosmos", "consisid", "latte", "hidream_i1"]

    /// The forward and the TeaCache run of each public fixture, with the weight matrices held in each
    /// precision, within ``FixtureVerifier/Tolerances/forPrecision(_:)`` (the README gives the measured
    /// errors those bounds come from).
    @Test(arguments: [WeightPrecision.bfloat16, .float16, .int8])
    func everyPublicFixturePassesAtItsPrecisionsTolerance(precision: WeightPrecision) throws {
        for name in Self.publicFixtures {
            let report = try FixtureVerifier.verify(folder: Fixtures.folder(name), precision: precision)
            #expect(report.passed, "\(name) at \(precision):\n\(report.lines.joined(separator: "\n"))")
        }
    }

    /// Lower precision is not float32 in disguise: the forward differs from float32's, by about the
    /// format's rounding (bf16 2⁻⁹, f16 2⁻¹², int8 groups of 64 ≈ a step of 2.4σ/127).
    @Test func eachPrecisionChangesTheForwardByAboutItsRounding() throws {
        let folder = Fixtures.folder("wan21")
        let configuration = try WanFamily.Configuration.load(folder.appendingPathComponent("config.json"))
        let input = try WanFamily.forwardInput(FixtureFolder(folder).forwardArguments(), configuration: configuration)
        let reference = try WanFamily.load(configuration, weightsAt: folder.appendingPathComponent("model.safetensors")).forward(input)
        for (precision, range) in [(WeightPrecision.bfloat16, 1e-4...2e-2), (.float16, 1e-5...2e-3), (.int8, 5e-4...5e-2)] {
            let model = try WanFamily.load(configuration, weightsAt: folder.appendingPathComponent("model.safetensors"),
                                           precision: precision)
            let e = relativeL2(try model.forward(input), reference)
            #expect(range.contains(e), "\(precision): rel L2 \(e)")
        }
    }

    /// A converted checkpoint loads in place at its precision (16-bit matrices borrowed from the mapped
    /// file) and gives exactly the model that converting at load gives.
    @Test(arguments: [WeightPrecision.bfloat16, .float16, .int8])
    func convertedCheckpointsLoadInPlaceAndAgreeExactly(precision: WeightPrecision) throws {
        let folder = Fixtures.folder("flux")
        let configuration = try FluxFamily.Configuration.load(folder.appendingPathComponent("config.json"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("precision-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }  // cleanup of a temporary folder
        let converted = dir.appendingPathComponent("model.safetensors")
        try FluxFamily.convertWeights(configuration, weightsAt: folder.appendingPathComponent("model.safetensors"),
                                      precision: precision, to: converted)
        let file = try SafetensorsFile(contentsOf: converted)
        let stored = try file.weightMatrix(named: "proj_out.weight", precision: precision)
        #expect(stored.precision == precision)
        if case .bfloat16(let b) = stored.storage { #expect(b.isBorrowed) }
        if case .float16(let b) = stored.storage { #expect(b.isBorrowed) }
        let input = try FluxFamily.forwardInput(FixtureFolder(folder).forwardArguments(), configuration: configuration)
        let inPlace = try FluxFamily.load(configuration, weightsAt: converted, precision: precision).forward(input)
        let atLoad = try FluxFamily.load(configuration, weightsAt: folder.appendingPathComponent("model.safetensors"),
                                         precision: precision).forward(input)
        #expect(inPlace == atLoad)
    }

    /// The footprint counted without allocating equals what a random model of each precision holds.
    @Test func theCountedFootprintIsWhatTheModelHolds() throws {
        let c = try LTXVideoFamily.Configuration.load(Fixtures.folder("ltx_video").appendingPathComponent("config.json"))
        for precision in WeightPrecision.allCases {
            let counted = try LTXVideoFamily.weightFootprint(c, precision: precision)
            let loaded = try LTXVideoFamily.randomCounting(c, seed: 1, steps: 8, precision: precision)
            #expect(counted.parameters == loaded.parameterCount)
            #expect(abs(counted.bytes - loaded.weightBytes) < 1)
        }
        let f32 = try LTXVideoFamily.weightFootprint(c, precision: .float32).bytes
        #expect(try LTXVideoFamily.weightFootprint(c, precision: .bfloat16).bytes < 0.6 * f32)
        #expect(try LTXVideoFamily.weightFootprint(c, precision: .int8).bytes < 0.4 * f32)
    }

    /// FLUX.1-dev's published configuration (11.9 B parameters) under a 16 GB budget: float32 and bf16
    /// are refused from the configuration alone, in well under a second, naming int8 as what fits.
    @Test func fullSizeConfigurationsAreRefusedBeforeAnythingIsAllocated() throws {
        let url = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Benchmarks/configs/full/flux1-dev.json")
        let data = try Data(contentsOf: url)
        let start = Date()
        #expect {
            try ForwardBenchmark.make(data: data, precision: .float32, memoryBudget: MemoryBudget(bytes: 16e9))
        } throws: { error in
            "\(error)".contains("int8") && !"\(error)".contains("bfloat16 or")
        }
        let (className, body) = try ModelConfigFile.parse(data)
        let configuration = try FluxFamily.Configuration.parse(body, className: className)
        #expect(throws: ModelLoadError.self) {
            try FluxFamily.random(configuration, seed: 0, steps: 28, precision: .bfloat16, memoryBudget: MemoryBudget(bytes: 16e9))
        }
        let footprint = try FluxFamily.weightFootprint(configuration, precision: .int8)
        #expect(footprint.parameters > 11_800_000_000 && footprint.parameters < 12_000_000_000)
        #expect(footprint.bytes < 13e9)
        #expect(Date().timeIntervalSince(start) < 5)  // generous for a loaded debug build; typically ~0.1 s
    }
}

/// Every published full-size configuration (`Benchmarks/configs/full/`) fits a 24 GB machine's default
/// whole-model budget (18 GB) in int8, weights and activations counted from the configuration; the
/// parameter counts are the published ones (checked against diffusers 0.42.1 when the files were made).
@Suite struct FullSizePlanTests {
    static let folder = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Benchmarks/configs/full")

    @Test func everyFullSizeConfigurationFitsIn24GBInInt8() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.folder, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }
        #expect(files.count >= 11)
        let published: [String: Double] = ["flux1-dev.json": 11.90e9, "hunyuanvideo.json": 12.82e9, "mochi-1.json": 10.03e9,
                                           "wan2.1-t2v-14b.json": 14.29e9, "cogvideox-5b.json": 5.57e9, "wan2.1-t2v-1.3b.json": 1.42e9,
                                           "consisid-preview.json": 6.16e9, "hidream-i1-full.json": 17.11e9]
        // HiDream-I1's 17.1 B parameters take 18.2 GB in int8 with their group scales: it needs a 32 GB
        // machine's default budget (24 GB).
        let budgets: [String: Double] = ["hidream-i1-full.json": 24e9]
        for file in files {
            let data = try Data(contentsOf: file)
            let int8 = try ForwardBenchmark.plan(data: data, precision: .int8)
            let f32 = try ForwardBenchmark.plan(data: data, precision: .float32)
            #expect(int8.weightBytes + int8.activationBytes < budgets[file.lastPathComponent, default: 18e9],
                    "\(file.lastPathComponent): \(int8)")
            #expect(int8.weightBytes < 0.3 * f32.weightBytes, "\(file.lastPathComponent)")
            if let n = published[file.lastPathComponent] {
                #expect(abs(Double(int8.parameters) - n) < 0.01 * n, "\(file.lastPathComponent): \(int8.parameters)")
            }
        }
    }
}

private func relativeL2(_ a: Tensor, _ b: Tensor) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a.scalars, b.scalars) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
    return (num / max(den, 1e-300)).squareRoot()
}
