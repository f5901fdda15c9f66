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
        // An entry whose type cannot be read is not a weight file we could open either: skipped, and a
        // folder left without weights is reported below.
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

/// Stored tensors a ``WeightLoader`` reads by name: in memory, one safetensors file, or a sharded
/// checkpoint. Shapes come from the header; a tensor's data is read only when it is loaded.
enum StoredWeights {
    case tensors([String: Tensor])
    case file(SafetensorsFile, path: String)
    case sharded(ShardedSafetensors, path: String)

    /// Every stored name.
    var names: [String] {
        switch self {
        case .tensors(let t): return Array(t.keys)
        case .file(let f, _): return f.names
        case .sharded(let s, _): return s.sortedNames
        }
    }

    /// The stored shape of `name` (from the header), or nil when absent.
    func shape(of name: String) -> [Int]? {
        switch self {
        case .tensors(let t): return t[name]?.shape
        // Absent from the header: nil, and the loader lists the tensor as missing.
        case .file(let f, _): return try? f.info(named: name).shape
        case .sharded(let s, _): return try? s.info(named: name).shape
        }
    }

    /// The tensor `name` as Float32.
    func load(_ name: String) throws(ModelLoadError) -> Tensor {
        do throws(SafetensorsError) {
            switch self {
            case .tensors(let t):
                guard let v = t[name] else { throw SafetensorsError.tensorNotFound(name) }
                return v
            case .file(let f, _): return try Self.float32Tensor(f, name)
            case .sharded(let s, _): return try Self.float32Tensor(s, name)
            }
        } catch {
            throw .invalidWeights(path: path, error: error)
        }
    }

    /// The named tensor as float32; an int8 matrix (`teacache quantize`'s form) is dequantised, so a
    /// parameter a model keeps in float32 can be read from a file that stored it quantised (HiDream-I1's
    /// router gate, which files quantised before it was kept in float32 hold as int8).
    private static func float32Tensor(_ source: some SafetensorsTensorSource, _ name: String) throws(SafetensorsError) -> Tensor {
        if source.isInt8Matrix(name) { return try source.weightMatrix(named: name, precision: .float32).float32Tensor() }
        return try source.tensor(named: name)
    }

    /// The file or checkpoint as a source of weight matrices (nil for in-memory tensors).
    var safetensors: (any SafetensorsTensorSource)? {
        switch self {
        case .tensors: return nil
        case .file(let f, _): return f
        case .sharded(let s, _): return s
        }
    }

    /// Whether `name` is the scales tensor of a stored int8 matrix (not a parameter of its own).
    func isInt8Scales(_ name: String) -> Bool { safetensors?.isInt8Scales(name) ?? false }

    var path: String {
        switch self {
        case .tensors: return "(in-memory tensors)"
        case .file(_, let p), .sharded(_, let p): return p
        }
    }
}

extension WeightsLocation {
    /// Opens the file or the index and its shards (headers validated, data memory-mapped, nothing loaded).
    /// - Throws: ``ModelLoadError/invalidWeights(path:error:)`` naming the file, shard or index entry at fault.
    func open() throws(ModelLoadError) -> StoredWeights {
        do {
            switch self {
            case .singleFile(let u): return .file(try SafetensorsFile(contentsOf: u), path: u.path)
            case .shardedIndex(let u): return .sharded(try ShardedSafetensors(indexURL: u), path: u.path)
            }
        } catch {
            throw .invalidWeights(path: url.path, error: error)
        }
    }
}

extension WeightLoader {
    /// A loader over a model's stored weights: a safetensors file, a sharded checkpoint's index JSON, or a
    /// directory holding either (see ``WeightsLocation``). Only headers are read here; each tensor's
    /// data is read when a layer asks for it with the right shape.
    ///
    /// - Throws: ``ModelLoadError/weightsNotFound(path:reason:)`` when nothing loadable is at `url`;
    ///   ``ModelLoadError/invalidWeights(path:error:)`` when a file is malformed or a sharded checkpoint
    ///   is inconsistent.
    convenience init(safetensorsAt url: URL, rules: WeightRules = .none, precision: WeightPrecision = .float32) throws(ModelLoadError) {
        self.init(stored: try WeightsLocation.resolve(url).open(), rules: rules, precision: precision)
    }
}
