import Foundation
import Tensors

/// Sinusoidal timestep features, as diffusers' `get_timestep_embedding` computes them (Float32).
///
/// With `half = dim/2`: `freq_i = exp(−ln(maxPeriod)·i / (half − shift))`, `arg = t·freq_i·scale`,
/// features `[sin(arg), cos(arg)]`, or `[cos, sin]` when `flipSinToCos`; a zero column is appended for
/// odd `dim`.
///
/// - Returns: `[timesteps.count, dim]`.
public func sinusoidalTimestepEmbedding(
    _ timesteps: [Float], dim: Int, flipSinToCos: Bool, downscaleFreqShift: Float, scale: Float = 1,
    maxPeriod: Float = 10000
) throws(TensorError) -> Tensor {
    guard dim > 0 else { throw .invalidArgument(operation: "timestep embedding", reason: "dimension must be positive") }
    let half = dim / 2
    let lnMax = Float(Foundation.log(Double(maxPeriod)))
    let freqs: [Float] = (0..<half).map { i in
        let e = (-lnMax * Float(i)) / (Float(half) - downscaleFreqShift)
        return Float(Foundation.exp(Double(e)))
    }
    var out = [Float](repeating: 0, count: timesteps.count * dim)
    for (r, t) in timesteps.enumerated() {
        for i in 0..<half {
            let arg = scale * (t * freqs[i])
            let s = Float(Foundation.sin(Double(arg))), c = Float(Foundation.cos(Double(arg)))
            out[r * dim + i] = flipSinToCos ? c : s
            out[r * dim + half + i] = flipSinToCos ? s : c
        }
    }
    return try Tensor(shape: [timesteps.count, dim], scalars: out)
}

/// The frequency of each column of ``sinusoidalTimestepEmbedding(_:dim:flipSinToCos:downscaleFreqShift:scale:maxPeriod:)``
/// (both the sin and the cos column of a frequency report it; a padding column reports 0).
public func sinusoidalColumnFrequencies(dim: Int, downscaleFreqShift: Float, maxPeriod: Float = 10000) -> [Double] {
    let half = dim / 2
    let lnMax = Foundation.log(Double(maxPeriod))
    let f = (0..<half).map { i in Foundation.exp(-lnMax * Double(i) / (Double(half) - Double(downscaleFreqShift))) }
    return f + f + (dim % 2 == 1 ? [0] : [])
}

/// The demo/benchmark taper for randomly initialised timestep MLPs (fixtures FORMAT.md §6): scales the
/// column of frequency `f` of `linear_1.weight` by `max(exp(−0.5·(u·f/0.1)²), 0.02)`, where `u` is how far
/// the sinusoid argument moves per sampling step. Trained models embed time smoothly; random ones do not.
/// `floor` replaces the 0.02 where a family's fixtures taper harder (HiDream-I1: 0.002).
public func taperTimestepColumns(_ weight: inout Tensor, frequencies: [Double], stepSize u: Double, floor: Double = 0.02) {
    guard weight.rank == 2, weight.shape[1] == frequencies.count else { return }
    let cols = weight.shape[1]
    let factors = frequencies.map { f in Float(max(Foundation.exp(-0.5 * pow(u * f / 0.1, 2)), floor)) }
    weight.withUnsafeMutableBufferPointer { w in
        for r in 0..<(w.count / cols) { for c in 0..<cols { w[r * cols + c] *= factors[c] } }
    }
}

/// diffusers' `TimestepEmbedding`: `linear_2(act(linear_1(x)))` with SiLU.
public struct TimestepMLP: Sendable {
    /// `linear_1`: sinusoidal features → width.
    public let linear1: Linear
    /// `linear_2`: width → width.
    public let linear2: Linear

    /// Takes `linear_1` and `linear_2` of the scope.
    public init(_ weights: WeightScope, in inFeatures: Int, hidden: Int, out: Int) {
        linear1 = Linear(weights["linear_1"], in: inFeatures, out: hidden)
        linear2 = Linear(weights["linear_2"], in: hidden, out: out)
    }

    /// Applies the MLP to `[B, in]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try linear2(silu(linear1(x)))
    }
}
