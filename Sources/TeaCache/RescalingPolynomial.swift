/// The polynomial that maps a modulated-input distance to an estimated output distance.
///
/// Coefficients are stored highest power first, like `numpy.poly1d`, and evaluated with Horner's
/// scheme in Double: `p = 0; for c in coefficients { p = p * x + c }`. The value is **not clamped**:
/// several published polynomials are negative somewhere (one has `P(0) = −13.02`), and a
/// negative value lowers the accumulator, exactly as in the reference.
public struct RescalingPolynomial: Codable, Sendable, Equatable {
    /// The number of coefficients of every TeaCache polynomial (degree 4).
    public static let coefficientCount = 5

    /// Coefficients, highest power first.
    public let coefficients: [Double]

    /// Validates and stores the coefficients.
    /// - Throws: ``CacheError/invalidCoefficients(_:)`` unless there are exactly five finite values.
    public init(coefficients: [Double]) throws(CacheError) {
        try Self.validate(coefficients)
        self.coefficients = coefficients
    }

    /// Checks that `coefficients` holds exactly five finite numbers.
    public static func validate(_ coefficients: [Double]) throws(CacheError) {
        guard coefficients.count == coefficientCount else {
            throw .invalidCoefficients(
                "expected \(coefficientCount) coefficients (degree 4, highest power first), got \(coefficients.count)")
        }
        if let i = coefficients.firstIndex(where: { !$0.isFinite }) {
            throw .invalidCoefficients("coefficient \(i) is \(coefficients[i]); all must be finite")
        }
    }

    /// `P(x)` by Horner's scheme in Double.
    @inlinable
    public func callAsFunction(_ x: Double) -> Double {
        Self.evaluate(coefficients, at: x)
    }

    /// Horner evaluation of any coefficient list (highest power first) — `numpy.poly1d(c)(x)`.
    @inlinable
    public static func evaluate(_ coefficients: [Double], at x: Double) -> Double {
        var p = 0.0
        for c in coefficients { p = p * x + c }
        return p
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer().decode([Double].self)
        do { try self.init(coefficients: c) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(coefficients)
    }
}
