import Foundation
import Safetensors
import Testing
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// Loading models from sharded diffusers checkpoints (`diffusion_pytorch_model.safetensors.index.json`
/// plus shards), from directories, and the failure paths of both.
@Suite("Sharded weights")
struct ShardedWeightsTests {
    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sharded-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes `tensors` into `dir` as `shardCount` shards named the way diffusers names them, with the
    /// index `diffusion_pytorch_model.safetensors.index.json`; returns the index's weight_map.
    @discardableResult
    static func writeSharded(_ tensors: [String: Tensor], shardCount: Int, to dir: URL) throws -> [String: String] {
        let names = tensors.keys.sorted()
        let per = (names.count + shardCount - 1) / shardCount
        var weightMap: [String: String] = [:]
        for s in 0..<shardCount {
            let file = String(format: "diffusion_pytorch_model-%05d-of-%05d.safetensors", s + 1, shardCount)
            var writer = SafetensorsWriter()
            for name in names.dropFirst(s * per).prefix(per) {
                try writer.add(tensors[name]!, named: name)
                weightMap[name] = file
            }
            try writer.write(to: dir.appendingPathComponent(file))
        }
        try writeIndex(weightMap, totalSize: tensors.values.reduce(0) { $0 + 4 * $1.count }, to: dir)
        return weightMap
    }

    static func writeIndex(_ weightMap: [String: String], totalSize: Int = 0, to dir: URL) throws {
        let index: [String: Any] = ["metadata": ["total_size": totalSize], "weight_map": weightMap]
        try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys])
            .write(to: dir.appendingPathComponent(WeightsLocation.indexFileName))
    }

    static func write(_ tensors: [String: Tensor], to url: URL) throws {
        var writer = SafetensorsWriter()
        for (name, t) in tensors { try writer.add(t, named: name) }
        try writer.write(to: url)
    }

    static let fluxWeights = Fixtures.folder("flux").appendingPathComponent("model.safetensors")

    static func fluxConfiguration() throws(ModelLoadError) -> FluxConfiguration {
        try FluxConfiguration.load(Fixtures.folder("flux").appendingPathComponent("config.json"))
    }

    // MARK: - FLUX from shards

    /// The flux fixture split into three shards: loading the folder, the index, or through a loader gives
    /// the single-file model's forward bit for bit, and the diffusers reference within rel L2 1e-4.
    @Test func shardedFluxForwardEqualsTheSingleFileForward() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let tensors = try SafetensorsFile(contentsOf: Self.fluxWeights).loadAll()
        let map = try Self.writeSharded(tensors, shardCount: 3, to: dir)
        #expect(Set(map.values).count == 3 && map.count == tensors.count)

        let config = try Self.fluxConfiguration()
        let single = try FluxFamily.load(config, weightsAt: Self.fluxWeights)
        let fromFolder = try FluxFamily.load(config, weightsAt: dir)
        let fromIndex = try FluxFamily.load(config,
                                           weightsAt: dir.appendingPathComponent(WeightsLocation.indexFileName))
        let fromLoader = try FluxFamily.build(config, WeightLoader(safetensorsAt: dir)).model
        #expect(fromFolder.projOut.weight.float32Tensor() == single.projOut.weight.float32Tensor())

        let reference = try Fixtures.tensors("flux", "forward.safetensors")
        let x = try FluxForwardTests.inputs(reference)
        let expected = try single(x)
        #expect(try fromFolder(x) == expected)
        #expect(try fromIndex(x) == expected)
        #expect(try fromLoader(x) == expected)
        let e = try Tensor.relativeL2(fromFolder(x), #require(reference["output"]))
        #expect(e <= 1e-4, "output rel L2 \(e)")
    }

    @Test func resolvesFilesIndexesAndFolders() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let t = ["w": try Tensor(shape: [1], scalars: [1])]
        // A folder with exactly one .safetensors file of any name (plus unrelated files).
        try Self.write(t, to: dir.appendingPathComponent("custom.safetensors"))
        try Data("{}".utf8).write(to: dir.appendingPathComponent("config.json"))
        #expect(try WeightsLocation.resolve(dir) == .singleFile(dir.appendingPathComponent("custom.safetensors")))
        // diffusers' single-file name wins over another .safetensors file.
        let single = dir.appendingPathComponent(WeightsLocation.singleFileName)
        try Self.write(t, to: single)
        #expect(try WeightsLocation.resolve(dir) == .singleFile(single))
        // ... and the index wins over both, as in diffusers.
        try Self.writeIndex(["w": "custom.safetensors"], to: dir)
        let index = dir.appendingPathComponent(WeightsLocation.indexFileName)
        #expect(try WeightsLocation.resolve(dir) == .shardedIndex(index))
        // Explicit paths: a .json is an index, anything else a single file.
        #expect(try WeightsLocation.resolve(index) == .shardedIndex(index))
        #expect(try WeightsLocation.resolve(single) == .singleFile(single))
        #expect(try WeightsLocation.resolve(dir).loadAll()["w"]?.scalars == [1])
    }

    @Test func foldersWithoutUsableWeightsAreRejectedWithAHint() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func reason(_ url: URL) -> String? {
            do { _ = try WeightLoader(safetensorsAt: url); return nil } catch {
                guard case let .weightsNotFound(path, reason) = error, path == url.path else { return "wrong error \(error)" }
                return reason
            }
        }
        #expect(reason(dir.appendingPathComponent("absent.safetensors")) == "no such file or directory")
        #expect(reason(dir)?.hasSuffix("nor any other .safetensors file") == true)
        let t = ["w": try Tensor(shape: [1], scalars: [1])]
        try Self.write(t, to: dir.appendingPathComponent("model-1.safetensors"))
        try Self.write(t, to: dir.appendingPathComponent("model-2.safetensors"))
        let ambiguous = try #require(reason(dir))
        #expect(ambiguous.contains("2 other .safetensors files (model-1.safetensors, model-2.safetensors)"))
        #expect(ambiguous.contains("pass one of the files, or the index JSON"))
        try Data("{}".utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        #expect(try #require(reason(dir)).contains("pass that file: \(dir.appendingPathComponent("model.safetensors.index.json").path)"))
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("transformer"), withIntermediateDirectories: true)
        #expect(try #require(reason(dir)).contains("pass its transformer folder"))
    }

    // MARK: - Failure paths through model loading

    /// The flux fixture in two shards after `edit` changed the folder; the error of loading it.
    static func shardedFluxError(_ edit: (URL, [String: String]) throws -> Void) throws -> ModelLoadError? {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let map = try writeSharded(SafetensorsFile(contentsOf: fluxWeights).loadAll(), shardCount: 2, to: dir)
        try edit(dir, map)
        do { _ = try FluxFamily.load(fluxConfiguration(), weightsAt: dir) } catch { return error }
        return nil
    }

    static let indexPathSuffix = "/" + WeightsLocation.indexFileName

    @Test func missingShardIsNamed() throws {
        let error = try Self.shardedFluxError { dir, _ in
            try FileManager.default.removeItem(at: dir.appendingPathComponent("diffusion_pytorch_model-00002-of-00002.safetensors"))
        }
        guard case let .invalidWeights(path, .missingShard(index, shard, tensor)) = try #require(error) else {
            Issue.record("unexpected \(String(describing: error))"); return
        }
        #expect(path.hasSuffix(Self.indexPathSuffix) && index == path)
        #expect(shard == "diffusion_pytorch_model-00002-of-00002.safetensors")
        #expect(tensor == "transformer_blocks.0.attn.add_k_proj.weight")  // the first name (sorted) of shard 2
        #expect(error!.description.contains("shard 'diffusion_pytorch_model-00002-of-00002.safetensors' named by the index"))
    }

    @Test func malformedIndexIsRejected() throws {
        let error = try Self.shardedFluxError { dir, _ in
            try Data(#"{"metadata": {}, "weight_map": {"proj_out.bias": "#.utf8).write(to: dir.appendingPathComponent(WeightsLocation.indexFileName))
        }
        guard case let .invalidWeights(path, .invalidIndex(index, reason)) = try #require(error) else {
            Issue.record("unexpected \(String(describing: error))"); return
        }
        #expect(path.hasSuffix(Self.indexPathSuffix) && index == path)
        #expect(reason == "it is not valid JSON (at byte 49: unexpected end of the JSON text)")
    }

    @Test func weightMapEntryAbsentFromItsShardIsAnError() throws {
        let error = try Self.shardedFluxError { dir, map in
            var moved = map
            moved["transformer_blocks.0.attn.add_k_proj.weight"] = "diffusion_pytorch_model-00001-of-00002.safetensors"  // stored in shard 2
            try Self.writeIndex(moved, to: dir)
        }
        guard case let .invalidWeights(_, .tensorMissingFromShard(tensor, shard, index)) = try #require(error) else {
            Issue.record("unexpected \(String(describing: error))"); return
        }
        #expect(tensor == "transformer_blocks.0.attn.add_k_proj.weight" && shard == "diffusion_pytorch_model-00001-of-00002.safetensors")
        #expect(index.hasSuffix(Self.indexPathSuffix))
    }

    @Test func tensorStoredInTwoShardsIsAnError() throws {
        let error = try Self.shardedFluxError { dir, _ in
            let first = dir.appendingPathComponent("diffusion_pytorch_model-00001-of-00002.safetensors")
            var tensors = try SafetensorsFile(contentsOf: first).loadAll()
            tensors["transformer_blocks.0.attn.add_k_proj.weight"] = try Tensor(zeros: [2])  // also in shard 2
            try Self.write(tensors, to: first)
        }
        guard case let .invalidWeights(_, .duplicateTensorAcrossShards(tensor, shards)) = try #require(error) else {
            Issue.record("unexpected \(String(describing: error))"); return
        }
        #expect(tensor == "transformer_blocks.0.attn.add_k_proj.weight")
        #expect(shards == ["diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"])
    }

    /// A shard holding a tensor the model does not have is reported like any unexpected weight.
    @Test func unlistedExtraTensorOfAShardIsUnexpected() throws {
        let error = try Self.shardedFluxError { dir, _ in
            let second = dir.appendingPathComponent("diffusion_pytorch_model-00002-of-00002.safetensors")
            var tensors = try SafetensorsFile(contentsOf: second).loadAll()
            tensors["extra.weight"] = try Tensor(zeros: [2])
            try Self.write(tensors, to: second)
        }
        guard case let .weightMismatch(missing, unexpected, misshaped) = try #require(error) else {
            Issue.record("unexpected \(String(describing: error))"); return
        }
        #expect(missing.isEmpty && misshaped.isEmpty && unexpected == ["extra.weight"])
    }

    @Test func corruptSingleFileIsInvalidWeights() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent(WeightsLocation.singleFileName)
        try Data([0, 1]).write(to: file)
        #expect {
            try FluxFamily.load(Self.fluxConfiguration(), weightsAt: dir)
        } throws: { e in
            guard case let ModelLoadError.invalidWeights(path, .headerTooSmall(2)) = e else { return false }
            return path == file.path
        }
    }

    // MARK: - Wan: norm_added_q is ignored on every path

    static let normAddedQ = ["blocks.0.attn2.norm_added_q.weight", "blocks.0.attn1.norm_added_q.bias"]

    static func wanConfiguration() throws -> WanConfiguration {
        try WanConfiguration.load(Fixtures.folder("wan21").appendingPathComponent("config.json"))
    }

    static func wanInput() throws -> WanInput {
        let t = try Fixtures.tensors("wan21", "forward.safetensors")
        return WanInput(hiddenStates: try #require(t["input.hidden_states"]), timestep: try #require(t["input.timestep"]),
                        encoderHiddenStates: try #require(t["input.encoder_hidden_states"]))
    }

    @Test func wanIgnoresNormAddedQOnEveryLoadPath() throws {
        let config = try Self.wanConfiguration()
        var weights = try Fixtures.tensors("wan21", "model.safetensors")
        let expected = try WanFamily.load(config, tensors: weights)(Self.wanInput())
        for name in Self.normAddedQ { weights[name] = try Tensor(zeros: [32]) }

        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Self.writeSharded(weights, shardCount: 2, to: dir)
        let singleDir = dir.appendingPathComponent("single")
        try FileManager.default.createDirectory(at: singleDir, withIntermediateDirectories: true)
        try Self.write(weights, to: singleDir.appendingPathComponent(WeightsLocation.singleFileName))
        let (cls, body) = try ModelConfigFile.read(Fixtures.folder("wan21").appendingPathComponent("config.json"))

        let models: [(String, WanTransformer)] = [
            ("dictionary", try WanFamily.load(config, tensors: weights)),
            ("loader", try WanFamily.build(config, WeightLoader(tensors: weights)).model),
            ("sharded folder", try WanFamily.load(config, weightsAt: dir)),
            ("single-file folder", try WanFamily.load(config, weightsAt: singleDir)),
            ("family", try WanFamily.load(WanConfiguration.parse(body, className: cls), tensors: weights)),
        ]
        for (label, model) in models {
            #expect(try model(Self.wanInput()) == expected, "\(label)")
        }
    }

    /// Only `norm_added_q` is excused: another unknown tensor is still unexpected, and the sharded path
    /// says so too.
    @Test func otherUnknownWanTensorsAreStillUnexpected() throws {
        var weights = try Fixtures.tensors("wan21", "model.safetensors")
        weights["blocks.0.attn2.norm_added_q.weight"] = try Tensor(zeros: [32])
        weights["blocks.0.attn2.norm_added_x.weight"] = try Tensor(zeros: [32])
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Self.writeSharded(weights, shardCount: 2, to: dir)
        #expect {
            try WanFamily.load(Self.wanConfiguration(), weightsAt: dir)
        } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing.isEmpty && misshaped.isEmpty && unexpected == ["blocks.0.attn2.norm_added_x.weight"]
        }
    }

    /// `teacache verify` on a wan21 folder whose model.safetensors carries `norm_added_q` tensors passes.
    @Test func verifierIgnoresNormAddedQ() throws {
        let dir = try VerifyTests.corruptedCopy("wan21", file: "model.safetensors") { t in
            for name in Self.normAddedQ { t[name] = try Tensor(zeros: [32]) }
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try FixtureVerifier.verify(folder: dir)
        #expect(report.passed, "\(report.lines.joined(separator: "\n"))")
    }
}
