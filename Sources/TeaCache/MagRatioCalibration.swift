import Foundation
import Tensors

/// Records MagCache's magnitude ratios from uncached runs and turns them into a ``MagCachePreset``.
///
/// Per call of a branch (diffusers 0.42.1 MagCache calibration): `ratio = mean_t(‖r_t‖ / (‖r'_t‖ + 1e-8))`
/// over the tokens `t` of the block-stack residual `r` of stream 0 and that of the branch's previous call
/// `r'` (norms over the last axis, Float32); the first call of a run gives 1. ``ratios()`` averages the
/// runs and branches step by step, and reports their spread.
public struct MagRatioRecorder: Sendable {
    private var previous: [BranchKey: Tensor] = [:]
    private var current: [BranchKey: [Double]] = [:]
    /// The ratio sequences of every finished (or current) run and branch.
    public private(set) var sequences: [[Double]] = []

    /// An empty recorder.
    public init() {}

    /// Starts a run: the next call of every branch is its first.
    public mutating func beginRun() {
        sequences += current.keys.sorted().compactMap { current[$0] }
        current = [:]
        previous = [:]
    }

    /// Appends ratio sequences recorded elsewhere (e.g. by other runs' recorders).
    public mutating func append(sequences other: [[Double]]) { sequences += other }

    /// Records the block-stack residual of stream 0 of one call of `branch`.
    /// - Throws: ``CacheError/shapeMismatch(_:)`` when the residual's shape changes within a branch.
    public mutating func record(branch: BranchKey, residual: Tensor) throws(CacheError) {
        var ratio = 1.0
        if let p = previous[branch] {
            guard p.shape == residual.shape, residual.rank >= 1 else {
                throw .shapeMismatch("MagCache calibration: residual \(residual.shape) differs from the previous \(p.shape)")
            }
            ratio = Self.meanNormRatio(residual, p)
        }
        current[branch, default: []].append(ratio)
        previous[branch] = residual
    }

    /// `mean_t(‖a_t‖ / (‖b_t‖ + 1e-8))` over the rows of the last axis, Float32 norms.
    static func meanNormRatio(_ a: Tensor, _ b: Tensor) -> Double {
        let width = max(a.shape.last ?? 1, 1)
        let rows = a.count / width
        guard rows > 0 else { return 1 }
        var sum: Float = 0
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                for r in 0..<rows {
                    var na: Float = 0, nb: Float = 0
                    for j in 0..<width {
                        let x = pa[r * width + j], y = pb[r * width + j]
                        na += x * x
                        nb += y * y
                    }
                    sum += na.squareRoot() / (nb.squareRoot() + 1e-8)
                }
            }
        }
        return Double(sum / Float(rows))
    }

    /// The per-step mean over every recorded sequence (runs × branches), and the largest standard deviation
    /// of a step across them (0 with one sequence).
    /// - Throws: ``CacheError/insufficientCalibrationSamples(count:needed:)`` without a full sequence of at
    ///   least 2 steps; ``CacheError/shapeMismatch(_:)`` when sequences have different lengths.
    public func ratios() throws(CacheError) -> (ratios: [Double], maxStandardDeviation: Double) {
        let all = sequences + current.keys.sorted().compactMap { current[$0] }
        guard let n = all.first?.count, n >= 2 else { throw .insufficientCalibrationSamples(count: all.first?.count ?? 0, needed: 2) }
        guard all.allSatisfy({ $0.count == n }) else {
            throw .shapeMismatch("MagCache calibration runs have different step counts: \(all.map(\.count))")
        }
        var mean = [Double](repeating: 0, count: n), worst = 0.0
        for i in 0..<n {
            let v = all.map { $0[i] }
            let m = v.reduce(0, +) / Double(v.count)
            mean[i] = m
            let sd = (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count)).squareRoot()
            worst = max(worst, sd)
        }
        return (mean, worst)
    }
}

/// Named MagCache ratios with provenance: what ``MagCacheConfiguration`` needs for a model, as a JSON file.
public struct MagCachePreset: Codable, Sendable, Equatable {
    /// A short identifier.
    public var name: String
    /// One ratio per step of the calibration run (the first is 1).
    public var magRatios: [Double]
    /// Where the ratios come from.
    public var provenance: String
    /// The largest per-step standard deviation across the calibration runs, when calibrated here.
    public var maxStandardDeviation: Double?

    /// A preset.
    public init(name: String, magRatios: [Double], provenance: String, maxStandardDeviation: Double? = nil) {
        self.name = name
        self.magRatios = magRatios
        self.provenance = provenance
        self.maxStandardDeviation = maxStandardDeviation
    }

    /// A MagCache configuration with these ratios.
    public func configuration(threshold: Double = 0.06, maxSkipSteps: Int = 3,
                              retentionRatio: Double = 0.2) throws(CacheError) -> MagCacheConfiguration {
        try MagCacheConfiguration(magRatios: magRatios, threshold: threshold, maxSkipSteps: maxSkipSteps,
                                  retentionRatio: retentionRatio)
    }

    /// The preset as pretty-printed JSON.
    public func jsonData() throws(CacheError) -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { return try e.encode(self) } catch { throw .io("could not encode MagCache preset \(name): \(error)") }
    }

    /// Reads and validates a preset from JSON.
    public init(jsonData: Data) throws(CacheError) {
        do { self = try JSONDecoder().decode(MagCachePreset.self, from: jsonData) } catch {
            throw .invalidPreset("not a valid MagCache preset JSON: \(error)")
        }
        do { _ = try configuration() } catch { throw .invalidPreset("\(name): \(error)") }
    }
}
