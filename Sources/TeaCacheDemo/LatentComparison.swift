import Foundation
import Tensors

/// How far a cached run's final latent is from the uncached one.
public struct LatentComparison: Sendable, Equatable {
    /// `Σ|x − r| / Σ|r|` over every element (Double accumulation); 0 for identical tensors.
    public var relativeL1: Double
    /// Peak signal-to-noise ratio in dB: `10·log10(R² / MSE)` where `R = max(r) − min(r)` is the
    /// peak-to-peak range of the **uncached** (reference) latent and `MSE = mean((x − r)²)`.
    /// `+∞` when the latents are identical.
    public var psnr: Double

    /// Compares `latent` with `reference` (same shape).
    /// - Throws: ``DemoError/model(_:)`` when the shapes differ or the reference is empty.
    public init(_ latent: Tensor, reference: Tensor) throws(DemoError) {
        guard latent.shape == reference.shape else {
            throw .model("cannot compare latents shaped \(latent.shape) and \(reference.shape)")
        }
        guard reference.count > 0 else { throw .model("cannot compare empty latents") }
        var absDiff = 0.0, absRef = 0.0, sq = 0.0
        var lo = Double.infinity, hi = -Double.infinity
        latent.withUnsafeBufferPointer { x in
            reference.withUnsafeBufferPointer { r in
                for i in 0..<r.count {
                    let rv = Double(r[i]), d = Double(x[i]) - rv
                    absDiff += abs(d)
                    absRef += abs(rv)
                    sq += d * d
                    lo = min(lo, rv)
                    hi = max(hi, rv)
                }
            }
        }
        relativeL1 = absDiff == 0 ? 0 : absDiff / absRef
        let mse = sq / Double(reference.count)
        let range = hi - lo
        psnr = mse == 0 ? .infinity : 10 * log10(range * range / mse)
    }
}
