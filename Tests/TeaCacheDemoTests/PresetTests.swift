import DiTModels
import Foundation
import Testing
import TeaCache
@testable import TeaCacheDemo

/// Presets by name everywhere: `--model` aliases, `--preset` names or files (TeaCache and MagCache, as
/// `teacache calibrate` writes them), and the catalog `teacache presets` lists.
@Suite(.serialized) struct PresetTests {
    static func quiet(_ label: String) -> ProgressBar { ProgressBar(label: label, interactive: false) { _ in } }

    @Test func everyFamilyAliasAndPresetNameIsAModel() throws {
        #expect(try DemoFamily(named: "tangoflux").family == FluxFamily.self)
        #expect(try DemoFamily(named: "tangoflux").builtInPreset == .tangoFlux)
        #expect(try DemoFamily(named: "flux").builtInPreset == .flux)
        #expect(try DemoFamily(named: "wan2.1_t2v_14b").builtInPreset.name == "wan2.1_t2v_14b")
        #expect(try DemoFamily(named: "cogvideox_2b").family == CogVideoXFamily.self)
        for name in DiTFamilies.harnessed.map({ $0.name }) + ["tangoflux"] { #expect(DemoFamily.modelNames.contains(name)) }
        // Every preset name selects a family that has it (a family registered by another test may re-list one).
        for f in DiTFamilies.harnessed {
            for p in f.presets {
                let found = try DemoFamily(named: p.name)
                #expect(found.family.presets.contains(p) && found.builtInPreset == p, "\(p.name)")
            }
        }
        #expect(throws: DemoError.unknownModel("tangoflux2", available: DemoFamily.modelNames)) {
            _ = try DemoFamily(named: "tangoflux2")
        }
    }

    @Test func catalogListsEveryPresetOnceWithItsFamily() throws {
        let entries = PresetCatalog.entries
        #expect(Set(entries.map(\.reference)).count == entries.count)
        // Every preset of every family is listed once, under a family that has it (another test may have
        // registered a family re-listing a built-in preset; the first listing wins).
        for f in DiTFamilies.all {
            for p in f.presets {
                let entry = try #require(entries.first { $0.reference == p.name }, "\(p.name)")
                let owner = try #require(DiTFamilies.all.first { $0.name == entry.family })
                #expect(owner.presets.contains(p))
            }
            for p in f.magCachePresets {
                let entry = try #require(entries.first { $0.reference == "magcache:" + p.name }, "\(p.name)")
                #expect(try #require(DiTFamilies.all.first { $0.name == entry.family }).magCachePresets.contains(p))
            }
        }
        #expect(PresetCatalog.entry(named: "hidream_i1")?.family == "hidream_i1")
        let flux = try #require(PresetCatalog.entry(named: "flux"))
        #expect(flux.suggestedThresholds == "default 0.6; 0.25 → 1.5×, 0.4 → 1.8×, 0.6 → 2×, 0.8 → 2.25×")
        #expect(flux.source == TeaCachePreset.flux.provenance)
    }

    @Test func presetNamesAndFilesResolve() throws {
        #expect(try PresetCatalog.resolve("wan2.1_t2v_14b") == .teaCache(.wan21T2V14B))
        #expect(try PresetCatalog.resolve("magcache:flux") == .magCache(.flux))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("presets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("mine.json")
        try TeaCachePreset.mochi.jsonData().write(to: file)
        #expect(try PresetCatalog.resolve(file.path) == .teaCache(.mochi))
        try MagCachePreset.flux.jsonData().write(to: file)
        #expect(try PresetCatalog.resolve(file.path) == .magCache(.flux))
        for (reference, expected) in [("nope", "nope: no built-in preset or file of that name; give a preset JSON file or one of the names `teacache presets` lists"),
                                      (dir.path + "/absent.json", "absent.json: not found; give"),
                                      (dir.path, ": is a directory; give a preset JSON file")] {
            do {
                _ = try PresetCatalog.resolve(reference)
                Issue.record("\(reference) should fail")
            } catch {
                #expect(error.description.contains(expected), "\(error)")
                #expect(!error.description.contains("NSCocoaErrorDomain") && !error.description.contains("Code="))
            }
        }
        try Data("{\"name\": 3}".utf8).write(to: file)
        #expect(throws: DemoError.self) { _ = try PresetCatalog.resolve(file.path) }
    }

    /// Both kinds of preset `teacache calibrate` writes are read back by the demo's `--preset`.
    @Test(arguments: ["teacache", "magcache"])
    func calibratedPresetsRunInTheDemo(policy: String) throws {
        let dir = try EndToEndTests.scratch("preset-\(policy)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 3, steps: 8)
        let presetPath = dir.appendingPathComponent("calibrated.json").path
        let options = CalibrationOptions(source: source, seeds: 2, force: true, outputPath: presetPath)
        if policy == "teacache" {
            _ = try CalibrationRunner.run(options, progress: Self.quiet)
        } else {
            _ = try CalibrationRunner.runMagCache(options, progress: Self.quiet)
        }
        var demo = DemoOptions(source: source, thresholds: [0.1], presetPath: presetPath,
                               outputDirectory: dir.appendingPathComponent("out").path, overheadRepeats: 1, repeats: 1)
        demo.magCacheThresholds = [0.1]
        let report = try DemoRunner.run(demo, progress: Self.quiet)
        let label = policy == "teacache" ? "preset flux-calibrated" : "magcache preset flux-magcache-calibrated"
        let rows = report.rows.filter { $0.coefficients == label }
        #expect(rows.count == 1, "\(report.rows.map(\.coefficients))")
        #expect(rows.first?.calls == 8)
    }
}
