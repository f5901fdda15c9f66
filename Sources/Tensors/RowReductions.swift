/// Public entry points to the row reductions of the norm kernels (16-lane accumulators), for kernels
/// outside this module that normalise rows inside a fused pass (e.g. a per-head q/k norm while a
/// projection is read).
public enum RowReductions {
    /// `Σ pᵢ` over `n` values.
    @inlinable
    public static func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Float { rowSum(p, n) }

    /// `Σ (pᵢ − centre)²` over `n` values.
    @inlinable
    public static func centeredSquares(_ p: UnsafePointer<Float>, _ n: Int, centre: Float) -> Float {
        rowCenteredSquares(p, n, centre)
    }

    /// `Σ pᵢ²` over `n` values.
    @inlinable
    public static func sumOfSquares(_ p: UnsafePointer<Float>, _ n: Int) -> Float { rowSumOfSquares(p, n) }

    /// `1 / √(mean(p²) + eps)` over `n` values: the scale an RMS norm applies to the row.
    @inlinable
    public static func inverseRMS(_ p: UnsafePointer<Float>, _ n: Int, eps: Float) -> Float {
        1 / (rowSumOfSquares(p, n) / Float(n) + eps).squareRoot()
    }
}
