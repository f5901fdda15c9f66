import Testing
import Tensors
@testable import DiTModels

/// The fused projections against the plain layers they replace.
@Suite struct FusedLinearTests {
    static func random(_ shape: [Int], _ seed: UInt64) throws -> Tensor {
        var g = SeededGenerator(seed: seed)
        return try Tensor.randomUniform(shape: shape, using: &g)
    }

    /// Same products summed in a different grouping: agreement to float32 rounding (1e-6 relative).
    @Test func linearOfConcatenationMatchesConcatenateThenLinear() throws {
        let a = try Self.random([2, 5, 3], 1), b = try Self.random([2, 5, 7], 2)
        let w = try Self.random([4, 10], 3), bias = try Self.random([4], 4)
        let expected = try linear(Tensor.concatenate([a, b], axis: 2), weight: w, bias: bias)
        let got = try linear(concatenating: [a, b], weight: w, bias: bias)
        #expect(try Tensor.relativeL2(got, expected) <= 1e-6)
        #expect(throws: TensorError.self) { try linear(concatenating: [a, b], weight: Self.random([4, 9], 5), bias: nil) }
    }

    /// Each part of a fused projection equals its own layer (identical per-column dot products).
    @Test func fusedLinearMatchesSeparateLayers() throws {
        let loader = WeightLoader(randomSeed: 9)
        let fused = FusedLinear([loader.root["p"], loader.root["q"]], in: 6, out: [3, 5])
        let x = try Self.random([4, 6], 6)
        let parts = try fused(x)
        let wp = try fused.stacked.weight.float32Tensor().slice(axis: 0, 0..<3), wq = try fused.stacked.weight.float32Tensor().slice(axis: 0, 3..<8)
        let bp = try fused.stacked.bias!.slice(axis: 0, 0..<3), bq = try fused.stacked.bias!.slice(axis: 0, 3..<8)
        #expect(try Tensor.relativeL2(parts[0], linear(x, weight: wp, bias: bp)) <= 1e-6)
        #expect(try Tensor.relativeL2(parts[1], linear(x, weight: wq, bias: bq)) <= 1e-6)
    }
}
