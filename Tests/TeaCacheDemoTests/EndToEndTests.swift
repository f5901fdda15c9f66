import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import TeaCache
import Tensors
@testable import TeaCacheDemo

/// Tiny FLUX runs in debug builds: 1 double + 1 single block, 16-wide, 16 image + 4 text tokens.
@Suite(.serialized) struct EndToEndTests {
    static let tinyConfig = """
    {"class": "FluxTransformer2DModel",
     "config": {"patch_size": 1, "in_channels": 4, "num_layers": 1, "num_single_layers": 1,
                "attention_head_dim": 8, "num_attention_heads": 2, "joint_attention_dim": 16,
                "pooled_projection_dim": 8, "guidance_embeds": true, "axes_dims_rope": [2, 2, 4]},
     "inputs": {"batch": 1, "latent_height": 8, "latent_width": 8, "text_tokens": 4}}
    """

    static func scratch(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacache-demo-tests-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = dir.appendingPathComponent("tiny.json")
        try Data(tinyConfig.utf8).write(to: config)
        return dir
    }

    static func quiet(_ label: String) -> ProgressBar { ProgressBar(label: label, interactive: false) { _ in } }

    @Test func tinyDemoWritesChartsTracesAndReport() throws {
        let dir = try Self.scratch("demo")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out")
        // An output folder that already holds other files keeps them; a stale report is replaced whole.
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: out.appendingPathComponent("notes.txt"))
        try Data(String(repeating: "stale ", count: 10_000).utf8).write(to: out.appendingPathComponent("demo-report.txt"))
        let options = DemoOptions(
            source: ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 3, steps: 4),
            thresholds: [0, 0.5], outputDirectory: out.path, overheadRepeats: 2)
        let report = try DemoRunner.run(options, progress: Self.quiet)
        #expect(try String(contentsOf: out.appendingPathComponent("notes.txt"), encoding: .utf8) == "keep me")
        let written = try String(contentsOf: out.appendingPathComponent("demo-report.txt"), encoding: .utf8)
        #expect(written.hasPrefix("model: ") && written.contains("PSNR") && !written.contains("stale"))
        // Files are written to a temporary name and renamed: nothing else is left in the folder.
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
        #expect(names == Set(report.files.map { URL(fileURLWithPath: $0).lastPathComponent } + ["notes.txt"]))
        #expect(report.calls == 4)
        // 3 pairs from 4 steps are too few for a degree-4 fit, so only the preset set runs.
        #expect(report.calibration == nil && report.calibrationProblem != nil)
        #expect(report.rows.map(\.threshold) == [0, 0.5])
        let zero = report.rows[0]
        // Threshold 0 computes every call and must reproduce the uncached latent exactly.
        #expect(zero.computed == 4 && zero.relativeL1 == 0 && zero.psnr == .infinity)
        for stem in ["flux-preset-t0", "flux-preset-t0.5"] {
            let svg = try Data(contentsOf: out.appendingPathComponent(stem + ".svg"))
            #expect(XMLParser(data: svg).parse())
            let trace = try CacheTrace(jsonData: Data(contentsOf: out.appendingPathComponent(stem + ".trace.json")))
            #expect(trace.steps == 4 && trace.entries.count == 4)
        }
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("demo-report.txt").path))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("uncached-calibration-pairs.json").path))
        #expect(report.overhead.forwardSeconds > 0 && report.overhead.decisionSeconds > 0)
        #expect(report.render().contains("PSNR"))
    }

    @Test func calibratedPresetRoundTripsIntoTheDemo() throws {
        let dir = try Self.scratch("calibrate")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 5, steps: 6)
        let presetPath = dir.appendingPathComponent("preset.json").path
        let report = try CalibrationRunner.run(
            CalibrationOptions(source: source, seeds: 2, force: true, outputPath: presetPath, name: "tiny-flux",
                               defaultThreshold: 0.2), progress: Self.quiet)
        #expect(report.fit.sampleCount == 2 * 5)  // 6 steps → 5 consecutive pairs per seed
        let loaded = try TeaCachePreset.load(from: URL(fileURLWithPath: presetPath))
        #expect(loaded == report.preset)
        #expect(loaded.name == "tiny-flux" && loaded.defaultThreshold == 0.2)
        #expect(loaded.calibratedRange == report.fit.inputRange)

        let demo = try DemoRunner.run(
            DemoOptions(source: source, thresholds: [0.2], presetPath: presetPath,
                        outputDirectory: dir.appendingPathComponent("out").path, overheadRepeats: 1),
            progress: Self.quiet)
        #expect(demo.rows.map(\.coefficients).contains("preset tiny-flux"))
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/preset-tiny-flux-t0.2.svg").path))
    }

    @Test func poorFitsAreRefusedUnlessForced() throws {
        let dir = try Self.scratch("refuse")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 5, steps: 6)
        // An R² floor of 1 cannot be met by a least-squares fit of noisy pairs.
        var options = CalibrationOptions(source: source, seeds: 2, outputPath: dir.appendingPathComponent("p.json").path,
                                         minimumRSquared: 1)
        #expect {
            try CalibrationRunner.run(options, progress: Self.quiet)
        } throws: { error in
            guard case DemoError.teaCache(.poorCalibrationFit(_, minimum: 1)) = error else { return false }
            return true
        }
        #expect(!FileManager.default.fileExists(atPath: options.outputPath))
        options.force = true
        let report = try CalibrationRunner.run(options, progress: Self.quiet)
        #expect(report.fit.rSquared < 1)
        #expect(FileManager.default.fileExists(atPath: options.outputPath))
    }

    @Test func tooFewPairsIsATypedError() throws {
        let dir = try Self.scratch("few")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, steps: 3)
        #expect(throws: DemoError.teaCache(.insufficientCalibrationSamples(count: 2, needed: 6))) {
            try CalibrationRunner.run(CalibrationOptions(source: source, seeds: 1, outputPath: dir.appendingPathComponent("p.json").path),
                                      progress: Self.quiet)
        }
    }
}

/// A tiny Wan2.1 run with CFG: both branches are cached and recorded separately.
@Suite(.serialized) struct WanEndToEndTests {
    static let tinyConfig = """
    {"class": "WanTransformer3DModel",
     "config": {"patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4,
                "out_channels": 4, "text_dim": 16, "freq_dim": 16, "ffn_dim": 32, "num_layers": 1,
                "cross_attn_norm": true, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 64},
     "inputs": {"batch": 1, "latent_frames": 1, "latent_height": 4, "latent_width": 4, "text_tokens": 3}}
    """

    /// A fresh folder holding `wan.json` (``tinyConfig``); the caller removes the folder.
    static func scratchWithConfig(_ label: String) throws -> (dir: URL, config: URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacache-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = dir.appendingPathComponent("wan.json")
        try Data(Self.tinyConfig.utf8).write(to: config)
        return (dir, config)
    }

    @Test func tinyWanDemoRunsBothBranches() throws {
        let (dir, config) = try Self.scratchWithConfig("demo-wan")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try DemoRunner.run(
            DemoOptions(source: ModelSource(family: "wan21", configPath: config.path, seed: 2, steps: 8),
                        thresholds: [0, 0.2], outputDirectory: dir.appendingPathComponent("out").path, overheadRepeats: 1),
            progress: EndToEndTests.quiet)
        #expect(report.calls == 16)  // 8 steps × (cond, uncond)
        // 7 pairs per branch → 14 samples: enough for the degree-4 fit.
        #expect(report.calibration?.sampleCount == 14)
        let zero = try #require(report.rows.first { $0.threshold == 0 })
        #expect(zero.computed == 16 && zero.relativeL1 == 0)
        let trace = try CacheTrace(jsonData: Data(contentsOf: dir.appendingPathComponent("out/wan2.1-t2v-1.3b-preset-t0.2.trace.json")))
        #expect(Set(trace.entries.map(\.branch)) == [.cond, .uncond])
    }

    /// With CFG each seed gives 2 × (steps − 1) pairs; the report states the real step count.
    @Test func calibrationReportCountsStepsNotPairs() throws {
        let (dir, config) = try Self.scratchWithConfig("calibrate-wan")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try CalibrationRunner.run(
            CalibrationOptions(source: ModelSource(family: "wan21", configPath: config.path, seed: 2, steps: 6), seeds: 2,
                               force: true, outputPath: dir.appendingPathComponent("p.json").path),
            progress: EndToEndTests.quiet)
        #expect(report.fit.sampleCount == 2 * 2 * 5)
        #expect(report.render().contains("runs: 2 seeds × 6 steps → 20 (input, output) pairs"))
    }
}

/// The three policies side by side in one demo table, and MagCache ratio calibration.
@Suite(.serialized) struct PolicyDemoTests {
    @Test func everyPolicyRunsInOneTable() throws {
        let dir = try EndToEndTests.scratch("policies")
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = DemoOptions(
            source: ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 3, steps: 6),
            thresholds: [0.3], outputDirectory: dir.appendingPathComponent("out").path, overheadRepeats: 1, repeats: 1)
        options.policies = try DemoPolicy.parse("all")
        options.firstBlockThresholds = [0, 1e9]
        options.magCacheThresholds = [0, 10]
        let report = try DemoRunner.run(options, progress: EndToEndTests.quiet)
        let labels = report.rows.map(\.coefficients)
        #expect(labels.contains("first-block") && labels.contains("magcache flux ratios") && labels.contains("magcache calibrated"))
        // First-Block Cache at 0 never skips (distances are positive); at 1e9 it skips every call after the first.
        let fb = report.rows.filter { $0.coefficients == "first-block" }
        #expect(fb.map(\.computed) == [6, 1] && fb.allSatisfy { $0.firstBlockShare == 0.5 })
        #expect(fb[0].relativeL1 == 0)
        // MagCache retains int(0.2·6 + 0.5) = 1 step and skips at most 3 in a row; at threshold 0 only a step
        // whose interpolated ratio is exactly 1 can skip (diffusers compares with ≤).
        let mag = report.rows.filter { $0.coefficients == "magcache flux ratios" }
        #expect(mag[0].computed >= 5 && mag[1].computed < mag[0].computed && mag[1].computed >= 2)
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/calibrated-magcache.json").path))
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/first-block-t1e+09.svg").path))
        #expect(throws: DemoError.self) { try DemoPolicy.parse("fast") }
        #expect(try DemoPolicy.parse("magcache,teacache") == [.magCache, .teaCache])
    }

    @Test func magCacheRatiosCalibrateIntoAPreset() throws {
        let dir = try EndToEndTests.scratch("magcal")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("mag.json").path
        let report = try CalibrationRunner.runMagCache(
            CalibrationOptions(source: ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 1, steps: 5),
                               seeds: 2, outputPath: path), progress: EndToEndTests.quiet)
        #expect(report.sequences == 2 && report.preset.magRatios.count == 5 && report.preset.magRatios[0] == 1)
        let loaded = try MagCachePreset(jsonData: Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(loaded == report.preset)
        #expect((loaded.maxStandardDeviation ?? -1) >= 0)
    }
}
