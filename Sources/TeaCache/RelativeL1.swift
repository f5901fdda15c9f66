import Tensors

/// The relative L1 distance TeaCache compares between consecutive calls.
///
/// `d = mean(|m − m_prev|) / mean(|m_prev|)`: the denominator is the **previous** tensor, both means
/// are taken over every element and rounded to Float32, and the Float32 quotient is promoted to
/// Double — the arithmetic of the reference (`(a.mean() / b.mean()).item()` on float32 tensors).
public enum RelativeL1 {
    /// The distance between `current` and `previous` over all elements.
    /// - Throws: ``CacheError/shapeMismatch(_:)`` when the shapes differ.
    public static func distance(_ current: Tensor, previous: Tensor) throws(CacheError) -> Double {
        guard current.shape == previous.shape else {
            throw .shapeMismatch("modulated input \(current.shape) differs from the previous one \(previous.shape)")
        }
        let numerator: Double
        do { numerator = try Tensor.meanAbsoluteDifference(current, previous) } catch { throw .tensor(error) }
        let denominator = previous.meanAbsolute()
        return Double(Float(numerator) / Float(denominator))
    }

    /// One distance per element of axis 0 (per batch sample), each computed like ``distance(_:previous:)``
    /// over that sample's elements only.
    /// - Throws: ``CacheError/shapeMismatch(_:)`` when the shapes differ or the rank is 0.
    public static func perSample(_ current: Tensor, previous: Tensor) throws(CacheError) -> [Double] {
        guard current.shape == previous.shape, current.rank >= 1 else {
            throw .shapeMismatch("per-sample distance needs equal shapes with a batch axis, got \(current.shape) and \(previous.shape)")
        }
        var out: [Double] = []
        out.reserveCapacity(current.shape[0])
        for b in 0..<current.shape[0] {
            let c: Tensor, p: Tensor
            do {
                c = try current.slice(axis: 0, b..<(b + 1))
                p = try previous.slice(axis: 0, b..<(b + 1))
            } catch { throw .tensor(error) }
            out.append(try distance(c, previous: p))
        }
        return out
    }
}
