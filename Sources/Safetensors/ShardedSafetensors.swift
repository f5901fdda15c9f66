import Foundation
import Tensors

/// A checkpoint split over several safetensors files, described by a `model.safetensors.index.json`:
/// `{"metadata": {...}, "weight_map": {"tensor.name": "model-00001-of-00002.safetensors", ...}}`.
///
/// Every shard is opened (memory-mapped and validated) when the index is loaded, and every tensor
/// the index names must exist in its shard, so later lookups cannot fail on layout.
public struct ShardedSafetensors: Sendable {
    /// The tensor → shard file name map, as in the index.
    public let weightMap: [String: String]
    /// The opened shards, keyed by file name.
    public let shards: [String: SafetensorsFile]

    /// Loads the index at `indexURL` and opens the shards next to it.
    /// - Throws: ``SafetensorsError/invalidIndex(path:reason:)`` for a malformed index or a shard name
    ///   that is not a plain file name; any reader error of a shard; or
    ///   ``SafetensorsError/tensorNotFound(_:)`` when a shard lacks a tensor the index assigns to it.
    public init(indexURL: URL) throws(SafetensorsError) {
        let path = indexURL.path
        let data: Data
        do {
            data = try Data(contentsOf: indexURL)
        } catch {
            throw .fileUnreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .invalidIndex(path: path, reason: "it is not a JSON object")
        }
        guard let rawMap = root["weight_map"] as? [String: Any] else {
            throw .invalidIndex(path: path, reason: "missing or non-object 'weight_map'")
        }
        var map: [String: String] = [:]
        for (tensor, value) in rawMap {
            guard let shard = value as? String else {
                throw .invalidIndex(path: path, reason: "the shard of '\(tensor)' is not a string")
            }
            guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                throw .invalidIndex(path: path, reason: "shard '\(shard)' of '\(tensor)' must be a plain file name in the index's folder")
            }
            map[tensor] = shard
        }
        let folder = indexURL.deletingLastPathComponent()
        var opened: [String: SafetensorsFile] = [:]
        for shard in Set(map.values).sorted() {
            opened[shard] = try SafetensorsFile(contentsOf: folder.appendingPathComponent(shard))
        }
        for (tensor, shard) in map where opened[shard]?.contains(tensor) != true {
            throw .tensorNotFound("\(tensor) (expected in shard \(shard))")
        }
        self.weightMap = map
        self.shards = opened
    }

    /// All tensor names in the index, sorted.
    public var sortedNames: [String] { weightMap.keys.sorted() }

    /// The header record of the named tensor.
    public func info(named name: String) throws(SafetensorsError) -> SafetensorsTensorInfo {
        try shard(for: name).info(named: name)
    }

    /// Loads the named tensor as Float32 from its shard.
    public func tensor(named name: String) throws(SafetensorsError) -> Tensor {
        try shard(for: name).tensor(named: name)
    }

    private func shard(for name: String) throws(SafetensorsError) -> SafetensorsFile {
        guard let shardName = weightMap[name], let file = shards[shardName] else { throw .tensorNotFound(name) }
        return file
    }
}
