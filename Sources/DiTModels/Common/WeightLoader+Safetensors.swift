import Foundation
import Safetensors
import Tensors

/// Where a model's weights are stored: one safetensors file, or a sharded checkpoint (an index JSON
/// next to its shard files), as diffusers saves transformers.
///
/// ``resolve(_:)`` accepts what a user would point `--weights` at:
/// - a safetensors file;
/// - an index file (any name ending in `.json`, e.g. `diffusion_pytorch_model.safetensors.index.json`);
/// - a directory (a diffusers `transformer/` folder) holding `diffusion_pytorch_model.safetensors.index.json`
///   (preferred, as diffusers prefers it), `diffusion_pytorch_model.safetensors`, or exactly one
///   `.safetensors` file.
public enum WeightsLocation: Sendable, Equatable {
    /// A single safetensors file.
    case singleFile(URL)
    /// The index of a sharded checkpoint; the shards are in the same folder.
    case shardedIndex(URL)

    /// The file name of a diffusers model's single-file weights.
    public static let singleFileName = "diffusion_pytorch_model.safetensors"
    /// The file name of a diffusers model's sharded-weights index.
    public static let indexFileName = "diffusion_pytorch_model.safetensors.index.json"

    /// The file or index.
    public var url: URL {
        switch self {
        case .singleFile(let u), .shardedIndex(let u): return u
        }
    }

    /// Finds the weights at `url` (see the type's description).
    /// - Throws: ``ModelLoadError/weightsNotFound(path:reason:)`` when `url` does not exist, or is a
    ///   directory without recognisable weights (the reason lists what it holds and what to pass).
    public static func resolve(_ url: URL) throws(ModelLoadError) -> WeightsLocation {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw .weightsNotFound(path: url.path, reason: "no such file or directory")
        }
        guard isDirectory.boolValue else {
            return url.pathExtension.lowercased() == "json" ? .shardedIndex(url) : .singleFile(url)
        }
        let index = url.appendingPathComponent(indexFileName)
        if fm.fileExists(atPath: index.path) { return .shardedIndex(index) }
        let single = url.appendingPathComponent(singleFileName)
        if fm.fileExists(atPath: single.path) { return .singleFile(single) }

        let entries: [URL]
        do {
            entries = try fm.contentsOfDirectory(at: url, includingPropertiesForKeys: [.isRegularFileKey],
                                                 options: [.skipsHiddenFiles])
        } catch {
            throw .weightsNotFound(path: url.path, reason: "cannot list the directory (\(error.localizedDescription))")
        }
        func isFile(_ u: URL) -> Bool { (try? u.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true }
        let files = entries.filter(isFile).map(\.lastPathComponent).sorted()
        let weights = files.filter { $0.lowercased().hasSuffix(".safetensors") }
        if weights.count == 1 { return .singleFile(url.appendingPathComponent(weights[0])) }

        var reason = "it holds neither \(indexFileName) nor \(singleFileName)"
        if weights.isEmpty {
            reason += " nor any other .safetensors file"
        } else {
            let shown = weights.prefix(5).joined(separator: ", ") + (weights.count > 5 ? ", …" : "")
            reason += ", and \(weights.count) other .safetensors files (\(shown)), so which one to load is ambiguous"
        }
        let indexes = files.filter { $0.lowercased().hasSuffix(".index.json") }
        if let other = indexes.first {
            reason += "; for the sharded checkpoint of the index \(other), pass that file: \(url.appendingPathComponent(other).path)"
        } else if !weights.isEmpty {
            reason += "; pass one of the files, or the index JSON of a sharded checkpoint"
        }
        let transformer = url.appendingPathComponent("transformer")
        if fm.fileExists(atPath: transformer.path, isDirectory: &isDirectory), isDirectory.boolValue {
            reason += "; for a diffusers pipeline folder, pass its transformer folder: \(transformer.path)"
        }
        throw .weightsNotFound(path: url.path, reason: reason)
    }

    /// Opens the file or the index and its shards, and loads every tensor as Float32.
    /// - Throws: ``ModelLoadError/invalidWeights(path:error:)`` naming the file, shard, tensor or index entry
    ///   at fault (a missing or malformed shard, a tensor the index lists but its shard lacks, a tensor
    ///   stored in two shards, a dtype without a Float32 conversion, ...).
    public func loadAll() throws(ModelLoadError) -> [String: Tensor] {
        do {
            switch self {
            case .singleFile(let u): return try SafetensorsFile(contentsOf: u).loadAll()
            case .shardedIndex(let u): return try ShardedSafetensors(indexURL: u).loadAll()
            }
        } catch {
            throw .invalidWeights(path: url.path, error: error)
        }
    }
}

extension WeightLoader {
    /// A loader over every tensor of a model's stored weights (converted to Float32): a safetensors file,
    /// a sharded checkpoint's index JSON, or a directory holding either (see ``WeightsLocation``).
    ///
    /// - Throws: ``ModelLoadError/weightsNotFound(path:reason:)`` when nothing loadable is at `url`;
    ///   ``ModelLoadError/invalidWeights(path:error:)`` when a file is malformed, a sharded checkpoint is
    ///   inconsistent, or a tensor cannot be converted to Float32.
    public convenience init(safetensorsAt url: URL) throws(ModelLoadError) {
        self.init(tensors: try WeightsLocation.resolve(url).loadAll())
    }
}
