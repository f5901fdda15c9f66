/// A small, fast, seedable generator (SplitMix64) for reproducible weights and test data.
///
/// Not cryptographic. The same seed always yields the same stream on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator from a seed.
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal sample (Box–Muller in Double).
    public mutating func nextNormal() -> Double {
        var u1 = 0.0
        repeat { u1 = Double.random(in: 0..<1, using: &self) } while u1 <= .leastNormalMagnitude
        let u2 = Double.random(in: 0..<1, using: &self)
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }
}

extension Tensor {
    /// A tensor of independent normal samples with the given mean and standard deviation.
    public static func randomNormal(
        shape: [Int], mean: Float = 0, standardDeviation: Float = 1, using rng: inout SeededGenerator
    ) throws(TensorError) -> Tensor {
        let n = try Tensor.elementCount(of: shape)
        var values = [Float](repeating: 0, count: n)
        for i in 0..<n { values[i] = mean + standardDeviation * Float(rng.nextNormal()) }
        return try Tensor(shape: shape, scalars: values)
    }

    /// A large tensor of approximately normal samples (mean, standard deviation as given), drawn in
    /// parallel: each value is the Irwin–Hall sum of four 16-bit uniforms of one 64-bit draw, centred and
    /// scaled to unit variance (the tails end at ±3.46σ). Chunks of 65,536 values have their own stream,
    /// seeded from `seed` and the chunk's index, so the result does not depend on the thread count.
    /// For benchmark-size random weights, where Box–Muller would take minutes.
    public static func randomApproximatelyNormal(
        shape: [Int], mean: Float = 0, standardDeviation: Float = 1, seed: UInt64
    ) throws(TensorError) -> Tensor {
        let n = try Tensor.elementCount(of: shape)
        let chunk = 1 << 16, chunks = (n + chunk - 1) / chunk
        // Sum of four U(0, 65535) has mean 131070 and variance 4·(65536² − 1)/12.
        let scale = standardDeviation / Float((4.0 * (65536.0 * 65536.0 - 1) / 12).squareRoot())
        return Tensor(uninitializedShape: shape) { out in
            Parallelism.forEachChunk(chunks, costPerItem: chunk) { range in
                for c in range {
                    var g = SeededGenerator(seed: seed ^ (UInt64(c) &* 0xD1B5_4A32_D192_ED03))
                    for i in (c * chunk)..<min(n, (c + 1) * chunk) {
                        let r = g.next()
                        let sum = Int(r & 0xFFFF) + Int((r >> 16) & 0xFFFF) + Int((r >> 32) & 0xFFFF) + Int(r >> 48)
                        out[i] = mean + Float(sum - 131_070) * scale
                    }
                }
            }
        }
    }

    /// A tensor of independent uniform samples in `range`.
    public static func randomUniform(
        shape: [Int], in range: ClosedRange<Float> = -1...1, using rng: inout SeededGenerator
    ) throws(TensorError) -> Tensor {
        let n = try Tensor.elementCount(of: shape)
        var values = [Float](repeating: 0, count: n)
        for i in 0..<n { values[i] = Float.random(in: range, using: &rng) }
        return try Tensor(shape: shape, scalars: values)
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
