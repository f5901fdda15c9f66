import Foundation
import Tensors

/// A checkpoint split over several safetensors files, described by an index such as
/// `diffusion_pytorch_model.safetensors.index.json`:
/// `{"metadata": {...}, "weight_map": {"tensor.name": "model-00001-of-00002.safetensors", ...}}`.
///
/// Every shard the index names is opened (memory-mapped and validated) when the index is loaded, and the
/// index is checked against the shards, so later lookups cannot fail on layout:
/// - every shard named in `weight_map` must exist next to the index (``SafetensorsError/missingShard(index:shard:tensor:)``);
/// - every tensor of `weight_map` must be stored in the shard it is assigned to
///   (``SafetensorsError/tensorMissingFromShard(tensor:shard:index:)``);
/// - no tensor name may be stored in two shards, nor listed twice in `weight_map`
///   (``SafetensorsError/duplicateTensorAcrossShards(tensor:shards:)``, ``SafetensorsError/invalidIndex(path:reason:)``).
///
/// A tensor stored in a shard but not listed in `weight_map` is still part of the checkpoint: like
/// diffusers, which loads every tensor of every shard the index names, ``sortedNames`` and
/// ``loadAll()`` include it.
public struct ShardedSafetensors: Sendable {
    /// The tensor → shard file name map, as in the index.
    public let weightMap: [String: String]
    /// The opened shards, keyed by file name.
    public let shards: [String: SafetensorsFile]
    /// The index's path (for messages).
    public let indexPath: String
    /// Every stored tensor → the shard file that holds it (the index's entries and any unlisted tensor).
    private let location: [String: String]

    /// Loads the index at `indexURL` and opens the shards next to it.
    /// - Throws: ``SafetensorsError/fileUnreadable(path:reason:)`` when the index cannot be read;
    ///   ``SafetensorsError/invalidIndex(path:reason:)`` for an index that is not valid JSON, lacks a
    ///   `weight_map` object, maps a tensor to a non-string or to a name that is not a plain file name in the
    ///   index's folder, lists a tensor twice, or lists none;
    ///   ``SafetensorsError/missingShard(index:shard:tensor:)`` when a named shard does not exist;
    ///   ``SafetensorsError/invalidShard(path:error:)`` wrapping the reader error of a shard that exists but
    ///   cannot be opened; ``SafetensorsError/tensorMissingFromShard(tensor:shard:index:)`` and
    ///   ``SafetensorsError/duplicateTensorAcrossShards(tensor:shards:)`` (see the type's description).
    public init(indexURL: URL) throws(SafetensorsError) {
        let path = indexURL.path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw .fileUnreadable(path: path, reason: "it is a directory, not an index file")
        }
        let data: Data
        do {
            data = try Data(contentsOf: indexURL)
        } catch {
            throw .fileUnreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        let map = try Self.parseWeightMap(data, path: path)
        let folder = indexURL.deletingLastPathComponent()
        var opened: [String: SafetensorsFile] = [:]
        for shard in Set(map.values).sorted() {
            let url = folder.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: url.path) else {
                let example = map.filter { $0.value == shard }.keys.min() ?? ""
                throw .missingShard(index: path, shard: shard, tensor: example)
            }
            do { opened[shard] = try SafetensorsFile(contentsOf: url) } catch {
                throw .invalidShard(path: url.path, error: error)
            }
        }
        for (tensor, shard) in map.sorted(by: { $0.key < $1.key }) where opened[shard]?.contains(tensor) != true {
            throw .tensorMissingFromShard(tensor: tensor, shard: shard, index: path)
        }
        var location: [String: String] = [:]
        for shard in opened.keys.sorted() {
            for name in opened[shard]!.sortedNames {
                if let other = location[name] {
                    throw .duplicateTensorAcrossShards(tensor: name, shards: [other, shard])
                }
                location[name] = shard
            }
        }
        self.weightMap = map
        self.shards = opened
        self.indexPath = path
        self.location = location
    }

    /// The `weight_map` of index bytes, checked strictly (a tensor listed twice is an error, which
    /// Foundation's JSON parser would hide).
    static func parseWeightMap(_ data: Data, path: String) throws(SafetensorsError) -> [String: String] {
        guard String(data: data, encoding: .utf8) != nil else {
            throw .invalidIndex(path: path, reason: "it is not valid UTF-8 text")
        }
        let root: HeaderJSON
        do { root = try HeaderJSONParser.parse([UInt8](data)) } catch {
            if case let .invalidHeaderJSON(offset, reason) = error {
                throw .invalidIndex(path: path, reason: "it is not valid JSON (at byte \(offset): \(reason))")
            }
            throw .invalidIndex(path: path, reason: "it is not valid JSON (\(error))")
        }
        guard case let .object(members) = root else {
            throw .invalidIndex(path: path, reason: "it is not a JSON object but \(root.typeName)")
        }
        let maps = members.filter { $0.key == "weight_map" }
        guard maps.count <= 1 else { throw .invalidIndex(path: path, reason: "'weight_map' appears more than once") }
        guard let first = maps.first, case let .object(entries) = first.value else {
            throw .invalidIndex(path: path, reason: "missing or non-object 'weight_map'")
        }
        guard !entries.isEmpty else {
            throw .invalidIndex(path: path, reason: "'weight_map' is empty; it must map every tensor name to its shard file")
        }
        var map: [String: String] = [:]
        for (tensor, value) in entries {
            guard case let .string(shard) = value else {
                throw .invalidIndex(path: path, reason: "the shard of '\(tensor)' is \(value.typeName), not a string")
            }
            guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                throw .invalidIndex(path: path, reason: "shard '\(shard)' of '\(tensor)' must be a plain file name in the index's folder")
            }
            if let previous = map[tensor] {
                throw .invalidIndex(path: path, reason: "tensor '\(tensor)' is listed twice in 'weight_map' "
                                    + "(shards '\(previous)' and '\(shard)'); each tensor must be listed once")
            }
            map[tensor] = shard
        }
        return map
    }

    /// Every tensor name of the checkpoint, sorted.
    public var sortedNames: [String] { location.keys.sorted() }

    /// Whether the checkpoint stores a tensor of that name.
    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The header record of the named tensor.
    public func info(named name: String) throws(SafetensorsError) -> SafetensorsTensorInfo {
        try shard(for: name).info(named: name)
    }

    /// Loads the named tensor as Float32 from its shard.
    public func tensor(named name: String) throws(SafetensorsError) -> Tensor {
        try shard(for: name).tensor(named: name)
    }

    /// Loads every tensor of every shard as Float32, keyed by name.
    /// - Throws: the first error of ``tensor(named:)`` (in name order).
    public func loadAll() throws(SafetensorsError) -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for name in sortedNames { result[name] = try tensor(named: name) }
        return result
    }

    /// The shard file holding `name`.
    func shardFile(for name: String) throws(SafetensorsError) -> SafetensorsFile { try shard(for: name) }

    private func shard(for name: String) throws(SafetensorsError) -> SafetensorsFile {
        guard let shardName = location[name], let file = shards[shardName] else { throw .tensorNotFound(name) }
        return file
    }
}
