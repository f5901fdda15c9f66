import DiTModels
import Foundation
import Safetensors
import Tensors

/// One fixture family folder (FORMAT.md §1) read into memory.
public struct FixtureFolder: Sendable {
    /// The folder.
    public let url: URL
    /// The diffusers class named by `config.json`.
    public let className: String
    /// The configuration object of `config.json` (unwrapped).
    public let config: Data
    /// `forward.json`.
    public let forward: ForwardDescription
    /// Every tensor of `forward.safetensors`.
    public let forwardTensors: [String: Tensor]
    /// `sampling.json`.
    public let sampling: SamplingDescription
    /// Every tensor of `sampling.safetensors`.
    public let samplingTensors: [String: Tensor]

    /// Reads every file of the folder.
    public init(_ url: URL) throws(VerifyError) {
        self.url = url
        do { (className, config) = try ModelConfigFile.read(url.appendingPathComponent("config.json")) } catch {
            throw .malformedFixture(file: "config.json", reason: error.description)
        }
        forward = try FixtureJSON.decode(ForwardDescription.self, from: url.appendingPathComponent("forward.json"))
        sampling = try FixtureJSON.decode(SamplingDescription.self, from: url.appendingPathComponent("sampling.json"))
        forwardTensors = try Self.tensors(url.appendingPathComponent("forward.safetensors"))
        samplingTensors = try Self.tensors(url.appendingPathComponent("sampling.safetensors"))
    }

    /// The URL of `model.safetensors`.
    public var weightsURL: URL { url.appendingPathComponent("model.safetensors") }

    /// The family named by forward.json or sampling.json, if any (they must agree).
    public func statedFamily() throws(VerifyError) -> String? {
        if let f = forward.family, let s = sampling.family, f != s {
            throw .malformedFixture(file: "forward.json", reason: "family \"\(f)\" differs from sampling.json's \"\(s)\"")
        }
        return forward.family ?? sampling.family
    }

    /// The forward call's arguments (`input.*` of forward.safetensors).
    public func forwardArguments() -> FixtureArguments {
        FixtureArguments(tensors: Self.stripping("input.", from: forwardTensors), nonTensor: forward.nonTensorArgs,
                         source: "forward.safetensors")
    }

    /// The conditioning of a sampling branch (`cond.*` or `uncond.*` of sampling.safetensors).
    public func samplingArguments(branch: String) -> FixtureArguments {
        FixtureArguments(tensors: Self.stripping("\(branch).", from: samplingTensors), nonTensor: sampling.nonTensorArgs,
                         source: "sampling.safetensors (\(branch).*)")
    }

    /// A tensor of sampling.safetensors.
    public func samplingTensor(_ name: String) throws(VerifyError) -> Tensor {
        guard let t = samplingTensors[name] else { throw .missingTensor(name: name, file: "sampling.safetensors") }
        return t
    }

    static func tensors(_ url: URL) throws(VerifyError) -> [String: Tensor] {
        do { return try SafetensorsFile(contentsOf: url).loadAll() } catch {
            throw .unreadableFile(path: url.path, reason: "\(error)")
        }
    }

    static func stripping(_ prefix: String, from tensors: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, v) in tensors where k.hasPrefix(prefix) { out[String(k.dropFirst(prefix.count))] = v }
        return out
    }
}

enum FixtureJSON {
    static func decode<T: Decodable>(_ type: T.Type, from url: URL) throws(VerifyError) -> T {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw .unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw .malformedFixture(file: url.lastPathComponent, reason: "\(error)")
        }
    }
}
