import Foundation
import Testing
import Safetensors
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// The scoped weight loader: keys, rules, and a configuration that disagrees with its weights failing on
/// the stored header shapes (no tensor of the configuration's shape is ever allocated).
@Suite struct WeightLoaderTests {
    @Test func scopesAssembleDiffusersKeys() {
        let loader = WeightLoader(tensors: [:])
        let attn = loader.root["transformer_blocks"][3]["attn"]
        #expect(attn.prefix == "transformer_blocks.3.attn")
        #expect(attn["to_out.0"].key("weight") == "transformer_blocks.3.attn.to_out.0.weight")
        #expect(loader.root.key("proj_out") == "proj_out")
    }

    @Test func rulesIgnoreAndRenameStoredTensors() throws {
        let w = try Tensor(shape: [2], scalars: [1, 2])
        let loader = WeightLoader(tensors: ["old.norm.weight": w, "x.norm_added_q.weight": w, "x.bias": w])
        loader.apply(WeightRules(ignoredPatterns: ["norm_added_q"], renamedPrefixes: [(from: "old.", to: "new.")]))
        #expect(loader.root["new"]["norm"].tensor("weight", shape: [2]) == w)
        #expect(loader.root["x"].tensor("bias", shape: [2]) == w)
        #expect(!loader.root["old"].contains("norm.weight"))
        try loader.finish()
    }

    /// A parameter a model keeps in float32 (read with `tensor`, e.g. HiDream-I1's router gate) that a file
    /// stores as an int8 matrix (`teacache quantize` wrote every matrix so before) is dequantised: the values
    /// are q × the row's scale, exact in float32. Read as a matrix it is the same values.
    @Test func float32ParametersStoredAsInt8AreDequantised() throws {
        let file = try FuzzFindingsTests.int8File(groupSize: "3")
        let loader = WeightLoader(stored: .file(file, path: "int8.safetensors"), precision: .int8)
        let expected: [Float] = [63.5, -1.5, 0, -254, 10, 128]
        #expect(loader.root.tensor("w", shape: [2, 3]).scalars == expected)
        try loader.finish()
    }

    /// Mis-shaped and missing parameters get a scalar placeholder (not zeros of the asked-for shape), so a
    /// configuration asking for enormous tensors allocates nothing of their size; `finish` lists them all.
    @Test func mismatchesAllocateNothingAndAreListedTogether() throws {
        let loader = WeightLoader(tensors: ["a.weight": try Tensor(zeros: [4, 4])])
        let huge = loader.root["a"].tensor("weight", shape: [1 << 16, 1 << 16])
        let missing = loader.root["b"].tensor("weight", shape: [1 << 16, 1 << 16])
        #expect(huge.count == 1 && missing.count == 1)
        #expect { try loader.finish() } throws: { e in
            guard case let ModelLoadError.weightMismatch(m, u, s) = e else { return false }
            return m == ["b.weight"] && u.isEmpty && s == [.init(name: "a.weight", expected: [1 << 16, 1 << 16], found: [4, 4])]
        }
    }

    /// teacache verify on a copy of the wan21 fixture whose config says `attention_head_dim: 16000`
    /// (weights unchanged) used to allocate every block at that width (24 GB, an out-of-memory kill).
    @Test func configThatDisagreesWithItsWeightsIsATypedError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wan-headdim-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Fixtures.folder("wan21"), to: dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("config.json")
        let text = try String(contentsOf: url, encoding: .utf8)
        let edited = text.replacingOccurrences(of: #""attention_head_dim": [0-9]+"#, with: #""attention_head_dim": 16000"#,
                                               options: .regularExpression)
        #expect(edited != text)
        try edited.write(to: url, atomically: true, encoding: .utf8)
        #expect { try FixtureVerifier.verify(folder: dir) } throws: { e in
            guard case let ModelLoadError.weightMismatch(_, _, misshaped) = e else { return false }
            return !misshaped.isEmpty
        }
    }

    @Test func randomModelsBeyondTheParameterBudgetAreATypedError() throws {
        var c = WanFamily.benchmarkDefault.configuration
        c.numLayers = 2
        #expect { try WanFamily.random(c, seed: 0, steps: 4, parameterBudget: 1000) } throws: { e in
            guard case ModelLoadError.memoryBudgetExceeded = e else { return false }
            return true
        }
    }
}
