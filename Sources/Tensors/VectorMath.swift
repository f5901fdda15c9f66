/// Vectorised transcendental functions on `SIMD16<Float>` used by the activation and softmax kernels.
///
/// `exp` follows the Cephes `expf` scheme (range reduction by ln 2, degree-6 polynomial, 2ⁿ scaling
/// through the exponent bits): about 1 ulp on the whole finite range, 0 below −87.3, +inf above 88.7.
public enum VectorMath {
    public typealias V = SIMD16<Float>

    @inlinable @inline(__always)
    public static func exp(_ x: V) -> V {
        // Generic SIMD min/max/rounding conversions are not vectorised by the compiler; masks,
        // arithmetic and bit casts are, so clamping and rounding are written with those.
        let hi = V(repeating: 88.72283)
        let lo = V(repeating: -87.33654)
        var xc = x.replacing(with: hi, where: x .> hi)
        xc.replace(with: lo, where: xc .< lo)
        // Round x·log2(e) to the nearest integer with the 1.5·2²³ trick; its low mantissa bits are n.
        let magic = V(repeating: 12582912.0)
        let shifted = xc * 1.44269504088896341 + magic
        let n = shifted - magic
        var r = xc - n * 0.693359375
        r = r - n * -2.12194440e-4
        let r2 = r * r
        var p = V(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * r2 + r + 1
        // 2^n via the exponent field, split in two factors so n = 128 stays representable.
        let ni = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000
        let half = ni &>> 1
        let s1 = unsafeBitCast((half &+ 127) &<< 23, to: V.self)
        let s2 = unsafeBitCast(((ni &- half) &+ 127) &<< 23, to: V.self)
        var result = p * s1 * s2
        result.replace(with: V(repeating: 0), where: x .< lo)
        result.replace(with: V(repeating: .infinity), where: x .> hi)
        result.replace(with: x, where: x .!= x)  // NaN propagates
        return result
    }

    /// |x| by clearing the sign bits.
    @inlinable @inline(__always)
    public static func absolute(_ x: V) -> V {
        unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x7fff_ffff, to: V.self)
    }

    /// tanh(x) = 1 − 2 / (e^{2x} + 1), saturating cleanly at ±1.
    @inlinable @inline(__always)
    public static func tanh(_ x: V) -> V {
        var xc = x.replacing(with: V(repeating: 9), where: x .> 9)
        xc.replace(with: V(repeating: -9), where: xc .< -9)
        let e = exp(xc + xc)
        var t = 1 - 2 / (e + 1)
        // Small |x|: use the odd series to keep relative accuracy near 0.
        let x2: V = x * x
        var poly = V(repeating: -17.0 / 315)
        poly = poly * x2 + (2.0 / 15)
        poly = poly * x2 + (-1.0 / 3)
        poly = poly * x2 + 1
        let series: V = x * poly
        t.replace(with: series, where: absolute(x) .< 0.0625)
        t.replace(with: x, where: x .!= x)
        return t
    }

    /// The sigmoid 1 / (1 + e^{−x}).
    @inlinable @inline(__always)
    public static func sigmoid(_ x: V) -> V {
        1 / (1 + exp(-x))
    }

    /// erf(x) with the Abramowitz–Stegun 7.1.26-type rational approximation refined to float accuracy
    /// (W. J. Cody's minimax split would be overkill here): max abs error ≈ 1.2e-7.
    @inlinable @inline(__always)
    public static func erf(_ x: V) -> V {
        // erf(x) = sign(x) * (1 - t * exp(-x² + P(t))) with t = 1/(1 + 0.5|x|) (Numerical Recipes erfc).
        let z = absolute(x)
        let t: V = 1 / (z * 0.5 + 1)
        var p = V(repeating: 0.17087277)
        p = p * t - 0.82215223
        p = p * t + 1.48851587
        p = p * t - 1.13520398
        p = p * t + 0.27886807
        p = p * t - 0.18628806
        p = p * t + 0.09678418
        p = p * t + 0.37409196
        p = p * t + 1.00002368
        p = p * t - 1.26551223
        let arg: V = p - z * z
        let erfc: V = t * exp(arg)
        var r = 1 - erfc
        r.replace(with: -r, where: x .< 0)
        r.replace(with: x, where: x .!= x)
        return r
    }
}

/// Applies a SIMD kernel over a contiguous buffer, with a scalar tail handled through a padded vector.
@inlinable @inline(__always)
func simdMap(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
    _ f: (SIMD16<Float>) -> SIMD16<Float>
) {
    var i = 0
    while i + 16 <= n {
        let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: f(v), as: SIMD16<Float>.self)
        i += 16
    }
    if i < n {
        var v = SIMD16<Float>(repeating: 0)
        for j in 0..<(n - i) { v[j] = src[i + j] }
        let r = f(v)
        for j in 0..<(n - i) { dst[i + j] = r[j] }
    }
}
