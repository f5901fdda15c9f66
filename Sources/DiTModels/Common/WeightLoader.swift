import Foundation
import Tensors

/// Supplies parameters to model constructors by diffusers parameter name, and checks them.
///
/// Layers ask for each parameter with ``take(_:shape:)``. A loader built from stored weights records
/// every missing or mis-shaped tensor (returning a zero placeholder so construction can continue), and
/// ``finish()`` throws one ``ModelLoadError/weightMismatch(missing:unexpected:misshaped:)`` listing all
/// problems together with the tensors that were never asked for. A loader built with
/// ``init(randomSeed:adjust:)`` generates parameters instead (see there).
public final class WeightLoader {
    private enum Source {
        case stored([String: Tensor])
        case random(SeededGenerator, adjust: ((String, inout Tensor) -> Void)?)
    }

    private var source: Source
    private var used: Set<String> = []
    private var missing: [String] = []
    private var misshaped: [ModelLoadError.MisshapedWeight] = []
    private var ignoredPatterns: [String] = []
    /// The number of scalars handed out by ``take(_:shape:)`` so far (the model's parameter count once
    /// construction is done).
    public private(set) var parameterCount = 0

    /// Every parameter handed out so far, by name (for a random loader: the generated weights, so a
    /// randomly initialised model can be saved or reloaded through ``init(tensors:)``).
    public private(set) var supplied: [String: Tensor] = [:]

    /// A loader over stored tensors (for example, every tensor of a safetensors file).
    public init(tensors: [String: Tensor]) { source = .stored(tensors) }

    /// A loader that draws parameters from a seeded generator, following the fixtures' scheme
    /// (FORMAT.md §6): `*.bias` (1-D) ~ N(0, 0.02²); other 1-D `*.weight` = 1 + 0.1·N(0, 1);
    /// `*.weight` with 2+ dims ~ N(0, 1/fan_in) with fan_in the product of all but the first dim;
    /// anything else ~ N(0, 1/last_dim). `adjust` may rewrite a parameter after it is drawn
    /// (models use it for the timestep-embedding taper).
    public init(randomSeed seed: UInt64, adjust: ((String, inout Tensor) -> Void)? = nil) {
        source = .random(SeededGenerator(seed: seed), adjust: adjust)
    }

    /// The parameter `name` with the given shape.
    public func take(_ name: String, shape: [Int]) -> Tensor {
        used.insert(name)
        parameterCount += shape.reduce(1, *)
        switch source {
        case .stored(let dict):
            guard let t = dict[name] else {
                missing.append(name)
                return (try? Tensor(zeros: shape)) ?? Tensor(scalar: 0)
            }
            guard t.shape == shape else {
                misshaped.append(.init(name: name, expected: shape, found: t.shape))
                return (try? Tensor(zeros: shape)) ?? Tensor(scalar: 0)
            }
            supplied[name] = t
            return t
        case .random(var rng, let adjust):
            var t = Self.draw(name: name, shape: shape, rng: &rng)
            adjust?(name, &t)
            source = .random(rng, adjust: adjust)
            supplied[name] = t
            return t
        }
    }

    /// Stored tensors whose name contains any of `patterns` are not reported as unexpected by
    /// ``finish()`` (diffusers' `_keys_to_ignore_on_load_unexpected`). Tensors that are asked for are
    /// handed out as usual.
    public func ignoreUnexpected(containing patterns: [String]) {
        ignoredPatterns += patterns
    }

    /// Throws when any requested tensor was missing or mis-shaped, or any stored tensor was unused (other
    /// than those ``ignoreUnexpected(containing:)`` excuses).
    public func finish() throws(ModelLoadError) {
        var unexpected: [String] = []
        if case .stored(let dict) = source {
            unexpected = dict.keys.filter { name in
                !used.contains(name) && !ignoredPatterns.contains { name.contains($0) }
            }.sorted()
        }
        if !missing.isEmpty || !unexpected.isEmpty || !misshaped.isEmpty {
            throw .weightMismatch(missing: missing, unexpected: unexpected, misshaped: misshaped)
        }
    }

    private static func draw(name: String, shape: [Int], rng: inout SeededGenerator) -> Tensor {
        let std: Float
        var mean: Float = 0
        if shape.count == 1 && name.hasSuffix(".bias") {
            std = 0.02
        } else if shape.count == 1 && name.hasSuffix(".weight") {
            mean = 1; std = 0.1
        } else if shape.count >= 2 && name.hasSuffix(".weight") {
            std = 1 / Float(max(shape.dropFirst().reduce(1, *), 1)).squareRoot()
        } else {
            std = 1 / Float(max(shape.last ?? 1, 1)).squareRoot()
        }
        return (try? Tensor.randomNormal(shape: shape, mean: mean, standardDeviation: std, using: &rng))
            ?? Tensor(scalar: 0)
    }
}
