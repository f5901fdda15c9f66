import Foundation
import Testing
import Tensors
@testable import Safetensors

@Suite struct ShardedTests {
    /// A fresh temporary folder holding two shards (`a` in m-1, `b` in m-2, plus `extra` tensors added to
    /// m-2); removed by the caller.
    private func makeCheckpoint(index: String, extraInShard2: [String: Tensor] = [:]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-shards-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try SafetensorsWriter.write(["a": Tensor(shape: [2], scalars: [1, 2])], to: dir.appendingPathComponent("m-1.safetensors"))
        var second = ["b": try Tensor(shape: [1, 1], scalars: [3])]
        second.merge(extraInShard2) { $1 }
        try SafetensorsWriter.write(second, to: dir.appendingPathComponent("m-2.safetensors"))
        try Data(index.utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        return dir
    }

    private static let goodIndex = #"{"metadata":{"total_size":12},"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors"}}"#

    @Test func loadsTensorsFromTheirShards() throws {
        let dir = try makeCheckpoint(index: Self.goodIndex)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = try ShardedSafetensors(indexURL: dir.appendingPathComponent("model.safetensors.index.json"))
        #expect(ckpt.sortedNames == ["a", "b"])
        #expect(ckpt.weightMap == ["a": "m-1.safetensors", "b": "m-2.safetensors"])
        #expect(try ckpt.tensor(named: "a").scalars == [1, 2])
        #expect(try ckpt.tensor(named: "b").shape == [1, 1])
        #expect(try ckpt.info(named: "b").shape == [1, 1])
        #expect(throws: SafetensorsError.tensorNotFound("c")) { try ckpt.tensor(named: "c") }
        let all = try ckpt.loadAll()
        #expect(all.keys.sorted() == ["a", "b"])
        #expect(all["a"]?.scalars == [1, 2] && all["b"]?.scalars == [3])
    }

    /// diffusers loads every tensor of every shard the index names, so a tensor the index does not list
    /// is still part of the checkpoint.
    @Test func unlistedTensorsOfAShardAreIncluded() throws {
        let dir = try makeCheckpoint(index: Self.goodIndex, extraInShard2: ["c": try Tensor(shape: [1], scalars: [7])])
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = try ShardedSafetensors(indexURL: dir.appendingPathComponent("model.safetensors.index.json"))
        #expect(ckpt.sortedNames == ["a", "b", "c"])
        #expect(ckpt.contains("c"))
        #expect(try ckpt.loadAll()["c"]?.scalars == [7])
    }

    @Test(arguments: [
        (#"{"weight_map":{"a":"../m-1.safetensors"}}"#, "plain file name"),
        (#"{"weight_map":{"a":1}}"#, "not a string"),
        (#"{"metadata":{}}"#, "'weight_map'"),
        (#"[1]"#, "not a JSON object"),
        (#"{"weight_map":{}}"#, "empty"),
        (#"{"weight_map":{"a":"m-1.safetensors""#, "not valid JSON"),
        (#"{"weight_map":{"a":"m-1.safetensors",}}"#, "not valid JSON"),
        (#"{"weight_map":{"a":"m-1.safetensors","a":"m-2.safetensors"}}"#, "listed twice"),
        (#"{"weight_map":{"a":"m-1.safetensors"},"weight_map":{"b":"m-2.safetensors"}}"#, "more than once"),
    ])
    func malformedIndexIsRejected(index: String, reasonFragment: String) throws {
        let dir = try makeCheckpoint(index: index)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors.index.json")
        #expect {
            try ShardedSafetensors(indexURL: url)
        } throws: { error in
            guard case let SafetensorsError.invalidIndex(path, reason) = error else { return false }
            return path == url.path && reason.contains(reasonFragment)
        }
    }

    @Test func tensorMissingFromItsShardFails() throws {
        let dir = try makeCheckpoint(index: #"{"weight_map":{"a":"m-2.safetensors","b":"m-2.safetensors"}}"#)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors.index.json")
        let expected = SafetensorsError.tensorMissingFromShard(tensor: "a", shard: "m-2.safetensors", index: url.path)
        #expect(throws: expected) { try ShardedSafetensors(indexURL: url) }
        #expect(expected.description.contains("'a'") && expected.description.contains("'m-2.safetensors'"))
    }

    @Test func missingShardIsNamed() throws {
        let dir = try makeCheckpoint(index: #"{"weight_map":{"a":"m-1.safetensors","b":"m-9.safetensors","z":"m-9.safetensors"}}"#)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors.index.json")
        let expected = SafetensorsError.missingShard(index: url.path, shard: "m-9.safetensors", tensor: "b")
        #expect(throws: expected) { try ShardedSafetensors(indexURL: url) }
        #expect(expected.description.hasPrefix("shard 'm-9.safetensors' named by the index"))
    }

    @Test func corruptShardIsNamedWithItsReaderError() throws {
        let dir = try makeCheckpoint(index: Self.goodIndex)
        defer { try? FileManager.default.removeItem(at: dir) }
        let shard = dir.appendingPathComponent("m-2.safetensors")
        try Data([1, 2, 3]).write(to: shard)
        let expected = SafetensorsError.invalidShard(path: shard.path, error: .headerTooSmall(fileSize: 3))
        #expect(throws: expected) { try ShardedSafetensors(indexURL: dir.appendingPathComponent("model.safetensors.index.json")) }
        #expect(expected.description == "shard '\(shard.path)': file is 3 bytes, shorter than the 8-byte header-length prefix; not a safetensors file")
    }

    @Test func tensorStoredInTwoShardsFails() throws {
        let dir = try makeCheckpoint(index: Self.goodIndex, extraInShard2: ["a": try Tensor(shape: [2], scalars: [5, 6])])
        defer { try? FileManager.default.removeItem(at: dir) }
        let expected = SafetensorsError.duplicateTensorAcrossShards(tensor: "a", shards: ["m-1.safetensors", "m-2.safetensors"])
        #expect(throws: expected) { try ShardedSafetensors(indexURL: dir.appendingPathComponent("model.safetensors.index.json")) }
        #expect(expected.description.contains("'m-1.safetensors', 'm-2.safetensors'"))
    }

    @Test func unreadableIndexIsAFileError() throws {
        let dir = try makeCheckpoint(index: Self.goodIndex)
        defer { try? FileManager.default.removeItem(at: dir) }
        for url in [dir.appendingPathComponent("absent.index.json"), dir] {
            #expect {
                try ShardedSafetensors(indexURL: url)
            } throws: { error in
                guard case let SafetensorsError.fileUnreadable(path, _) = error else { return false }
                return path == url.path
            }
        }
    }
}
