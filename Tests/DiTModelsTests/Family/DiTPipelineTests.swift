import Foundation
import Testing
import Safetensors
import Tensors
import DiTModels
import TeaCache
import TestSupport

/// The high-level path of the README's second journey: `DiTFamilies.load(from:)` on a diffusers
/// transformer folder and `DiTPipeline.sample`, checked against the diffusers sampling fixtures
/// (`latent.final_uncached` / `latent.final_cached`, relative L2 ≤ 1e-4), and every bad call a typed error.
@Suite struct DiTPipelineTests {
    /// A diffusers-style `transformer/` folder made from a fixture (config.json + diffusion_pytorch_model.safetensors).
    static func transformerFolder(_ fixture: String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("pipeline-\(fixture)-\(UUID().uuidString)/transformer")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let source = Fixtures.folder(fixture)
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"),
                                         to: folder.appendingPathComponent("config.json"))
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("diffusion_pytorch_model.safetensors"),
                                                   withDestinationURL: source.appendingPathComponent("model.safetensors"))
        return folder
    }

    static func remove(_ folder: URL) { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent()) }

    static func sampling(_ fixture: String) throws -> SamplingDescription {
        try JSONDecoder().decode(SamplingDescription.self,
                                 from: Data(contentsOf: Fixtures.folder(fixture).appendingPathComponent("sampling.json")))
    }

    @Test(arguments: ["flux", "tangoflux", "wan21", "hunyuan_video", "ltx_video", "mochi", "cogvideox", "consisid", "lumina_next",
                      "lumina2", "easyanimate", "cosmos", "latte", "hidream_i1"])
    func uncachedAndCachedSamplingMatchDiffusers(fixture: String) throws {
        let folder = try Self.transformerFolder(fixture)
        defer { Self.remove(folder) }
        let pipeline = try DiTFamilies.load(from: folder)
        #expect(try DiTFamilies.harness(named: pipeline.family.name).fixtureNames.contains(fixture))
        #expect(pipeline.parameterCount > 0)
        let description = try Self.sampling(fixture)
        let samplingFile = Fixtures.folder(fixture).appendingPathComponent("sampling.safetensors")
        let cond = try DiTConditioning(contentsOf: samplingFile, prefix: "cond.", options: description.nonTensorArgs)
        let negative = description.cfg == nil ? nil
            : try DiTConditioning(contentsOf: samplingFile, prefix: "uncond.", options: description.nonTensorArgs)
        let reference = try Fixtures.tensors(fixture, "sampling.safetensors")
        let noise = try #require(reference["latent.initial"])
        let steps = try #require(description.timesteps?.count)

        let uncached = try pipeline.sample(cond, noise: noise, negative: negative, guidanceScale: description.cfg?.guidanceScale,
                                           steps: steps)
        #expect(uncached.trace == nil)
        #expect(try Tensor.relativeL2(uncached.latent, #require(reference["latent.final_uncached"])) <= 1e-4)

        // The cached runs of records with the standard counter (the others need the family's verifier hooks).
        for record in description.records where record.counterKind == "standard" {
            let configuration = try TeaCacheConfiguration.faithful(coefficients: record.coefficients,
                                                                   threshold: record.threshold, schedule: .standard)
            let cached = try pipeline.sample(cond, noise: noise, negative: negative,
                                             guidanceScale: description.cfg?.guidanceScale, steps: steps,
                                             policy: .teaCache(configuration))
            let trace = try #require(cached.trace)
            #expect(trace.entries.map { $0.decision == .compute ? "computed" : "skipped" } == record.calls.map(\.decision),
                    "\(fixture) \(record.name)")
            #expect(try Tensor.relativeL2(cached.latent, #require(reference[record.finalCachedTensor])) <= 1e-4)
        }
    }

    /// The conditioning may carry the initial noise as `hidden_states`; a run without either is a typed error.
    @Test func noiseFromTheConditioningOrATypedError() throws {
        let folder = try Self.transformerFolder("flux")
        defer { Self.remove(folder) }
        let pipeline = try DiTFamilies.load(from: folder)
        let samplingFile = Fixtures.folder("flux").appendingPathComponent("sampling.safetensors")
        var cond = try DiTConditioning(contentsOf: samplingFile, prefix: "cond.")
        #expect(throws: DiTSamplingError.missingNoise(source: samplingFile.path)) { try pipeline.sample(cond, steps: 2) }
        let noise = try #require(try Fixtures.tensors("flux", "sampling.safetensors")["latent.initial"])
        let explicit = try pipeline.sample(cond, noise: noise, steps: 3).latent
        cond.tensors["hidden_states"] = noise
        #expect(try pipeline.sample(cond, steps: 3).latent == explicit)
    }

    /// Every wrong call is a typed error that names the problem, never a trap.
    @Test func badCallsAreTypedErrors() throws {
        let folder = try Self.transformerFolder("flux")
        defer { Self.remove(folder) }
        let pipeline = try DiTFamilies.load(from: folder)
        let samplingFile = Fixtures.folder("flux").appendingPathComponent("sampling.safetensors")
        let cond = try DiTConditioning(contentsOf: samplingFile, prefix: "cond.")
        let noise = try #require(try Fixtures.tensors("flux", "sampling.safetensors")["latent.initial"])

        var missing = cond
        missing.tensors["pooled_projections"] = nil
        #expect(throws: DiTSamplingError.missingArgument(name: "pooled_projections", source: samplingFile.path)) {
            try pipeline.sample(missing, noise: noise, steps: 2)
        }
        // Wrong shapes: a text embedding of the wrong width, a latent of the wrong rank and width.
        var wide = cond
        let text = try cond.tensor("encoder_hidden_states")
        wide.tensors["encoder_hidden_states"] = try Tensor(zeros: Array(text.shape.dropLast()) + [text.shape.last! + 3])
        #expect(throws: (any Error).self) { try pipeline.sample(wide, noise: noise, steps: 2) }
        #expect(throws: (any Error).self) { try pipeline.sample(cond, noise: try Tensor(zeros: [2, 3]), steps: 2) }
        #expect(throws: (any Error).self) {
            try pipeline.sample(cond, noise: try Tensor(zeros: [1, noise.shape[1], noise.shape[2] + 1]), steps: 2)
        }
        #expect(throws: CacheError.self) { try pipeline.sample(cond, noise: noise, steps: 0) }
        #expect(throws: DiTSamplingError.self) { try pipeline.sample(cond, noise: noise, guidanceScale: 4, steps: 2) }
    }

    @Test func badFoldersAreTypedErrors() throws {
        let missing = URL(fileURLWithPath: "/nonexistent-\(UUID().uuidString)/transformer")
        #expect(Self.reason { _ = try DiTFamilies.load(from: missing) }?.contains("not found") == true)
        let file = Fixtures.folder("flux").appendingPathComponent("config.json")
        #expect(Self.reason { _ = try DiTFamilies.load(from: file) }?.contains("not a folder") == true)
        // A folder whose config names no known class.
        let folder = try Self.transformerFolder("flux")
        defer { Self.remove(folder) }
        try Data(#"{"_class_name": "UNet2DConditionModel"}"#.utf8).write(to: folder.appendingPathComponent("config.json"))
        #expect(throws: ModelLoadError.self) { _ = try DiTFamilies.load(from: folder) }
        // A folder loaded with the wrong family's typed loader.
        let flux = try Self.transformerFolder("flux")
        defer { Self.remove(flux) }
        #expect(Self.reason { _ = try WanFamily.load(from: flux) }?.contains("FluxTransformer2DModel") == true)
    }

    /// Every `parse` overload with every JSON form: a typed error or the right configuration, never a trap.
    @Test func everyParseOverloadTakesEveryFormWithoutTrapping() throws {
        let wrapped = try Data(contentsOf: Fixtures.folder("flux").appendingPathComponent("config.json"))
        let (className, body) = try ModelConfigFile.parse(wrapped)
        let expected = try FluxConfiguration.parse(wrapped)
        var plainObject = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        plainObject["_class_name"] = className
        let plain = try JSONSerialization.data(withJSONObject: plainObject)
        #expect(try FluxConfiguration.parse(plain) == expected)
        #expect(try FluxConfiguration.parse(body, className: className) == expected)
        let inputs: [String] = ["[]", "[1, 2]", "3", "null", "\"text\"", "{", "", "{\"_class_name\": 5}",
                                "{\"class\": \"FluxTransformer2DModel\", \"config\": [1]}",
                                "{\"class\": \"FluxTransformer2DModel\", \"config\": {\"num_layers\": \"two\"}}",
                                "{\"_class_name\": \"FluxTransformer2DModel\", \"num_layers\": -1}",
                                "{\"_class_name\": \"FluxTransformer2DModel\", \"num_layers\": 1e400}",
                                "{\"_class_name\": \"FluxTransformer2DModel\", \"num_layers\": 1.5}"]
        for text in inputs {
            #expect(throws: ModelLoadError.self, "\(text)") { _ = try FluxConfiguration.parse(Data(text.utf8)) }
            #expect(throws: ModelLoadError.self, "\(text)") { _ = try FluxConfiguration.parse(Data(text.utf8), className: className) }
        }
        // The wrapped file given where only the object is expected: its keys are not configuration fields.
        #expect(throws: ModelLoadError.self) { _ = try FluxConfiguration.parse(wrapped, className: className) }
        #expect(throws: ModelLoadError.self) { _ = try WanConfiguration.parse(body, className: className) }
    }

    static func reason(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }
}
