import Foundation
import Safetensors
import Tensors

/// Errors raised while building a model from a diffusers configuration and weights.
public enum ModelLoadError: Error, Sendable, CustomStringConvertible {
    /// A file could not be read.
    case unreadableFile(path: String, reason: String)
    /// No weights were found where they were looked for (`--weights` names nothing usable): `reason` says
    /// what was found instead and what to pass.
    case weightsNotFound(path: String, reason: String)
    /// The weights at `path` (a safetensors file, or a sharded checkpoint's index and shards) are invalid;
    /// `error` names the file, tensor or index entry at fault.
    case invalidWeights(path: String, error: SafetensorsError)
    /// `config.json` is not valid JSON of the expected form.
    case malformedConfig(reason: String)
    /// The configuration names a different diffusers class than the model being built.
    case wrongClass(expected: [String], got: String)
    /// A configuration field has a value this implementation does not support.
    case unsupportedConfig(field: String, value: String, reason: String)
    /// Weights did not match the architecture. All problems are listed at once.
    case weightMismatch(missing: [String], unexpected: [String], misshaped: [MisshapedWeight])
    /// No registered ``DiTFamily`` has this name; `known` lists the names that exist.
    case unknownFamily(String, known: [String])
    /// A kernel rejected a shape while building the model.
    case tensor(TensorError)
    /// Building or running the model would need more memory than the budget allows: `what` names the
    /// allocation, `bytes` its size and `budget` the limit in force (which the caller may raise).
    case memoryBudgetExceeded(what: String, bytes: Double, budget: Double)

    /// A weight whose stored shape differs from the one the configuration implies.
    public struct MisshapedWeight: Sendable, Equatable, CustomStringConvertible {
        /// The parameter name.
        public let name: String
        /// The shape the configuration implies.
        public let expected: [Int]
        /// The shape stored in the weights.
        public let found: [Int]
        public var description: String { "\(name): expected \(expected), found \(found)" }
    }

    public var description: String {
        switch self {
        case let .unreadableFile(path, reason):
            return "cannot read \(path): \(reason)"
        case let .weightsNotFound(path, reason):
            return "no weights at \(path): \(reason)"
        case let .invalidWeights(path, error):
            return "cannot load the weights \(path): \(error.description)"
        case let .malformedConfig(reason):
            return "malformed config.json: \(reason)"
        case let .wrongClass(expected, got):
            return "config.json is for class \(got), expected \(expected.joined(separator: " or "))"
        case let .unsupportedConfig(field, value, reason):
            return "unsupported config value \(field) = \(value): \(reason)"
        case let .weightMismatch(missing, unexpected, misshaped):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing \(missing.count): \(missing.sorted().joined(separator: ", "))") }
            if !unexpected.isEmpty { parts.append("unexpected \(unexpected.count): \(unexpected.sorted().joined(separator: ", "))") }
            if !misshaped.isEmpty { parts.append("misshaped \(misshaped.count): \(misshaped.map(\.description).joined(separator: "; "))") }
            return "weights do not match the configuration — " + parts.joined(separator: " | ")
        case let .tensor(e):
            return e.description
        case let .unknownFamily(name, known):
            return "unknown model family \"\(name)\"; known families: \(known.joined(separator: ", "))"
        case let .memoryBudgetExceeded(what, bytes, budget):
            return String(format: "%@ would need %.3g GB, more than the budget of %.3g GB; use a smaller configuration or raise the budget",
                          what, bytes / 1e9, budget / 1e9)
        }
    }
}
