import CKernels
import Foundation

/// Rotary position embeddings: frequency tables and their application to query/key heads.
public enum RotaryEmbedding {
    /// How rotated pairs are laid out within a head.
    public enum Layout: Sendable {
        /// Pairs are adjacent channels `(x₀, x₁), (x₂, x₃), …` (FLUX, Wan, HunyuanVideo).
        case interleaved
        /// Pairs are `(xᵢ, xᵢ₊D/2)`: the first half rotates against the second (GPT-NeoX style).
        case splitHalves
    }

    /// cos/sin tables `[S, D]` for multi-axis positions.
    ///
    /// Each axis `a` with dimension `axesDims[a]` (even) contributes `axesDims[a]/2` frequencies
    /// `θ^(−2i/dim)` (computed in Double); the angle is `position · frequency`. Tables are laid out for
    /// `layout`, with the axes in order: interleaved repeats each frequency twice in place (axis `a` owns
    /// the contiguous channels of its slice); split-halves concatenates the axes' half tables into one
    /// `D/2` table and repeats that whole table (`[f₀ ‖ f₁ ‖ …, f₀ ‖ f₁ ‖ …]`), so that channels `i` and
    /// `i + D/2`, which ``apply(_:cos:sin:heads:layout:)`` rotates together, share one angle. (For a single
    /// axis both descriptions coincide.)
    ///
    /// - Parameters:
    ///   - positions: `[S, axesDims.count]` position ids (may be fractional).
    ///   - axesDims: per-axis rotary dimensions; their sum is the head dimension D.
    ///   - theta: the base (10000 for most models).
    ///   - layout: where each frequency's pair of channels sits (see ``Layout``).
    public static func tables(
        positions: Tensor, axesDims: [Int], theta: Double, layout: Layout = .interleaved
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        guard positions.rank == 2, positions.shape[1] == axesDims.count else {
            throw .shapeMismatch(operation: "rotary tables", shapes: [positions.shape, [axesDims.count]],
                                 reason: "positions must be [S, \(axesDims.count)] for \(axesDims.count) axes")
        }
        guard axesDims.allSatisfy({ $0 > 0 && $0 % 2 == 0 }) else {
            throw .invalidArgument(operation: "rotary tables", reason: "every axis dimension must be even and positive: \(axesDims)")
        }
        let s = positions.shape[0]
        let d = axesDims.reduce(0, +)
        let pos = positions.scalars
        var cosT = [Float](repeating: 0, count: s * d)
        var sinT = [Float](repeating: 0, count: s * d)
        var col = 0
        for (a, dim) in axesDims.enumerated() {
            let half = dim / 2
            let freqs = (0..<half).map { i in 1.0 / pow(theta, Double(2 * i) / Double(dim)) }
            // Positions repeat a lot along each axis (rows, columns, frames), so cos/sin are computed
            // once per distinct position value and reused.
            var memo: [UInt32: Int] = [:]
            var values: [(c: Float, s: Float)] = []
            for t in 0..<s {
                let pf = pos[t * axesDims.count + a]
                let slot: Int
                if let k = memo[pf.bitPattern] {
                    slot = k
                } else {
                    slot = values.count / max(half, 1)
                    memo[pf.bitPattern] = slot
                    let p = Double(pf)
                    for i in 0..<half {
                        let angle = p * freqs[i]
                        values.append((Float(Foundation.cos(angle)), Float(Foundation.sin(angle))))
                    }
                }
                let base = t * d + col
                for i in 0..<half {
                    let (c, sn) = values[slot * half + i]
                    switch layout {
                    case .interleaved:
                        cosT[base + 2 * i] = c; cosT[base + 2 * i + 1] = c
                        sinT[base + 2 * i] = sn; sinT[base + 2 * i + 1] = sn
                    case .splitHalves:
                        // Axis a's frequency i sits at col/2 + i of the half table, and again D/2 later.
                        let lo = t * d + col / 2 + i, hi = lo + d / 2
                        cosT[lo] = c; cosT[hi] = c
                        sinT[lo] = sn; sinT[hi] = sn
                    }
                }
            }
            col += dim
        }
        return (try Tensor(shape: [s, d], scalars: cosT), try Tensor(shape: [s, d], scalars: sinT))
    }

    /// Rotates every head of `x` by the position tables.
    ///
    /// - Parameters:
    ///   - x: `[B, S, H·D]` (token-major, heads concatenated).
    ///   - cos: `[S, D]` table in the same `layout` (see ``tables(positions:axesDims:theta:layout:)``).
    ///   - sin: `[S, D]` table in the same `layout`.
    ///   - heads: H.
    ///   - layout: the tables' layout.
    /// - Returns: the rotated tensor, same shape. For a pair `(a, b)` at channels `(i, j)`:
    ///   `a' = a·cos[i] − b·sin[i]`, `b' = b·cos[j] + a·sin[j]`.
    public static func apply(
        _ x: Tensor, cos: Tensor, sin: Tensor, heads: Int, layout: Layout = .interleaved
    ) throws(TensorError) -> Tensor {
        guard x.rank == 3, heads > 0, x.shape[2] % heads == 0 else {
            throw .shapeMismatch(operation: "rotary apply", shapes: [x.shape], reason: "x must be [B, S, H·D] with H = \(heads)")
        }
        let (b, s, w) = (x.shape[0], x.shape[1], x.shape[2])
        let d = w / heads
        guard cos.shape == [s, d], sin.shape == [s, d], d % 2 == 0 else {
            throw .shapeMismatch(operation: "rotary apply", shapes: [x.shape, cos.shape, sin.shape],
                                 reason: "tables must be [S, D] = [\(s), \(d)] with D even")
        }
        let split: Int32 = layout == .splitHalves ? 1 : 0
        return x.withUnsafeBufferPointer { px in
            cos.withUnsafeBufferPointer { pc in
                sin.withUnsafeBufferPointer { ps in
                    Tensor(uninitializedShape: x.shape) { out in
                        Parallelism.forEachChunk(b * s, costPerItem: 4 * w) { rows in
                            for r in rows {
                                let t = r % s
                                ck_rope_row(px.baseAddress! + r * w, out.baseAddress! + r * w, heads, d,
                                            pc.baseAddress! + t * d, ps.baseAddress! + t * d, split)
                            }
                        }
                    }
                }
            }
        }
    }
}

extension RotaryEmbedding {
    /// Rotates one token row of `heads` heads of `headDim` values in place by the table rows `cos` and
    /// `sin` (`headDim` values each, shared by the heads): the arithmetic of
    /// ``apply(_:cos:sin:heads:layout:)`` on one row (`ck_rope_row`), for kernels outside this module that
    /// rotate rows while they produce them. `headDim` must be even.
    public static func rotateRow(
        _ row: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
        layout: Layout = .interleaved
    ) {
        ck_rope_row(row, row, heads, headDim, cos, sin, layout == .splitHalves ? 1 : 0)
    }
}
