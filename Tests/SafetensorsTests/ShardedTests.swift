import Foundation
import Testing
import Tensors
@testable import Safetensors

@Suite struct ShardedTests {
    /// A fresh temporary folder holding two shards; removed by the caller.
    private func makeCheckpoint(index: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-shards-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try SafetensorsWriter.write(["a": Tensor(shape: [2], scalars: [1, 2])], to: dir.appendingPathComponent("m-1.safetensors"))
        try SafetensorsWriter.write(["b": Tensor(shape: [1, 1], scalars: [3])], to: dir.appendingPathComponent("m-2.safetensors"))
        try Data(index.utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        return dir
    }

    @Test func loadsTensorsFromTheirShards() throws {
        let dir = try makeCheckpoint(index: #"{"metadata":{"total_size":12},"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors"}}"#)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = try ShardedSafetensors(indexURL: dir.appendingPathComponent("model.safetensors.index.json"))
        #expect(ckpt.sortedNames == ["a", "b"])
        #expect(try ckpt.tensor(named: "a").scalars == [1, 2])
        #expect(try ckpt.tensor(named: "b").shape == [1, 1])
        #expect(throws: SafetensorsError.tensorNotFound("c")) { try ckpt.tensor(named: "c") }
    }

    @Test(arguments: [
        #"{"weight_map":{"a":"../m-1.safetensors"}}"#,
        #"{"weight_map":{"a":1}}"#,
        #"{"metadata":{}}"#,
        #"[1]"#,
    ])
    func malformedIndexIsRejected(index: String) throws {
        let dir = try makeCheckpoint(index: index)
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            _ = try ShardedSafetensors(indexURL: dir.appendingPathComponent("model.safetensors.index.json"))
            Issue.record("expected invalidIndex")
        } catch {
            guard case .invalidIndex = error else { Issue.record("unexpected \(error)"); return }
        }
    }

    @Test func tensorMissingFromItsShardOrMissingShardFails() throws {
        let dir = try makeCheckpoint(index: #"{"weight_map":{"a":"m-2.safetensors"}}"#)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors.index.json")
        #expect(throws: SafetensorsError.tensorNotFound("a (expected in shard m-2.safetensors)")) {
            try ShardedSafetensors(indexURL: url)
        }
        try Data(#"{"weight_map":{"a":"m-9.safetensors"}}"#.utf8).write(to: url)
        do {
            _ = try ShardedSafetensors(indexURL: url)
            Issue.record("expected fileUnreadable")
        } catch {
            guard case .fileUnreadable = error else { Issue.record("unexpected \(error)"); return }
        }
    }
}
