import Foundation
import Testing
import Tensors
@testable import TeaCacheDemo

/// `teacache demo`, `teacache calibrate` and `teacache calibrate --policy magcache` refuse a run far
/// over the memory budget from the sizes alone, in well under a second, naming the bytes, the budget
/// and inputs that fit.
@Suite struct DemoBudgetTests {
    /// FLUX.1-dev's configuration at a 4096×4096-pixel image, batch 2.
    static let fluxDevHuge = """
    {"class": "FluxTransformer2DModel",
     "config": {"patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
                "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
                "pooled_projection_dim": 768, "guidance_embeds": true, "axes_dims_rope": [16, 56, 56]},
     "inputs": {"batch": 2, "latent_height": 512, "latent_width": 512, "text_tokens": 512}}
    """

    static func source() throws -> (ModelSource, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacache-budget-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = dir.appendingPathComponent("flux-dev-huge.json")
        try Data(fluxDevHuge.utf8).write(to: config)
        var source = ModelSource(family: "flux", configPath: config.path, seed: 0, steps: 4)
        source.memoryBudget = MemoryBudget(gigabytes: 4)
        return (source, dir)
    }

    static func quiet(_ label: String) -> ProgressBar { ProgressBar(label: label, interactive: false) { _ in } }

    /// Runs `body`, which must throw a `DemoError.model` naming the budget and inputs that fit, in under a second.
    static func expectFastRefusal(_ what: String, _ body: () throws(DemoError) -> Void) {
        let clock = ContinuousClock()
        var message: String?
        let elapsed = clock.measure {
            do { try body() } catch { message = "\(error)" }
        }
        #expect(elapsed < .seconds(1), "\(what): refusing took \(elapsed)")
        guard let message else { Issue.record("\(what): a run far over the budget was accepted"); return }
        #expect(message.contains("over the budget of 4 GB"), "\(what): \(message)")
        #expect(message.contains("inputs that fit: batch 1, latent_height "), "\(what): \(message)")
    }

    @Test func theDemoRefusesBeforeAllocating() throws {
        let (source, dir) = try Self.source()
        defer { try? FileManager.default.removeItem(at: dir) }
        let options = DemoOptions(source: source, thresholds: [0.1], outputDirectory: dir.appendingPathComponent("out").path)
        Self.expectFastRefusal("demo") { () throws(DemoError) in _ = try DemoRunner.run(options, progress: Self.quiet) }
        // Nothing was written either.
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out").appendingPathComponent("demo-report.txt").path))
    }

    @Test func calibrationRefusesBeforeAllocating() throws {
        let (source, dir) = try Self.source()
        defer { try? FileManager.default.removeItem(at: dir) }
        let options = CalibrationOptions(source: source, seeds: 2, outputPath: dir.appendingPathComponent("preset.json").path)
        Self.expectFastRefusal("calibrate") { () throws(DemoError) in _ = try CalibrationRunner.run(options, progress: Self.quiet) }
        Self.expectFastRefusal("calibrate --policy magcache") { () throws(DemoError) in
            _ = try CalibrationRunner.runMagCache(options, progress: Self.quiet)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("preset.json").path))
    }
}
