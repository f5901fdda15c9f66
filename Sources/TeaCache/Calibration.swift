import COpenBLAS

/// Fits TeaCache's rescaling polynomial: a degree-4 least-squares fit of output distance against
/// modulated-input distance (`np.polyfit(x, y, 4)` in the reference's description, spec §4).
public enum Calibration {
    /// The result of a fit.
    public struct Fit: Codable, Sendable, Equatable {
        /// Coefficients, highest power first.
        public var coefficients: [Double]
        /// Coefficient of determination `1 − SS_res / SS_tot` (1 when y is constant and fitted exactly).
        public var rSquared: Double
        /// `sqrt(SS_res / n)`.
        public var rmsResidual: Double
        /// Smallest and largest input distance in the data: the range where the polynomial is meaningful.
        public var inputRange: ClosedRange<Double>
        /// The number of samples used.
        public var sampleCount: Int
    }

    /// The degree of every TeaCache polynomial.
    public static let degree = 4

    /// Least-squares fit of `outputDistance ≈ P(inputDistance)` with LAPACK `dgels_` (QR, Double).
    ///
    /// Columns of the Vandermonde matrix are scaled to unit norm before the solve (and the scaling
    /// undone afterwards) because `x⁴` and `1` differ by many orders of magnitude for distances ≈ 0.05.
    /// - Parameters:
    ///   - samples: the recorded (input distance, output distance) pairs; at least six.
    ///   - minimumRSquared: fits below this are refused.
    ///   - force: accept a fit below `minimumRSquared`.
    /// - Throws: ``CacheError/insufficientCalibrationSamples(count:needed:)``,
    ///   ``CacheError/nonFiniteCalibrationSample(index:)``, ``CacheError/lapackFailure(routine:info:)``,
    ///   ``CacheError/poorCalibrationFit(rSquared:minimum:)``.
    public static func fit(
        _ samples: [CalibrationSample], minimumRSquared: Double = 0.9, force: Bool = false
    ) throws(CacheError) -> Fit {
        let p = degree + 1
        let n = samples.count
        guard n > p else { throw .insufficientCalibrationSamples(count: n, needed: p + 1) }
        if let i = samples.firstIndex(where: { !$0.inputDistance.isFinite || !$0.outputDistance.isFinite }) {
            throw .nonFiniteCalibrationSample(index: i)
        }
        guard n < Int(Int32.max) / p else { throw .insufficientCalibrationSamples(count: n, needed: p + 1) }
        let x = samples.map(\.inputDistance), y = samples.map(\.outputDistance)

        // Column-major n × p design matrix, column j = x^(degree − j), scaled to unit 2-norm.
        var a = [Double](repeating: 0, count: n * p)
        var norms = [Double](repeating: 1, count: p)
        for j in 0..<p {
            let power = degree - j
            var sq = 0.0
            for i in 0..<n {
                var v = 1.0
                for _ in 0..<power { v *= x[i] }
                a[j * n + i] = v
                sq += v * v
            }
            let norm = sq.squareRoot()
            norms[j] = norm > 0 ? norm : 1
            for i in 0..<n { a[j * n + i] /= norms[j] }
        }
        var b = y
        let solution = try solveLeastSquares(&a, rows: n, columns: p, rhs: &b)
        let coefficients = (0..<p).map { solution[$0] / norms[$0] }

        let mean = y.reduce(0, +) / Double(n)
        var ssRes = 0.0, ssTot = 0.0
        for i in 0..<n {
            let r = y[i] - RescalingPolynomial.evaluate(coefficients, at: x[i])
            ssRes += r * r
            ssTot += (y[i] - mean) * (y[i] - mean)
        }
        let r2 = ssTot > 0 ? 1 - ssRes / ssTot : (ssRes == 0 ? 1 : 0)
        let fit = Fit(coefficients: coefficients, rSquared: r2, rmsResidual: (ssRes / Double(n)).squareRoot(),
                      inputRange: (x.min() ?? 0)...(x.max() ?? 0), sampleCount: n)
        if !force && !(r2 >= minimumRSquared) {
            throw .poorCalibrationFit(rSquared: r2, minimum: minimumRSquared)
        }
        return fit
    }

    /// A preset from a fit (its calibrated range is the fit's input range).
    public static func preset(
        named name: String, from fit: Fit, defaultThreshold: Double, modulatedInput: String,
        provenance: String, schedule: TeaCacheSchedule = .standard
    ) throws(CacheError) -> TeaCachePreset {
        try TeaCachePreset(
            name: name, coefficients: fit.coefficients, defaultThreshold: defaultThreshold, speedups: [],
            calibratedRange: fit.inputRange, modulatedInput: modulatedInput,
            provenance: provenance + " (R² = \(fit.rSquared), RMS residual = \(fit.rmsResidual), \(fit.sampleCount) samples)",
            schedule: schedule)
    }

    /// Solves `min ‖A·s − b‖₂` for column-major `A` (rows × columns, rows ≥ columns) with `dgels_`.
    /// Returns the first `columns` entries of the overwritten `b`.
    static func solveLeastSquares(
        _ a: inout [Double], rows: Int, columns: Int, rhs b: inout [Double]
    ) throws(CacheError) -> [Double] {
        var trans = CChar(UInt8(ascii: "N"))
        var m = Int32(rows), nn = Int32(columns), nrhs: Int32 = 1
        var lda = Int32(rows), ldb = Int32(rows), info: Int32 = 0
        var lwork: Int32 = -1
        var query = 0.0
        dgels_(&trans, &m, &nn, &nrhs, &a, &lda, &b, &ldb, &query, &lwork, &info)
        guard info == 0 else { throw .lapackFailure(routine: "dgels_ (workspace query)", info: Int(info)) }
        lwork = Int32(max(1, Int(query.rounded(.up))))
        var work = [Double](repeating: 0, count: Int(lwork))
        dgels_(&trans, &m, &nn, &nrhs, &a, &lda, &b, &ldb, &work, &lwork, &info)
        guard info == 0 else { throw .lapackFailure(routine: "dgels_", info: Int(info)) }
        return Array(b[0..<columns])
    }
}
