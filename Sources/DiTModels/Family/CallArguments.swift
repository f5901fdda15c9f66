import Foundation
import Tensors

/// Named arguments of one model call taken from a fixture: tensors (the `input.`, `cond.` or `uncond.`
/// prefix removed) and the non-tensor arguments of the JSON file.
public struct FixtureArguments: Sendable {
    /// Tensor arguments by diffusers argument name (tuple elements as `<arg>.0`, `<arg>.1`).
    public var tensors: [String: Tensor]
    /// Non-tensor arguments by name.
    public var nonTensor: [String: FixtureJSONValue]
    /// Where the tensors come from (for error messages).
    public var source: String

    /// Arguments from their parts.
    public init(tensors: [String: Tensor], nonTensor: [String: FixtureJSONValue], source: String) {
        self.tensors = tensors
        self.nonTensor = nonTensor
        self.source = source
    }

    /// The tensor argument `name`, or ``VerifyError/missingTensor(name:file:)``.
    public func tensor(_ name: String) throws(VerifyError) -> Tensor {
        guard let t = tensors[name] else { throw .missingTensor(name: name, file: source) }
        return t
    }

    /// The tensor argument `name` if present.
    public func optionalTensor(_ name: String) -> Tensor? { tensors[name] }

    /// The `timestep` argument of a sampling call: `[B]` filled with `value`, B the batch of `latent`.
    public func timestep(_ value: Float, batchOf latent: Tensor) throws -> Tensor {
        guard latent.rank >= 1, latent.shape[0] >= 1 else {
            throw VerifyError.unsupported("the latent must have a batch axis, got \(latent.shape)")
        }
        return try Tensor(shape: [latent.shape[0]], repeating: value)
    }

    /// The non-tensor argument `name` as an integer, or ``VerifyError/malformedFixture(file:reason:)``.
    public func integer(_ name: String) throws(VerifyError) -> Int {
        guard let v = nonTensor[name]?.integer else {
            throw .malformedFixture(file: source, reason: "non-tensor argument \"\(name)\" must be an integer")
        }
        return v
    }
}
